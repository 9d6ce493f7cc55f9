// /metrics over real HTTP: the series exist and move by exactly what was done.
#include <filesystem>
#include <regex>
#include <thread>

#include "integration/scrape.h"
#include "integration/test_server.h"

namespace kvtier::testing {
namespace {

class MetricsTest : public ServerFixture {};

TEST_F(MetricsTest, ScrapeShowsRequestAndTierSeries) {
  StartServer(32ull << 20, [](ServerConfig& c) { c.metrics_listen = "127.0.0.1:0"; });
  ASSERT_GT(server_->metrics_port(), 0);
  for (uint64_t i = 0; i < 3; ++i) {
    const ChunkKey key{1, i};
    ASSERT_TRUE(client_->Put(key, TokensFor(key, 16), PayloadFor(key, 16 * 1024)).ok());
  }
  std::vector<std::byte> dest(16 * 1024);
  ASSERT_TRUE(client_->Get({1, 0}, dest)->found);
  ASSERT_TRUE(client_->Get({1, 1}, dest)->found);
  ASSERT_FALSE(client_->Get({1, 9}, dest)->found);
  std::vector<ChunkKey> too_many(2000);
  ASSERT_FALSE(client_->Lookup(too_many).ok());

  // A get is counted when its stream is done on the server, which may be just after the client saw the end:
  // wait for the third (the bound only guards against a hang).
  std::string text;
  for (int attempt = 0; attempt < 3000; ++attempt) {
    text = HttpGet(server_->metrics_port(), "/metrics");
    if (Sample(text, "kvtier_requests_total{code=\"OK\",op=\"get\"}") == 3) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_NE(text.find("200 OK"), std::string::npos) << text.substr(0, 200);
  EXPECT_EQ(Sample(text, "kvtier_requests_total{code=\"OK\",op=\"put\"}"), 3);
  EXPECT_EQ(Sample(text, "kvtier_requests_total{code=\"OK\",op=\"get\"}"), 3);
  EXPECT_EQ(Sample(text, "kvtier_requests_total{code=\"INVALID_ARGUMENT\",op=\"lookup\"}"), 1);
  EXPECT_EQ(Sample(text, "kvtier_request_duration_seconds_count{op=\"put\"}"), 3);
  EXPECT_EQ(Sample(text, "kvtier_hits_total{tier=\"host\"}"), 2);
  EXPECT_EQ(Sample(text, "kvtier_misses_total"), 1);
  EXPECT_EQ(Sample(text, "kvtier_tier_chunks{tier=\"host\"}"), 3);
  EXPECT_EQ(Sample(text, "kvtier_tier_capacity_bytes{tier=\"host\"}"), 32 << 20);
  EXPECT_EQ(Sample(text, "kvtier_tier_bytes{tier=\"host\"}"), 3 * (16 * 1024 + 4096));
  EXPECT_EQ(Sample(text, "kvtier_evictions_total{tier=\"host\"}"), 0);
  EXPECT_EQ(Sample(text, "kvtier_checksum_failures_total"), 0);
  EXPECT_NE(text.find("# TYPE kvtier_request_duration_seconds histogram"), std::string::npos);
  EXPECT_NE(text.find("# TYPE kvtier_hits_total counter"), std::string::npos);
  EXPECT_NE(text.find("# TYPE kvtier_tier_bytes gauge"), std::string::npos);
}

TEST_F(MetricsTest, NvmeTierSeries) {
  const auto dir = std::filesystem::temp_directory_path() / ("kvtier-metrics-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  StartServer(4ull << 20, [&](ServerConfig& c) {
    c.metrics_listen = "127.0.0.1:0";
    c.store.disk.path = dir.string();
    c.store.disk.capacity_bytes = 32ull << 20;
    c.store.disk.region_bytes = 4ull << 20;
    c.store.disk.background_demotion = false;
  });
  const ModelFingerprint fp = TestFingerprint(256);
  auto client = NewClient("test", fp);
  for (uint64_t i = 0; i < 30; ++i) {  // 7.5 MiB through a 4 MiB host tier: the first ones go to disk
    const ChunkKey key{2, i};
    ASSERT_TRUE(client->Put(key, TokensFor(key, 256), PayloadFor(key, 256 * 1024)).ok());
  }
  std::vector<std::byte> dest(256 * 1024);
  ASSERT_TRUE(client->Get({2, 0}, dest)->found);  // a promotion
  const std::string text = HttpGet(server_->metrics_port(), "/metrics");
  const StoreStats stats = server_->store().Stats();
  ASSERT_GT(stats.disk.demotions, 0u);
  EXPECT_EQ(Sample(text, "kvtier_demotions_total{tier=\"nvme\"}"), static_cast<double>(stats.disk.demotions));
  EXPECT_EQ(Sample(text, "kvtier_promotions_total{tier=\"nvme\"}"), 1);
  EXPECT_EQ(text.find("tier=\"gpu\""), std::string::npos) << "no GPU tier, no gpu series";
  EXPECT_EQ(Sample(text, "kvtier_disk_io_bytes_total{op=\"write\"}"), static_cast<double>(stats.disk.write_bytes));
  EXPECT_GT(Sample(text, "kvtier_disk_io_bytes_total{op=\"read\"}"), 256 * 1024);
  EXPECT_EQ(Sample(text, "kvtier_disk_io_errors_total{op=\"read\"}"), 0);
  EXPECT_EQ(Sample(text, "kvtier_disk_state{state=\"ok\"}"), 1);
  EXPECT_EQ(Sample(text, "kvtier_disk_state{state=\"failed\"}"), 0);
  EXPECT_EQ(Sample(text, "kvtier_disk_regions{state=\"open\"}"), 1);
  EXPECT_EQ(Sample(text, "kvtier_tier_capacity_bytes{tier=\"nvme\"}"), 32 << 20);
  EXPECT_EQ(Sample(text, "kvtier_tier_chunks{tier=\"nvme\"}"), static_cast<double>(stats.tiers[1].chunks));
  EXPECT_EQ(Sample(text, "kvtier_hits_total{tier=\"nvme\"}"), 1);
  EXPECT_GE(Sample(text, "kvtier_admission_rejected_total"), 0);
  EXPECT_GE(Sample(text, "kvtier_disk_direct_io"), 0);
  server_.reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kvtier::testing
