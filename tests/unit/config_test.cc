#include "kvtier/kvstore/config.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <map>

namespace kvtier {
namespace {

TEST(ByteSizeTest, ParsesUnits) {
  EXPECT_EQ(*ParseByteSize("4GiB"), 4ull << 30);
  EXPECT_EQ(*ParseByteSize("512MiB"), 512ull << 20);
  EXPECT_EQ(*ParseByteSize("64KiB"), 64ull << 10);
  EXPECT_EQ(*ParseByteSize("1GB"), 1000000000ull);
  EXPECT_EQ(*ParseByteSize("1048576"), 1048576ull);
  EXPECT_EQ(*ParseByteSize("2 G"), 2ull << 30);
  EXPECT_EQ(ParseByteSize("lots").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseByteSize("4XB").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseByteSize("99999999999999999999").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseByteSize("17179869184TiB").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(FormatByteSize(4ull << 30), "4GiB");
  EXPECT_EQ(FormatByteSize(1000), "1000");
}

TEST(ConfigTest, EmptyDocumentKeepsDefaults) {
  ServerConfig config;
  ASSERT_TRUE(ParseServerConfigYaml("", &config).ok());
  EXPECT_EQ(config.listen, "127.0.0.1:7070");
  EXPECT_EQ(config.metrics_listen, "127.0.0.1:9090");
  EXPECT_EQ(config.store.host_capacity_bytes, 4ull << 30);
  EXPECT_EQ(config.service.max_frame_bytes, 1ull << 20);
}

TEST(ConfigTest, ParsesEveryKey) {
  ServerConfig config;
  const Status s = ParseServerConfigYaml(R"(
listen: 0.0.0.0:8000
metrics_listen: ""
log_level: debug
shutdown_grace_ms: 2500
host_tier:
  capacity: 1GiB
  huge_pages: false
  prefault: false
disk:
  path: /var/lib/kvtier
  capacity: 2GiB
  region_size: 16MiB
  queue_depth: 8
  direct_io: false
  reclaim: lru
  reinsert_hits: false
  admission: write-budget
  write_budget_per_day: 100GiB
  demote_watermark: 0.75
  flush_on_shutdown: false
limits:
  max_chunk_bytes: 64MiB
  max_frame_bytes: 256KiB
  max_batch: 64
  max_lease_ttl_ms: 1000
  max_namespaces: 10
  max_fingerprints: 3
  max_profiles_per_namespace: 5
  max_profile_bytes: 1MiB
quotas:
  default_bytes: 1GiB
  namespaces:
    tenant-a: 2GiB
)", &config);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(config.listen, "0.0.0.0:8000");
  EXPECT_EQ(config.metrics_listen, "");
  EXPECT_EQ(config.log_level, LogLevel::kDebug);
  EXPECT_EQ(config.shutdown_grace_ms, 2500u);
  EXPECT_EQ(config.store.host_capacity_bytes, 1ull << 30);
  EXPECT_FALSE(config.store.host_huge_pages);
  EXPECT_FALSE(config.store.host_prefault);
  EXPECT_EQ(config.store.max_chunk_bytes, 64ull << 20);
  EXPECT_EQ(config.service.max_frame_bytes, 256ull << 10);
  EXPECT_EQ(config.store.max_batch, 64u);
  EXPECT_EQ(config.store.max_lease_ttl_ms, 1000u);
  EXPECT_EQ(config.store.max_namespaces, 10u);
  EXPECT_EQ(config.store.max_fingerprints, 3u);
  EXPECT_EQ(config.store.profiles.max_per_namespace, 5u);
  EXPECT_EQ(config.store.profiles.max_profile_bytes, 1ull << 20);
  EXPECT_EQ(config.store.default_quota_bytes, 1ull << 30);
  EXPECT_EQ(config.store.namespace_quota_bytes.at("tenant-a"), 2ull << 30);
  const DiskOptions& d = config.store.disk;
  EXPECT_EQ(d.path, "/var/lib/kvtier");
  EXPECT_EQ(d.capacity_bytes, 2ull << 30);
  EXPECT_EQ(d.region_bytes, 16ull << 20);
  EXPECT_EQ(d.queue_depth, 8u);
  EXPECT_FALSE(d.direct_io);
  EXPECT_EQ(d.reclaim, "lru");
  EXPECT_FALSE(d.reinsert_hits);
  EXPECT_EQ(d.admission, "write-budget");
  EXPECT_EQ(d.write_budget_bytes_per_day, 100ull << 30);
  EXPECT_EQ(d.demote_watermark, 0.75);
  EXPECT_FALSE(d.flush_on_shutdown);
  // The effective config printed at start parses back to the same values.
  ServerConfig again;
  ASSERT_TRUE(ParseServerConfigYaml(config.ToYaml(), &again).ok()) << config.ToYaml();
  EXPECT_EQ(again.ToYaml(), config.ToYaml());
}

TEST(ConfigTest, ErrorsNameTheKey) {
  auto error = [](const char* yaml) {
    ServerConfig config;
    return ParseServerConfigYaml(yaml, &config);
  };
  Status s = error("host_tier:\n  capacty: 1GiB\n");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("'host_tier.capacty': unknown key"), std::string::npos) << s.message();
  s = error("limits:\n  max_batch: -3\n");
  EXPECT_NE(s.message().find("'limits.max_batch'"), std::string::npos) << s.message();
  s = error("host_tier:\n  capacity: huge\n");
  EXPECT_NE(s.message().find("'host_tier.capacity'"), std::string::npos) << s.message();
  s = error("host_tier:\n  prefault: maybe\n");
  EXPECT_NE(s.message().find("'host_tier.prefault'"), std::string::npos) << s.message();
  s = error("log_level: loud\n");
  EXPECT_NE(s.message().find("'log_level'"), std::string::npos) << s.message();
  s = error("listen: [1, 2]\n");
  EXPECT_NE(s.message().find("'listen'"), std::string::npos) << s.message();
  s = error("limits:\n  max_frame_bytes: 1KiB\n");
  EXPECT_NE(s.message().find("max_frame_bytes"), std::string::npos) << s.message();
  s = error("just a string");
  EXPECT_NE(s.message().find("mapping"), std::string::npos) << s.message();
  s = error("disk:\n  path: /x\n  reclaim: random\n");
  EXPECT_NE(s.message().find("'disk.reclaim'"), std::string::npos) << s.message();
  s = error("disk:\n  path: /x\n  capacity: 1MiB\n");
  EXPECT_NE(s.message().find("'disk.capacity'"), std::string::npos) << s.message();
  s = error("key: [unclosed");
  EXPECT_NE(s.message().find("not valid YAML"), std::string::npos) << s.message();
}

TEST(ConfigTest, ReuseKeys) {
  ServerConfig config;
  EXPECT_EQ(config.store.variants.max_variants, 4u);
  EXPECT_EQ(config.store.variants.admission, "replace-least-recent");
  Status s = ParseServerConfigYaml("reuse:\n  max_variants: 8\n  admission: keep-existing\n", &config);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(config.store.variants.max_variants, 8u);
  EXPECT_EQ(config.store.variants.admission_policy(), VariantAdmission::kKeepExisting);
  ServerConfig bad;
  s = ParseServerConfigYaml("reuse:\n  max_variants: 65\n", &bad);
  EXPECT_NE(s.message().find("reuse.max_variants"), std::string::npos) << s.message();
  ServerConfig bad_admission;
  s = ParseServerConfigYaml("reuse:\n  admission: newest\n", &bad_admission);
  EXPECT_NE(s.message().find("reuse.admission"), std::string::npos) << s.message();
  ServerConfig bad_key;
  s = ParseServerConfigYaml("reuse:\n  max_variant: 2\n", &bad_key);
  EXPECT_NE(s.message().find("'reuse.max_variant': unknown key"), std::string::npos) << s.message();
}

TEST(ConfigTest, SharedMemoryKeys) {
  ServerConfig config;
  const Status ok = ParseServerConfigYaml(R"(
shared_memory:
  socket: /run/kvtier/kvtier.sock
  socket_mode: "0600"
  namespaces: {workers: 8GiB}
  put_window: 16MiB
  max_connections: 8
  default_lease_ms: 2000
  max_leases_per_connection: 100
)", &config);
  ASSERT_TRUE(ok.ok()) << ok.ToString();
  EXPECT_EQ(config.shared_memory.socket_path, "/run/kvtier/kvtier.sock");
  EXPECT_EQ(config.shared_memory.socket_mode, 0600u);
  EXPECT_EQ(config.store.shared_arena_bytes.at("workers"), 8ull << 30);
  EXPECT_EQ(config.shared_memory.put_window_bytes, 16ull << 20);
  EXPECT_EQ(config.shared_memory.max_connections, 8u);
  EXPECT_EQ(config.shared_memory.default_lease_ms, 2000u);
  EXPECT_EQ(config.shared_memory.max_leases_per_connection, 100u);
  ServerConfig again;
  ASSERT_TRUE(ParseServerConfigYaml(config.ToYaml(), &again).ok());
  EXPECT_EQ(again.ToYaml(), config.ToYaml());

  auto error = [](const char* yaml) {
    ServerConfig c;
    return ParseServerConfigYaml(yaml, &c);
  };
  Status s = error("shared_memory:\n  namespaces: {a: 1GiB}\n");
  EXPECT_NE(s.message().find("set shared_memory.socket too"), std::string::npos) << s.message();
  s = error("shared_memory:\n  socket: /x.sock\n  socket_mode: \"rw\"\n");
  EXPECT_NE(s.message().find("'shared_memory.socket_mode'"), std::string::npos) << s.message();
  s = error("shared_memory:\n  socket: relative.sock\n");
  EXPECT_NE(s.message().find("absolute path"), std::string::npos) << s.message();
  s = error("shared_memory:\n  socket: /x.sock\n  put_window: 4KiB\n");
  EXPECT_NE(s.message().find("put_window"), std::string::npos) << s.message();
}

TEST(ConfigTest, MissingFileIsNotFound) {
  ServerConfig config;
  EXPECT_EQ(LoadServerConfigFile("/nonexistent/kvtier.yaml", &config).code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace kvtier

namespace kvtier {
namespace {

// Leaf keys of a YAML mapping as dotted paths, with their scalar values.
void Flatten(const YAML::Node& node, const std::string& prefix, std::map<std::string, std::string>& out) {
  for (const auto& kv : node) {
    const std::string key = prefix + kv.first.as<std::string>();
    if (kv.second.IsMap() && kv.second.size() > 0) Flatten(kv.second, key + ".", out);
    else if (kv.second.IsMap()) out[key] = "{}";
    else out[key] = kv.second.Scalar();
  }
}

// docs/config.md's table: `key` | `default` | ...
std::map<std::string, std::string> DocumentedKeys() {
  std::ifstream in(std::string(KVTIER_SOURCE_DIR) + "/docs/config.md");
  EXPECT_TRUE(in.good()) << "docs/config.md not found";
  std::map<std::string, std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.starts_with("| `")) continue;
    const size_t key_end = line.find('`', 3);
    const size_t def_begin = line.find('`', key_end + 1);
    const size_t def_end = line.find('`', def_begin + 1);
    std::string def = line.substr(def_begin + 1, def_end - def_begin - 1);
    if (def.size() >= 2 && def.front() == '"' && def.back() == '"') def = def.substr(1, def.size() - 2);
    out[line.substr(3, key_end - 3)] = def;
  }
  return out;
}

// The reference and the parser never drift apart: every key the server takes (the effective-config
// dump, which the parser reads back) is documented with its real default, and nothing else is.
TEST(ConfigDocsTest, DocumentedKeysAndDefaultsMatchTheParser) {
  const ServerConfig defaults;
  std::map<std::string, std::string> parsed;
  Flatten(YAML::Load(defaults.ToYaml()), "", parsed);
  const auto documented = DocumentedKeys();
  EXPECT_EQ(documented.size(), parsed.size());
  for (const auto& [key, value] : parsed) {
    auto it = documented.find(key);
    if (it == documented.end()) {
      ADD_FAILURE() << "config key '" << key << "' is not in docs/config.md";
      continue;
    }
    EXPECT_EQ(it->second, value) << "documented default of '" << key << "'";
  }
  for (const auto& [key, value] : documented) {
    EXPECT_TRUE(parsed.contains(key)) << "docs/config.md documents '" << key << "', which the server does not take";
  }
  ServerConfig reread;
  const Status s = ParseServerConfigYaml(defaults.ToYaml(), &reread);
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(reread.ToYaml(), defaults.ToYaml());
}

}  // namespace
}  // namespace kvtier
