// Rendezvous placement and the per-node circuit breaker, without servers.
#include <gtest/gtest.h>

#include <map>
#include <thread>

#include "kvtier/client/sharded_client.h"
#include "shard/node_health.h"
#include "shard/node_set.h"
#include "shard/rendezvous.h"

namespace kvtier {
namespace {

std::vector<std::string> Nodes(int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back("10.0.0." + std::to_string(i + 1) + ":7070");
  return out;
}

ChunkKey Key(uint64_t i) { return {0x5eed0000 + (i >> 20), i * 0x9e3779b97f4a7c15ull}; }

uint32_t First(const std::vector<std::string>& nodes, const ChunkKey& key) {
  std::vector<uint32_t> order;
  RankNodes(nodes, key, &order);
  return order.front();
}

TEST(RendezvousTest, SpreadsKeysWithinTenPercentOfEven) {
  const auto nodes = Nodes(3);
  std::map<uint32_t, int> count;
  for (uint64_t i = 0; i < 3000; ++i) ++count[First(nodes, Key(i))];
  ASSERT_EQ(count.size(), 3u);
  for (const auto& [node, n] : count) {
    EXPECT_GE(n, 900) << nodes[node];
    EXPECT_LE(n, 1100) << nodes[node];
  }
}

TEST(RendezvousTest, AddingAFourthNodeMovesAboutAQuarterOfTheKeysAndOnlyToIt) {
  const auto three = Nodes(3);
  const auto four = Nodes(4);  // the same three plus one
  int moved = 0;
  for (uint64_t i = 0; i < 4000; ++i) {
    const uint32_t before = First(three, Key(i));
    const uint32_t after = First(four, Key(i));
    if (four[after] != three[before]) {
      ++moved;
      EXPECT_EQ(after, 3u) << "a key moved between two old nodes";
    }
  }
  EXPECT_GT(moved, 4000 * 0.20);
  EXPECT_LT(moved, 4000 * 0.30);
}

TEST(RendezvousTest, RemovingANodeMovesOnlyItsKeys) {
  const auto four = Nodes(4);
  const std::vector<std::string> three(four.begin(), four.begin() + 3);
  for (uint64_t i = 0; i < 2000; ++i) {
    const uint32_t before = First(four, Key(i));
    if (before != 3) {
      EXPECT_EQ(First(three, Key(i)), before);
    }
  }
}

TEST(RendezvousTest, OrderIsAPermutationAndStableAcrossCalls) {
  const auto nodes = Nodes(5);
  std::vector<uint32_t> a, b;
  RankNodes(nodes, Key(7), &a);
  RankNodes(nodes, Key(7), &b);
  EXPECT_EQ(a, b);
  std::vector<uint32_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<uint32_t>{0, 1, 2, 3, 4}));
  // Fixed value: the weight is part of the placement every client must agree on.
  // Pinned: a change to the weight function would move every key of every deployed cluster.
  EXPECT_EQ(RendezvousWeight("10.0.0.1:7070", ChunkKey{1, 2}), 16695417329577949466ull);
  EXPECT_NE(RendezvousWeight("10.0.0.1:7070", ChunkKey{1, 2}), RendezvousWeight("10.0.0.2:7070", ChunkKey{1, 2}));
}

TEST(NodeHealthTest, OpensAfterFailuresBacksOffAndClosesOnASuccessfulProbe) {
  NodeHealth health({3, std::chrono::milliseconds(100), std::chrono::milliseconds(400)});
  auto t = NodeHealth::Clock::time_point{} + std::chrono::hours(1);
  const Status down = Unavailable("connection refused");
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(health.Allow(t));
    health.Record(down, t);
    EXPECT_EQ(health.state(), CircuitState::kClosed);
  }
  ASSERT_TRUE(health.Allow(t));
  health.Record(down, t);
  EXPECT_EQ(health.state(), CircuitState::kOpen);
  EXPECT_FALSE(health.Allow(t + std::chrono::milliseconds(99)));
  // After the backoff one probe goes through; a second caller waits for it.
  EXPECT_TRUE(health.Allow(t + std::chrono::milliseconds(100)));
  EXPECT_FALSE(health.Allow(t + std::chrono::milliseconds(100)));
  health.Record(down, t + std::chrono::milliseconds(100));  // probe failed: the wait doubles
  EXPECT_FALSE(health.Allow(t + std::chrono::milliseconds(299)));
  EXPECT_TRUE(health.Allow(t + std::chrono::milliseconds(300)));
  health.Record(Status::Ok(), t + std::chrono::milliseconds(300));
  EXPECT_EQ(health.state(), CircuitState::kClosed);
  EXPECT_TRUE(health.Allow(t + std::chrono::milliseconds(300)));
  EXPECT_EQ(health.opened_count(), 2u);
}

TEST(NodeHealthTest, OnlyTransportFailuresCount) {
  NodeHealth health({1, std::chrono::milliseconds(100), std::chrono::milliseconds(100)});
  health.Record(InvalidArgument("bad shape"));
  health.Record(ResourceExhausted("full"));
  EXPECT_EQ(health.state(), CircuitState::kClosed);
  health.Record(Status(StatusCode::kDeadlineExceeded, "slow"));
  EXPECT_EQ(health.state(), CircuitState::kOpen);
}

TEST(NodeSetTest, ResolvesEveryAddressOfAName) {
  auto resolved = ResolveAll("localhost:7070");
  ASSERT_TRUE(resolved.ok()) << resolved.status().ToString();
  EXPECT_NE(std::find(resolved->begin(), resolved->end(), "127.0.0.1:7070"), resolved->end());
  EXPECT_EQ(ResolveAll("no-port").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ResolveAll("name.invalid:7070").status().code(), StatusCode::kUnavailable);
}

// A DNS name is resolved again once the interval passed; nodes that stay keep their connection and counters.
TEST(ShardedClientTest, ReResolvesTheNameAndKeepsNodesThatStay) {
  std::vector<std::string> answer = {"127.0.0.1:1", "127.0.0.1:2"};
  ShardedClientOptions o;
  o.client.name_space = "resolve";
  o.client.fingerprint.model_id = "m";
  o.client.fingerprint.num_layers = 1;
  o.client.fingerprint.num_kv_heads = 1;
  o.client.fingerprint.head_dim = 8;
  o.client.fingerprint.dtype = DType::kFp16;
  o.client.fingerprint.chunk_tokens = 1;
  o.client.local_path = LocalPathMode::kOff;
  o.dns_name = "kvtier-headless:7070";
  o.resolve_interval = std::chrono::milliseconds(1);
  o.resolve = [&](const std::string& name) -> Result<std::vector<std::string>> {
    EXPECT_EQ(name, "kvtier-headless:7070");
    return answer;
  };
  auto client = ShardedClient::Connect(o);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  EXPECT_EQ((*client)->nodes(), answer);
  std::vector<std::byte> dest(32);
  auto miss = (*client)->Get({1, 1}, dest);  // nobody listens on these ports: a miss, not an error
  ASSERT_TRUE(miss.ok()) << miss.status().ToString();
  EXPECT_FALSE(miss->found);
  uint64_t calls_before = 0;
  for (const NodeStats& s : (*client)->node_stats()) calls_before += s.calls;
  EXPECT_EQ(calls_before, 1u);

  answer = {"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"};
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_TRUE((*client)->Get({1, 2}, dest).ok());  // a call after the interval resolves again
  EXPECT_EQ((*client)->nodes(), answer);
  uint64_t calls_after = 0;
  for (const NodeStats& s : (*client)->node_stats()) calls_after += s.calls;
  EXPECT_GE(calls_after, calls_before + 1);  // the old nodes' counters survived the new snapshot
}

// A variant put is placed by its content key, so one that does not decode is refused before any node is
// asked (with no node listening, a put that reached the nodes would come back as stored nowhere).
TEST(ShardedClientTest, RefusesAVariantPutWithAMalformedContentKey) {
  ShardedClientOptions o;
  o.client.name_space = "variants";
  o.client.fingerprint.model_id = "m";
  o.client.fingerprint.num_layers = 1;
  o.client.fingerprint.num_kv_heads = 1;
  o.client.fingerprint.head_dim = 8;
  o.client.fingerprint.dtype = DType::kFp16;
  o.client.fingerprint.chunk_tokens = 1;
  o.client.local_path = LocalPathMode::kOff;
  o.endpoints = {"127.0.0.1:1", "127.0.0.1:2"};
  auto client = ShardedClient::Connect(o);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  const std::vector<uint32_t> tokens = {7};
  const std::vector<std::byte> kv(32);
  v1::ReuseMetadata reuse;
  reuse.set_content_key("short");
  auto put = (*client)->Put({1, 1}, tokens, kv, {.reuse = &reuse});
  EXPECT_EQ(put.status().code(), StatusCode::kInvalidArgument);
  uint64_t calls = 0;
  for (const NodeStats& s : (*client)->node_stats()) calls += s.calls + s.skipped;
  EXPECT_EQ(calls, 0u);
}

// What the Helm chart's client ConfigMap sets, read back into options.
TEST(ShardedOptionsTest, FromEnvironment) {
  ShardedClientOptions base;
  base.endpoints = {"a:1"};
  setenv("KVTIER_DNS_NAME", "kvtier-headless.llm.svc.cluster.local:7070", 1);
  setenv("KVTIER_REPLICAS", "2", 1);
  setenv("KVTIER_RESOLVE_INTERVAL_MS", "5000", 1);
  auto o = ShardedClientOptions::FromEnvironment(base);
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->dns_name, "kvtier-headless.llm.svc.cluster.local:7070");
  EXPECT_TRUE(o->endpoints.empty());
  EXPECT_EQ(o->replicas, 2u);
  EXPECT_EQ(o->resolve_interval, std::chrono::milliseconds(5000));
  unsetenv("KVTIER_DNS_NAME");
  setenv("KVTIER_ENDPOINTS", "10.0.0.1:7070,10.0.0.2:7070", 1);
  o = ShardedClientOptions::FromEnvironment(base);
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->endpoints, (std::vector<std::string>{"10.0.0.1:7070", "10.0.0.2:7070"}));
  setenv("KVTIER_REPLICAS", "two", 1);
  o = ShardedClientOptions::FromEnvironment(base);
  EXPECT_EQ(o.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(o.status().message().find("KVTIER_REPLICAS"), std::string::npos);
  unsetenv("KVTIER_ENDPOINTS");
  unsetenv("KVTIER_REPLICAS");
  unsetenv("KVTIER_RESOLVE_INTERVAL_MS");
}

}  // namespace
}  // namespace kvtier
