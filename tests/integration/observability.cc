#include "integration/observability.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "integration/scrape.h"
#include "kvstore/emulated_device_memory.h"

namespace kvtier::testing {

std::vector<std::byte> SmoothKv(const ModelFingerprint& fp, uint32_t tokens, float seed) {
  const size_t values = static_cast<size_t>(tokens) * fp.KvBytesPerToken() / 2;
  std::vector<std::byte> out(values * 2);
  for (size_t i = 0; i < values; ++i) {
    const float f = std::sin(0.37f * static_cast<float>(i % 977) + seed) * (1.0f + static_cast<float>(i % 7));
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    const int exponent = static_cast<int>((bits >> 23) & 0xff) - 127 + 15;
    uint16_t h = static_cast<uint16_t>((bits >> 16) & 0x8000u);
    if (exponent > 0 && exponent < 31) h |= static_cast<uint16_t>(exponent << 10 | ((bits >> 13) & 0x3ffu));
    std::memcpy(out.data() + 2 * i, &h, 2);
  }
  return out;
}

std::vector<std::byte> EncodedKv(const ModelFingerprint& fp, std::span<const std::byte> kv,
                                 const codec::EncodeOptions& encode) {
  const uint32_t tokens = static_cast<uint32_t>(kv.size() / fp.KvBytesPerToken());
  std::vector<std::byte> out;
  const Status s =
      codec::Encode({{fp.num_layers, fp.num_kv_heads, fp.head_dim, tokens, fp.dtype}, kv, {}}, encode, out);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

void ObservedServerTest::StartObserved(bool all_tiers) {
  if (all_tiers) {
    dir_ = std::filesystem::temp_directory_path() /
           ("kvtier-observed-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
  }
  StartServer(all_tiers ? 4ull << 20 : 64ull << 20, [&](ServerConfig& c) {
    c.metrics_listen = "127.0.0.1:0";
    if (!all_tiers) return;
    c.store.gpu.capacity_bytes = 1ull << 20;
    c.store.gpu.open_device = OpenEmulatedDevice(std::make_shared<DeviceFaultKnobs>());
    c.store.disk.path = dir_.string();
    c.store.disk.capacity_bytes = 32ull << 20;
    c.store.disk.region_bytes = 4ull << 20;
    c.store.disk.background_demotion = false;
  });
}

void ObservedServerTest::TearDown() {
  ServerFixture::TearDown();
  if (!dir_.empty()) std::filesystem::remove_all(dir_);
}

std::unique_ptr<Client> ObservedServerTest::CodecClient(codec::CodecId codec, bool server_decode) {
  ClientOptions o;
  o.endpoint = server_->address();
  o.name_space = "test";
  o.fingerprint = TestFingerprint();
  o.encode.codec = codec;
  o.server_decode = server_decode;
  o.frame_bytes = 64 << 10;
  auto client = Client::Connect(o);
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  return client.ok() ? std::move(client).value() : nullptr;
}

void ObservedServerTest::DriveMixedTraffic() {
  const ModelFingerprint fp = TestFingerprint();
  std::vector<ChunkKey> keys;
  for (codec::CodecId id : codec::kAllCodecs) {
    const ChunkKey key{0x0b5, static_cast<uint64_t>(id)};
    const auto kv = SmoothKv(fp, 16, static_cast<float>(id));
    auto put = CodecClient(id)->Put(key, TokensFor(key, 16), kv);
    ASSERT_TRUE(put.ok()) << codec::CodecName(id) << ": " << put.status().ToString();
    keys.push_back(key);
  }
  std::vector<std::byte> dest(16 * fp.KvBytesPerToken());
  for (const ChunkKey& key : keys) ASSERT_TRUE(client_->Get(key, dest)->found);
  ASSERT_TRUE(CodecClient(codec::CodecId::kRaw, /*server_decode=*/true)->Get(keys[2], dest)->found);
  ASSERT_FALSE(client_->Get({0x0b5, 999}, dest)->found);
  ASSERT_EQ(client_->Lookup(keys, std::chrono::seconds(60))->leading_hits, keys.size());
  ASSERT_EQ(client_->Lookup(std::vector<ChunkKey>(2000)).status().code(), StatusCode::kInvalidArgument);
  if (dir_.empty()) return;
  // 7.5 MiB through a 4 MiB host tier: chunks are demoted, evicted from DRAM, and one is promoted back.
  const ModelFingerprint big = TestFingerprint(256);
  auto client = NewClient("test", big);
  for (uint64_t i = 0; i < 30; ++i) {
    const ChunkKey key{0xd15c, i};
    ASSERT_TRUE(client->Put(key, TokensFor(key, 256), PayloadFor(key, 256 * 1024)).ok());
  }
  std::vector<std::byte> big_dest(256 * 1024);
  ASSERT_TRUE(client->Get({0xd15c, 0}, big_dest)->found);
  ASSERT_EQ(server_->store().Stats().disk.promotions, 1u);
  // One chunk gets a GPU copy.
  PutOptions on_gpu;
  on_gpu.prefer_tier = v1::TIER_GPU;
  const ChunkKey gpu_key{0x69u, 1};
  ASSERT_TRUE(client_->Put(gpu_key, TokensFor(gpu_key, 16), PayloadFor(gpu_key, 16 * 1024), on_gpu).ok());
  ASSERT_EQ(server_->store().Stats().gpu.write_bytes, 64u + 16 * 1024);
}

std::string ObservedServerTest::Scrape() {
  const std::string response = HttpGet(server_->metrics_port(), "/metrics");
  EXPECT_TRUE(HttpOk(response)) << response.substr(0, 200);
  return HttpBody(response);
}

std::filesystem::path DashboardPath() {
  return std::filesystem::path(KVTIER_SOURCE_DIR) / "deploy" / "grafana" / "kvtier-dashboard.json";
}

std::vector<DashboardQuery> DashboardQueries(Json* dashboard_out) {
  std::ifstream in(DashboardPath());
  EXPECT_TRUE(in.good()) << "cannot read " << DashboardPath();
  std::stringstream text;
  text << in.rdbuf();
  std::string error;
  auto dashboard = ParseJson(text.str(), &error);
  EXPECT_TRUE(dashboard.has_value()) << DashboardPath() << " is not valid JSON: " << error;
  if (!dashboard) return {};
  std::vector<DashboardQuery> out;
  // Panels, including those nested in rows.
  auto visit_panels = [&](const Json& panels, auto&& self) -> void {
    for (const Json& panel : panels.items) {
      const Json* title = panel.Find("title");
      const std::string name = title != nullptr ? title->string : "?";
      if (const Json* targets = panel.Find("targets")) {
        for (const Json& target : targets->items) {
          const Json* expr = target.Find("expr");
          const Json* ref = target.Find("refId");
          if (expr == nullptr || !expr->is_string()) continue;
          out.push_back({"panel '" + name + "' target " + (ref != nullptr ? ref->string : "?"), expr->string});
        }
      }
      if (const Json* nested = panel.Find("panels")) self(*nested, self);
    }
  };
  if (const Json* panels = dashboard->Find("panels")) visit_panels(*panels, visit_panels);
  // Query variables: label_values(metric, label) reads `metric`.
  if (const Json* templating = dashboard->Find("templating"); templating != nullptr) {
    if (const Json* list = templating->Find("list")) {
      for (const Json& var : list->items) {
        const Json* query = var.Find("query");
        if (query != nullptr && query->is_object()) query = query->Find("query");
        if (query == nullptr || !query->is_string()) continue;
        const std::string& q = query->string;
        const std::string prefix = "label_values(";
        if (q.rfind(prefix, 0) != 0) continue;
        const size_t comma = q.find(',');
        out.push_back({"variable " + var.Find("name")->string, q.substr(prefix.size(), comma - prefix.size())});
      }
    }
  }
  if (dashboard_out != nullptr) *dashboard_out = std::move(*dashboard);
  return out;
}

std::string WithVariablesResolved(std::string expr) {
  const std::pair<std::string, std::string> vars[] = {{"$__rate_interval", "1m"}, {"$__interval", "1m"},
                                                      {"$__range", "1m"},         {"${instance}", ".*"},
                                                      {"$instance", ".*"}};
  for (const auto& [from, to] : vars) {
    for (size_t at; (at = expr.find(from)) != std::string::npos;) expr.replace(at, from.size(), to);
  }
  return expr;
}

namespace {

bool IdentStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':'; }
bool IdentChar(char c) { return IdentStart(c) || std::isdigit(static_cast<unsigned char>(c)); }

// Index just past the bracket that closes the one at `open` (strings inside are skipped).
size_t SkipBracketed(std::string_view s, size_t open) {
  const char opening = s[open];
  const char closing = opening == '(' ? ')' : opening == '{' ? '}' : ']';
  int depth = 0;
  for (size_t i = open; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '"' || c == '\'' || c == '`') {
      for (++i; i < s.size() && s[i] != c; ++i) {
        if (s[i] == '\\' && c != '`') ++i;
      }
    } else if (c == opening) {
      ++depth;
    } else if (c == closing && --depth == 0) {
      return i + 1;
    }
  }
  return s.size();
}

size_t SkipSpace(std::string_view s, size_t i) {
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return i;
}

}  // namespace

std::set<std::string> PromqlMetricNames(std::string_view expr) {
  static const std::set<std::string, std::less<>> kGrouping = {"by",       "without",    "on",
                                                               "ignoring", "group_left", "group_right"};
  static const std::set<std::string, std::less<>> kKeywords = {"offset", "bool", "and", "or",
                                                               "unless", "inf",  "nan", "atan2"};
  std::set<std::string> names;
  for (size_t i = 0; i < expr.size();) {
    const char c = expr[i];
    if (c == '"' || c == '\'' || c == '`' || c == '{' || c == '[') {
      if (c == '{' || c == '[') {
        i = SkipBracketed(expr, i);
      } else {
        for (++i; i < expr.size() && expr[i] != c; ++i) {
          if (expr[i] == '\\' && c != '`') ++i;
        }
        ++i;
      }
    } else if (std::isdigit(static_cast<unsigned char>(c)) || c == '.' || c == '$') {
      ++i;  // numbers, durations (5m, 1e3) and $variables: letters that follow are part of them
      while (i < expr.size() && (IdentChar(expr[i]) || expr[i] == '.' || expr[i] == '{' || expr[i] == '}')) ++i;
    } else if (IdentStart(c)) {
      const size_t start = i;
      while (i < expr.size() && IdentChar(expr[i])) ++i;
      const std::string_view word = expr.substr(start, i - start);
      const size_t next = SkipSpace(expr, i);
      if (kGrouping.count(word) != 0) {
        if (next < expr.size() && expr[next] == '(') i = SkipBracketed(expr, next);
        continue;
      }
      if (kKeywords.count(word) != 0) continue;
      if (next < expr.size() && expr[next] == '(') continue;  // a function or an aggregation
      size_t after = next;
      while (after < expr.size() && IdentChar(expr[after])) ++after;
      const std::string_view following = expr.substr(next, after - next);
      if (following == "by" || following == "without") continue;  // "sum by (x) (...)"
      names.emplace(word);
    } else {
      ++i;
    }
  }
  return names;
}

std::set<std::string> ExposedNames(const std::string& text) {
  std::set<std::string> names;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#') continue;
    size_t end = 0;
    while (end < line.size() && IdentChar(line[end])) ++end;
    names.insert(line.substr(0, end));
  }
  return names;
}

}  // namespace kvtier::testing
