// The server process with an NVMe tier, killed with SIGKILL at random moments while a client puts
// 2,000 chunks, and restarted: every acknowledged chunk that comes back is byte-exact, and all of them
// come back except at most what the host tier could hold undemoted. Then a clean SIGTERM restart keeps
// every chunk that was on disk. And the stop signals: SIGTERM drains in-flight calls up to the grace
// period and exits 0; a second SIGTERM exits at once.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <atomic>
#include <optional>
#include <random>
#include <thread>

#include <grpcpp/create_channel.h>

#include "integration/server_process.h"
#include "integration/test_server.h"
#include "kvtier/api/convert.h"

extern char** environ;

namespace kvtier::testing {
namespace {

constexpr uint64_t kHostBytes = 16ull << 20;
constexpr uint32_t kTokens = 64;  // 64 KiB chunks with TestFingerprint (1 KiB per token)
constexpr uint64_t kChunkBytes = kTokens * 1024;

class CrashTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("kvtier-crash-" + std::to_string(getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    config_ = dir_ / "kvtier.yaml";
    std::ofstream(config_) << "listen: 127.0.0.1:0\n"
                           << "metrics_listen: \"\"\n"
                           << "host_tier:\n  capacity: 16MiB\n  prefault: false\n  huge_pages: false\n"
                           << "disk:\n  path: " << (dir_ / "nvme").string() << "\n  capacity: 256MiB\n"
                           << "  region_size: 4MiB\n";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<Client> Connect(const std::string& address) {
    ClientOptions options;
    options.endpoint = address;
    options.name_space = "crash";
    options.fingerprint = TestFingerprint(kTokens);
    options.max_attempts = 1;
    options.deadline = std::chrono::seconds(20);
    auto client = Client::Connect(options);
    EXPECT_TRUE(client.ok());
    return std::move(client).value();
  }

  std::filesystem::path dir_, config_;
};

TEST_F(CrashTest, SigkillAtFiveRandomMomentsNeverReturnsCorruptData) {
  std::mt19937 rng(4242);
  for (int run = 0; run < 5; ++run) {
    std::filesystem::remove_all(dir_ / "nvme");
    const uint64_t base = static_cast<uint64_t>(run) << 32;
    std::vector<uint64_t> acked;
    {
      ServerProcess server(dir_, config_);
      auto client = Connect(server.address());
      // Kill from another thread once a random number of puts went through, after a random sub-millisecond
      // delay, so the signal lands anywhere: mid-put, mid-demotion, mid-index-write.
      const uint64_t kill_at = 100 + rng() % 1800;
      const int delay_us = static_cast<int>(rng() % 3000);
      std::atomic<uint64_t> done{0};
      std::thread killer([&] {
        while (done.load() < kill_at) std::this_thread::sleep_for(std::chrono::microseconds(100));
        std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
        kill(server.pid(), SIGKILL);
      });
      for (uint64_t i = 0; i < 2000; ++i) {
        const ChunkKey key{base, i};
        if (!client->Put(key, TokensFor(key, kTokens), PayloadFor(key, kChunkBytes)).ok()) break;
        acked.push_back(i);
        done.store(i + 1);
      }
      done.store(UINT64_MAX);
      killer.join();
      server.Kill(SIGKILL);
    }
    ServerProcess server(dir_, config_);
    auto client = Connect(server.address());
    std::vector<std::byte> dest(kChunkBytes);
    uint64_t found = 0;
    for (uint64_t i = 0; i < 2000; ++i) {
      const ChunkKey key{base, i};
      auto got = client->Get(key, dest);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      if (!got->found) continue;
      ASSERT_EQ(dest, PayloadFor(key, kChunkBytes)) << "run " << run << ": corrupt chunk " << i;
      ++found;
    }
    // What can be missing: chunks still only in DRAM when the process died (at most a host tier's worth).
    const uint64_t host_slots = kHostBytes / kChunkBytes;
    EXPECT_GE(found + host_slots, acked.size()) << "run " << run << ": acked " << acked.size() << ", found " << found;
    if (acked.size() > 2 * host_slots) {
      EXPECT_GT(found, 0u) << "run " << run;
    }
    std::printf("run %d: killed after %zu acknowledged puts, %lu came back\n", run, acked.size(),
                static_cast<unsigned long>(found));
  }
}

TEST_F(CrashTest, CleanRestartKeepsEveryChunk) {
  std::vector<uint64_t> on_disk;
  {
    ServerProcess server(dir_, config_);
    auto client = Connect(server.address());
    std::vector<ChunkKey> keys;
    for (uint64_t i = 0; i < 1000; ++i) {
      const ChunkKey key{9, i};
      ASSERT_TRUE(client->Put(key, TokensFor(key, kTokens), PayloadFor(key, kChunkBytes)).ok());
      keys.push_back(key);
    }
    for (size_t begin = 0; begin < keys.size(); begin += 500) {
      auto lookup = client->Lookup(std::span(keys).subspan(begin, 500));
      ASSERT_TRUE(lookup.ok());
      for (size_t i = 0; i < 500; ++i) {
        if (lookup->tiers[i] == 2) on_disk.push_back(begin + i);
      }
    }
    ASSERT_GT(on_disk.size(), 700u);
    const int status = server.Kill(SIGTERM);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  }
  ServerProcess server(dir_, config_);
  auto client = Connect(server.address());
  std::vector<std::byte> dest(kChunkBytes);
  // Chunks on disk before the stop are there; and since a clean stop flushes DRAM to disk
  // (disk.flush_on_shutdown), so is every other chunk.
  for (uint64_t i = 0; i < 1000; ++i) {
    const ChunkKey key{9, i};
    auto got = client->Get(key, dest);
    ASSERT_TRUE(got.ok() && got->found) << "chunk " << i << " missing after a clean restart";
    ASSERT_EQ(dest, PayloadFor(key, kChunkBytes));
  }
}

}  // namespace
}  // namespace kvtier::testing

namespace kvtier::testing {
namespace {

// A put stream that stays open (header sent, payload never finished) keeps a call in flight.
struct StuckPut {
  explicit StuckPut(const std::string& address) {
    auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
    stub = v1::KvTier::NewStub(channel);
    writer = stub->Put(&ctx, &response);
    v1::PutRequest header;
    v1::PutHeader* h = header.mutable_header();
    h->mutable_context()->set_namespace_("test");
    ToProto(TestFingerprint(), h->mutable_context()->mutable_fingerprint());
    h->set_key(std::string(16, 'k'));
    h->add_token_ids(1);
    h->set_codec(v1::CODEC_RAW);
    h->set_payload_bytes(1024);
    EXPECT_TRUE(writer->Write(header));
  }
  ~StuckPut() { ctx.TryCancel(); }

  grpc::ClientContext ctx;
  v1::PutResponse response;
  std::unique_ptr<v1::KvTier::Stub> stub;
  std::unique_ptr<grpc::ClientWriter<v1::PutRequest>> writer;
};

class ShutdownTest : public CrashTest {
 protected:
  void WriteConfig(uint32_t grace_ms) {
    std::ofstream(config_, std::ios::app) << "shutdown_grace_ms: " << grace_ms << "\n";
  }
  std::string Log() {
    std::ifstream in(dir_ / "server.log");
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
};

TEST_F(ShutdownTest, SigtermWaitsForInFlightCallsUpToTheGraceThenExitsZero) {
  WriteConfig(1500);
  ServerProcess server(dir_, config_);
  StuckPut stuck(server.address());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the call reached the server
  server.Signal(SIGTERM);
  EXPECT_FALSE(server.WaitExit(std::chrono::milliseconds(800)).has_value()) << "exited before the grace period";
  auto status = server.WaitExit(std::chrono::seconds(20));
  ASSERT_TRUE(status.has_value()) << "still running long after the grace period";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "status " << *status;
  EXPECT_NE(Log().find("draining in-flight calls (up to 1500 ms)"), std::string::npos) << Log();
  EXPECT_NE(Log().find("stopped"), std::string::npos);
}

TEST_F(ShutdownTest, SecondSigtermExitsAtOnce) {
  WriteConfig(60000);
  ServerProcess server(dir_, config_);
  StuckPut stuck(server.address());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  server.Signal(SIGTERM);
  EXPECT_FALSE(server.WaitExit(std::chrono::milliseconds(500)).has_value()) << "the drain did not wait";
  server.Signal(SIGTERM);
  auto status = server.WaitExit(std::chrono::seconds(3));
  ASSERT_TRUE(status.has_value()) << "a second SIGTERM did not exit at once";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 2) << "status " << *status;
  EXPECT_NE(Log().find("again: exiting without finishing"), std::string::npos) << Log();
}

}  // namespace
}  // namespace kvtier::testing
