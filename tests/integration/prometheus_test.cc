// A real Prometheus server (Debian package 'prometheus') scrapes a kvtier server on loopback every
// second; known operations are done, and Prometheus' HTTP query API must show counters that moved by
// exactly what was done. Every query of the Grafana dashboard must evaluate there too. Waits are
// bounded and only wait for state (a scrape newer than the operations); assertions are on values.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <fcntl.h>

#include <chrono>
#include <fstream>
#include <numeric>
#include <optional>
#include <thread>

#include "integration/observability.h"
#include "integration/scrape.h"

namespace kvtier::testing {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kWaitLimit = std::chrono::seconds(30);

int FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

// One Prometheus process with its own config and TSDB in a temp dir; killed and cleaned up on
// destruction (and killed by the kernel if this test process dies first: PR_SET_PDEATHSIG).
class PrometheusProcess {
 public:
  PrometheusProcess(const std::string& binary, int target_port)
      : dir_(std::filesystem::temp_directory_path() / ("kvtier-prometheus-" + std::to_string(getpid()))) {
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ / "data");
    std::ofstream(dir_ / "prometheus.yml") << "global:\n"
                                              "  scrape_interval: 1s\n"
                                              "  scrape_timeout: 1s\n"
                                              "  evaluation_interval: 1s\n"
                                              "scrape_configs:\n"
                                              "  - job_name: kvtier\n"
                                              "    static_configs:\n"
                                              "      - targets: ['127.0.0.1:"
                                           << target_port << "']\n";
    for (int attempt = 0; attempt < 3 && pid_ < 0; ++attempt) Launch(binary);
  }

  ~PrometheusProcess() {
    Stop();
    std::filesystem::remove_all(dir_);
  }

  bool running() const { return pid_ > 0; }
  int port() const { return port_; }

  // The log's last lines, for failure messages.
  std::string LogTail() const {
    std::ifstream in(dir_ / "prometheus.log");
    std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return log.size() > 3000 ? log.substr(log.size() - 3000) : log;
  }

  // data.result of an instant query; nullopt when the API does not answer "success".
  std::optional<Json> Query(const std::string& promql, std::string* error = nullptr) const {
    const std::string response = HttpGet(port_, "/api/v1/query?query=" + UrlEncode(promql));
    std::string parse_error;
    auto doc = ParseJson(HttpBody(response), &parse_error);
    const Json* status = doc ? doc->Find("status") : nullptr;
    if (status == nullptr || status->string != "success") {
      if (error != nullptr) *error = response.substr(0, 500) + parse_error;
      return std::nullopt;
    }
    return *doc->Find("data")->Find("result");
  }

  // The value of a query that selects exactly one series; nullopt when it selects none.
  std::optional<double> Value(const std::string& promql) const {
    std::string error;
    auto result = Query(promql, &error);
    EXPECT_TRUE(result.has_value()) << promql << ": " << error;
    if (!result || result->items.empty()) return std::nullopt;
    EXPECT_EQ(result->items.size(), 1u) << promql << " selects more than one series";
    const Json* value = result->items[0].Find("value");
    return std::stod(value->items[1].string);
  }

  // Polls until `ready` holds, or kWaitLimit passes (false).
  template <typename Fn>
  bool WaitFor(Fn&& ready) const {
    for (const auto deadline = Clock::now() + kWaitLimit; Clock::now() < deadline;) {
      if (ready()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

 private:
  void Launch(const std::string& binary) {
    port_ = FreeLoopbackPort();
    std::vector<std::string> args = {binary,
                                     "--config.file=" + (dir_ / "prometheus.yml").string(),
                                     "--storage.tsdb.path=" + (dir_ / "data").string(),
                                     "--web.listen-address=127.0.0.1:" + std::to_string(port_),
                                     "--log.level=warn"};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string log = (dir_ / "prometheus.log").string();
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid == 0) {
      // Only async-signal-safe calls between fork and exec (the parent has threads).
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
      }
      execv(argv[0], argv.data());
      _exit(127);
    }
    if (pid < 0) return;
    pid_ = pid;
    // Ready, or exited (e.g. the port was taken meanwhile: the constructor tries another).
    const bool ready = WaitFor([&] {
      int status;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return true;
      }
      return HttpOk(HttpGet(port_, "/-/ready"));
    });
    if (!ready) Stop();
  }

  void Stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    for (int i = 0; i < 100; ++i) {
      int status;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  std::filesystem::path dir_;
  pid_t pid_ = -1;
  int port_ = -1;
};

double WallSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

class PrometheusTest : public ObservedServerTest {
 protected:
  void SetUp() override {
    binary_ = FindProgram("prometheus");
    if (binary_.empty()) {
      GTEST_SKIP() << "prometheus not installed (Debian package 'prometheus'; scripts/install-deps.sh)";
    }
  }
  std::string binary_;
};

TEST_F(PrometheusTest, CountersMoveByExactlyWhatWasDone) {
  StartObserved(/*all_tiers=*/false);
  PrometheusProcess prometheus(binary_, server_->metrics_port());
  ASSERT_TRUE(prometheus.running()) << prometheus.LogTail();

  // The first scrape: the target is up, and before any operation the counters are at zero.
  ASSERT_TRUE(prometheus.WaitFor([&] { return prometheus.Value("up{job=\"kvtier\"}") == 1.0; }))
      << prometheus.LogTail();
  EXPECT_EQ(prometheus.Value("kvtier_codec_bytes_total{codec=\"int8\",direction=\"in\"}"), 0.0);
  EXPECT_EQ(prometheus.Value("kvtier_hits_total{tier=\"host\"}"), 0.0);
  EXPECT_EQ(prometheus.Value("kvtier_requests_total{op=\"put\"}"), std::nullopt);
  auto build = prometheus.Query("kvtier_build_info == 1");
  ASSERT_TRUE(build.has_value() && build->items.size() == 1);
  const Json& labels = *build->items[0].Find("metric");
  EXPECT_EQ(labels.Find("version")->string, client_->Stats()->version());
  EXPECT_TRUE(labels.Find("cuda")->string == "on" || labels.Find("cuda")->string == "off");

  // 7 int8 puts, 5 gets (3 hits, 2 misses), a lookup leasing 3 chunks, a lookup refused (and the
  // Stats call above).
  const ModelFingerprint fp = TestFingerprint();
  codec::EncodeOptions int8;
  int8.codec = codec::CodecId::kInt8;
  auto writer = CodecClient(codec::CodecId::kInt8);
  std::vector<uint64_t> encoded_bytes;
  std::vector<ChunkKey> keys;
  for (uint64_t i = 0; i < 7; ++i) {
    const ChunkKey key{0x9a0, i};
    const auto kv = SmoothKv(fp, 16, static_cast<float>(i));
    ASSERT_TRUE(writer->Put(key, TokensFor(key, 16), kv).ok());
    encoded_bytes.push_back(EncodedKv(fp, kv, int8).size());
    keys.push_back(key);
  }
  std::vector<std::byte> dest(16 * fp.KvBytesPerToken());
  for (uint64_t i : {0, 1, 2}) ASSERT_TRUE(client_->Get(keys[i], dest)->found);
  for (uint64_t i : {100, 101}) ASSERT_FALSE(client_->Get({0x9a0, i}, dest)->found);
  ASSERT_EQ(client_->Lookup(std::span(keys).first(3), std::chrono::seconds(60))->leading_hits, 3u);
  ASSERT_EQ(client_->Lookup(std::vector<ChunkKey>(2000)).status().code(), StatusCode::kInvalidArgument);
  // A get's request counter is bumped when its reactor is done, which may trail the client's answer.
  ASSERT_TRUE(prometheus.WaitFor([&] {
    return Sample(server_->metrics().Render(), "kvtier_requests_total{code=\"OK\",op=\"get\"}") == 5;
  }));
  const double done_at = WallSeconds();

  // A scrape that began after all of it.
  ASSERT_TRUE(prometheus.WaitFor([&] {
    auto at = prometheus.Value("timestamp(up{job=\"kvtier\"})");
    return at.has_value() && *at > done_at;
  })) << prometheus.LogTail();

  const double int8_in = static_cast<double>(std::accumulate(encoded_bytes.begin(), encoded_bytes.end(), 0ull));
  const double int8_out = static_cast<double>(encoded_bytes[0] + encoded_bytes[1] + encoded_bytes[2]);
  EXPECT_EQ(prometheus.Value("kvtier_requests_total{op=\"put\",code=\"OK\"}"), 7.0);
  EXPECT_EQ(prometheus.Value("kvtier_requests_total{op=\"get\",code=\"OK\"}"), 5.0);
  EXPECT_EQ(prometheus.Value("kvtier_requests_total{op=\"lookup\",code=\"OK\"}"), 1.0);
  EXPECT_EQ(prometheus.Value("kvtier_requests_total{op=\"lookup\",code=\"INVALID_ARGUMENT\"}"), 1.0);
  EXPECT_EQ(prometheus.Value("kvtier_requests_total{op=\"stats\",code=\"OK\"}"), 1.0);  // the version check
  // Clients also asked once each for the shared-memory path (local_info), which this server does not offer.
  EXPECT_EQ(prometheus.Value("sum(kvtier_requests_total{op!=\"local_info\"})"), 15.0);
  EXPECT_EQ(prometheus.Value("kvtier_request_duration_seconds_count{op=\"put\"}"), 7.0);
  EXPECT_EQ(prometheus.Value("kvtier_request_duration_seconds_bucket{op=\"get\",le=\"+Inf\"}"), 5.0);
  EXPECT_EQ(prometheus.Value("kvtier_hits_total{tier=\"host\"}"), 3.0);
  EXPECT_EQ(prometheus.Value("kvtier_misses_total"), 2.0);
  EXPECT_EQ(prometheus.Value("kvtier_codec_bytes_total{codec=\"int8\",direction=\"in\"}"), int8_in);
  EXPECT_EQ(prometheus.Value("kvtier_codec_bytes_total{codec=\"int8\",direction=\"out\"}"), int8_out);
  EXPECT_EQ(prometheus.Value("sum(kvtier_codec_bytes_total{codec!=\"int8\"})"), 0.0);
  EXPECT_EQ(prometheus.Value("kvtier_tier_chunks{tier=\"host\"}"), 7.0);
  EXPECT_EQ(prometheus.Value("kvtier_leases_held"), 3.0);
  EXPECT_EQ(prometheus.Value("sum(kvtier_inflight_bytes)"), 0.0);
  EXPECT_EQ(prometheus.Value("kvtier_evictions_total{tier=\"host\"}"), 0.0);

  // The dashboard's queries parse and evaluate against real data.
  for (const DashboardQuery& q : DashboardQueries()) {
    std::string error;
    EXPECT_TRUE(prometheus.Query(WithVariablesResolved(q.expr), &error).has_value())
        << q.where << ": " << q.expr << "\n" << error;
  }
}

}  // namespace
}  // namespace kvtier::testing
