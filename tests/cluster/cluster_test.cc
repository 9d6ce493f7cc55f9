// Three `kvtier serve` processes on loopback and one ShardedClient: byte-exact round trips spread over the
// nodes, a node killed with SIGKILL in the middle of a read pass (its keys become misses, nothing fails, no
// wrong bytes), the node restarted on the same address (its NVMe tier brings its chunks back), replication
// surviving a dead node, a node that returns empty receiving only its share of new writes, and the variants
// of a content key kept together on its nodes.
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "integration/server_process.h"
#include "integration/test_server.h"
#include "kvtier/api/reuse.h"
#include "kvtier/client/chunker.h"
#include "kvtier/client/sharded_client.h"

namespace kvtier::testing {
namespace {

constexpr uint32_t kTokens = 4;  // 4 KiB chunks with TestFingerprint
constexpr uint64_t kChunkBytes = kTokens * 1024;

ChunkKey KeyOf(uint64_t i) { return {0xc1u, i}; }

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = std::filesystem::temp_directory_path() / ("kvtier-cluster-" + std::to_string(getpid()));
    std::filesystem::remove_all(root_);
  }
  void TearDown() override {
    nodes_.clear();
    std::filesystem::remove_all(root_);
  }

  // Starts node i on its own fixed port (so a restart comes back at the same address).
  void StartNode(size_t i, bool nvme) {
    if (ports_.size() <= i) ports_.resize(i + 1, 0);
    if (nodes_.size() <= i) nodes_.resize(i + 1);
    if (ports_[i] == 0) ports_[i] = FreeLoopbackPort();
    const auto dir = root_ / ("node" + std::to_string(i));
    std::filesystem::create_directories(dir);
    const auto config = dir / "kvtier.yaml";
    std::ofstream out(config);
    out << "listen: 127.0.0.1:" << ports_[i] << "\nmetrics_listen: \"\"\n"
        << "host_tier:\n  capacity: 16MiB\n  prefault: false\n  huge_pages: false\n";
    // A low watermark writes every chunk to disk soon after its put, so a SIGKILL loses none of them.
    if (nvme) {
      out << "disk:\n  path: " << (dir / "nvme").string() << "\n  capacity: 64MiB\n  region_size: 4MiB\n"
          << "  demote_watermark: 0.01\n";
    }
    out.close();
    nodes_[i] = std::make_unique<ServerProcess>(dir, config);
  }
  void StartCluster(size_t n, bool nvme) {
    for (size_t i = 0; i < n; ++i) StartNode(i, nvme);
  }
  std::string Address(size_t i) const { return "127.0.0.1:" + std::to_string(ports_[i]); }

  std::unique_ptr<ShardedClient> Connect(uint32_t replicas) {
    ShardedClientOptions o;
    o.client.name_space = "cluster";
    o.client.fingerprint = TestFingerprint(kTokens);
    o.client.deadline = std::chrono::seconds(10);
    o.client.local_path = LocalPathMode::kOff;
    for (size_t i = 0; i < nodes_.size(); ++i) o.endpoints.push_back(Address(i));
    o.replicas = replicas;
    o.initial_backoff = std::chrono::milliseconds(100);
    o.max_backoff = std::chrono::milliseconds(400);
    auto client = ShardedClient::Connect(o);
    EXPECT_TRUE(client.ok()) << client.status().ToString();
    return std::move(client).value();
  }
  std::unique_ptr<Client> Direct(size_t node) {
    ClientOptions o;
    o.endpoint = Address(node);
    o.name_space = "cluster";
    o.fingerprint = TestFingerprint(kTokens);
    o.local_path = LocalPathMode::kOff;
    return std::move(Client::Connect(o)).value();
  }
  // Chunks node `i` holds, per its Stats: in DRAM and on disk.
  std::pair<uint64_t, uint64_t> Held(size_t i) {
    auto stats = Direct(i)->Stats();
    if (!stats.ok()) return {0, 0};
    uint64_t host = 0, disk = 0;
    for (const auto& t : stats->tiers()) (t.tier() == v1::TIER_NVME ? disk : host) += t.chunks();
    return {host, disk};
  }

  void PutAll(ShardedClient& client, uint64_t from, uint64_t to, uint32_t expect_copies) {
    for (uint64_t i = from; i < to; ++i) {
      auto put = client.Put(KeyOf(i), TokensFor(KeyOf(i), kTokens), PayloadFor(KeyOf(i), kChunkBytes));
      ASSERT_TRUE(put.ok()) << put.status().ToString();
      ASSERT_EQ(put->stored_on, expect_copies) << i;
    }
  }
  // Reads keys [from, to): found ones must be byte-exact; returns how many were found.
  uint64_t ReadAll(ShardedClient& client, uint64_t from, uint64_t to, const std::function<void(uint64_t)>& at = {}) {
    std::vector<std::byte> dest(kChunkBytes);
    uint64_t found = 0;
    for (uint64_t i = from; i < to; ++i) {
      if (at) at(i);
      auto got = client.Get(KeyOf(i), dest);
      EXPECT_TRUE(got.ok()) << "a call failed: " << got.status().ToString();
      if (!got.ok() || !got->found) continue;
      ++found;
      EXPECT_TRUE(dest == PayloadFor(KeyOf(i), kChunkBytes)) << "wrong bytes for key " << i;
    }
    return found;
  }
  std::map<std::string, uint64_t> KeysPerNode(ShardedClient& client, uint64_t from, uint64_t to) {
    std::map<std::string, uint64_t> out;
    for (uint64_t i = from; i < to; ++i) ++out[client.PlacementOf(KeyOf(i)).front()];
    return out;
  }

  // A passage (content-mode chunk) and the variants put for it.
  struct Passage {
    std::vector<uint32_t> tokens;
    ChunkKey content;
    std::vector<ChunkKey> variants;  // alone, behind [A, B], behind [C]
  };
  static std::string Wire(const ChunkKey& k) {
    const auto b = k.ToBytes();
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
  }
  // Content keys of chunks that appear before passages in prompts: A, B, C, D.
  std::vector<ChunkKey> ContextChunks() const {
    const Chunker chunker(TestFingerprint(kTokens));
    std::vector<ChunkKey> out;
    for (uint32_t c = 0; c < 4; ++c) out.push_back(chunker.ContentKey(std::vector<uint32_t>(kTokens, 900 + c)));
    return out;
  }
  // Puts `n` passages with three variants each through `client`, every variant on `copies` nodes.
  std::vector<Passage> PutVariants(ShardedClient& client, size_t n, uint32_t copies) {
    const Chunker chunker(TestFingerprint(kTokens));
    const auto ctx = ContextChunks();
    const std::vector<std::vector<ChunkKey>> contexts = {{}, {ctx[0], ctx[1]}, {ctx[2]}};
    const std::vector<std::vector<float>> attention = {{}, {0.75f, 0.25f}, {}};
    std::vector<Passage> out(n);
    for (size_t p = 0; p < n; ++p) {
      for (uint32_t t = 0; t < kTokens; ++t) out[p].tokens.push_back(static_cast<uint32_t>(10000 + p * kTokens + t));
      out[p].content = chunker.ContentKey(out[p].tokens);
      for (size_t v = 0; v < contexts.size(); ++v) {
        v1::ReuseMetadata meta;
        meta.set_content_key(Wire(out[p].content));
        for (const ChunkKey& k : contexts[v]) meta.add_context_keys(Wire(k));
        for (float a : attention[v]) meta.add_context_attention(a);
        meta.set_context_impact(0.5f);
        meta.add_layer_context_impact(0.25f);
        meta.add_layer_context_impact(0.75f);
        for (uint32_t t = 0; t < kTokens; ++t) meta.add_token_context_attention(0.1f * static_cast<float>(t));
        const ChunkKey key = VariantKey(out[p].content, contexts[v]);
        auto put = client.Put(key, out[p].tokens, PayloadFor(key, kChunkBytes), {.reuse = &meta});
        EXPECT_TRUE(put.ok()) << put.status().ToString();
        if (put.ok()) {
          EXPECT_EQ(put->stored_on, copies) << "passage " << p << " variant " << v;
        }
        out[p].variants.push_back(key);
      }
    }
    return out;
  }
  // Asks `client` for every passage's best variant behind `before` + all passages, and checks that it is
  // variant `want` of each, byte-exact, with score `match`. Returns how many were found.
  size_t ExpectBest(ShardedClient& client, const std::vector<Passage>& passages, std::vector<ChunkKey> before,
                    size_t want, double match) {
    std::vector<ChunkKey> keys;
    for (const Passage& p : passages) keys.push_back(p.content);
    std::vector<ChunkKey> prompt = std::move(before);
    prompt.insert(prompt.end(), keys.begin(), keys.end());
    std::vector<std::vector<std::byte>> buffers(keys.size(), std::vector<std::byte>(kChunkBytes));
    std::vector<std::span<std::byte>> dests(buffers.begin(), buffers.end());
    auto got = client.GetBestVariants(keys, prompt, dests);
    EXPECT_TRUE(got.ok()) << got.status().ToString();
    if (!got.ok()) return 0;
    size_t found = 0;
    for (size_t p = 0; p < passages.size(); ++p) {
      const VariantGetResult& r = (*got)[p];
      if (!r.chunk.found) continue;
      ++found;
      EXPECT_EQ(r.variant_key, passages[p].variants[want]) << "passage " << p;
      EXPECT_DOUBLE_EQ(r.context_match, match) << "passage " << p;
      EXPECT_EQ(r.chunk.num_tokens, kTokens);
      EXPECT_TRUE(buffers[p] == PayloadFor(passages[p].variants[want], kChunkBytes)) << "wrong bytes, passage " << p;
    }
    return found;
  }
  // Which nodes hold each variant of each passage, asked of every node directly.
  void ExpectVariantsOnPlacement(ShardedClient& client, const std::vector<Passage>& passages) {
    for (size_t i = 0; i < nodes_.size(); ++i) {
      auto direct = Direct(i);
      for (size_t p = 0; p < passages.size(); ++p) {
        const auto placement = client.PlacementOf(passages[p].content);
        const bool home = std::find(placement.begin(), placement.end(), Address(i)) != placement.end();
        auto held = direct->Exists(passages[p].variants);
        ASSERT_TRUE(held.ok()) << held.status().ToString();
        for (size_t v = 0; v < held->size(); ++v) {
          EXPECT_EQ((*held)[v], home) << "passage " << p << " variant " << v << " on node " << i;
        }
      }
    }
  }
  void VariantsShareTheirContentKeysNodes(uint32_t replicas) {
    StartCluster(3, /*nvme=*/false);
    auto client = Connect(replicas);
    const auto passages = PutVariants(*client, 60, replicas);
    std::set<std::string> homes;
    for (const Passage& p : passages) homes.insert(client->PlacementOf(p.content).front());
    EXPECT_EQ(homes.size(), 3u);  // the passages really span the nodes
    ExpectVariantsOnPlacement(*client, passages);
    const auto ctx = ContextChunks();
    EXPECT_EQ(ExpectBest(*client, passages, {ctx[0], ctx[1]}, 1, 1.0), passages.size());
    EXPECT_EQ(ExpectBest(*client, passages, {ctx[2], ctx[3]}, 2, 1.0), passages.size());
    EXPECT_EQ(ExpectBest(*client, passages, {ctx[0], ctx[3]}, 1, 0.75), passages.size());
    EXPECT_EQ(ExpectBest(*client, passages, {ctx[1], ctx[0]}, 0, 0.0), passages.size());  // flipped: the alone one

    // Deleting a content key reaches every node holding its variants.
    std::vector<ChunkKey> doomed;
    for (size_t p = 0; p < passages.size(); p += 2) doomed.push_back(passages[p].content);
    auto deleted = client->Delete(doomed);
    ASSERT_TRUE(deleted.ok()) << deleted.status().ToString();
    EXPECT_EQ(*deleted, doomed.size() * passages[0].variants.size() * replicas);  // each variant on each replica
    for (size_t i = 0; i < nodes_.size(); ++i) {
      auto direct = Direct(i);
      for (size_t p = 0; p < passages.size(); p += 2) {
        auto held = direct->Exists(passages[p].variants);
        ASSERT_TRUE(held.ok());
        for (bool h : *held) EXPECT_FALSE(h) << "a variant of deleted passage " << p << " is left on node " << i;
      }
    }
    std::vector<Passage> kept;
    for (size_t p = 1; p < passages.size(); p += 2) kept.push_back(passages[p]);
    EXPECT_EQ(ExpectBest(*client, kept, {ctx[0], ctx[1]}, 1, 1.0), kept.size());
    std::vector<Passage> gone;
    for (size_t p = 0; p < passages.size(); p += 2) gone.push_back(passages[p]);
    EXPECT_EQ(ExpectBest(*client, gone, {ctx[0], ctx[1]}, 1, 1.0), 0u);
  }

  std::filesystem::path root_;
  std::vector<int> ports_;
  std::vector<std::unique_ptr<ServerProcess>> nodes_;
};

TEST_F(ClusterTest, NodeKilledMidRunLosesOnlyItsHitsAndComesBackFromDisk) {
  StartCluster(3, /*nvme=*/true);
  auto client = Connect(1);
  PutAll(*client, 0, 3000, 1);
  const auto per_node = KeysPerNode(*client, 0, 3000);
  ASSERT_EQ(per_node.size(), 3u);
  for (const auto& [node, n] : per_node) {
    // The ports, and so the placement, change from run to run: 1000 +- 130 is five standard deviations of
    // a fair three-way split of 3000 keys, so only a skewed hash fails it.
    EXPECT_GE(n, 870u) << node;
    EXPECT_LE(n, 1130u) << node;
  }
  EXPECT_EQ(ReadAll(*client, 0, 3000), 3000u);
  // Every node has written its chunks to disk (the low watermark), so the kill loses none of them.
  for (size_t i = 0; i < 3; ++i) {
    const uint64_t want = per_node.at(Address(i));
    // A hang guard (60 s), not a timing check: a sanitizer build on a slow disk takes seconds.
    for (int t = 0; t < 3000 && Held(i).second < want; ++t) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_EQ(Held(i).second, want) << "node " << i << " did not demote everything";
  }

  // Kill node 1 a third of the way through a read pass: nothing fails, its keys turn into misses.
  uint64_t victim_keys_after = 0;
  const std::string victim = Address(1);
  const uint64_t found = ReadAll(*client, 0, 3000, [&](uint64_t i) {
    if (i == 1000) nodes_[1]->Kill(SIGKILL);
    if (i >= 1000 && client->PlacementOf(KeyOf(i)).front() == victim) ++victim_keys_after;
  });
  EXPECT_EQ(found, 3000 - victim_keys_after);
  EXPECT_GT(victim_keys_after, 500u);  // about a third of the 2000 keys read after the kill
  bool opened = false;
  for (const NodeStats& s : client->node_stats()) {
    if (s.endpoint == victim) opened = s.circuit_opened > 0 && s.skipped > 0;
  }
  EXPECT_TRUE(opened) << "the dead node was expected to be taken out and skipped";

  // Back on the same address, its chunks come back from its NVMe tier once the breaker lets it in again.
  StartNode(1, /*nvme=*/true);
  uint64_t again = 0;
  for (int attempt = 0; attempt < 50 && again < 3000; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    again = ReadAll(*client, 0, 3000);
  }
  EXPECT_EQ(again, 3000u);
}

TEST_F(ClusterTest, TwoReplicasLoseNothingWhenANodeDies) {
  StartCluster(3, /*nvme=*/false);
  auto client = Connect(2);
  PutAll(*client, 0, 600, 2);
  nodes_[0]->Kill(SIGKILL);
  EXPECT_EQ(ReadAll(*client, 0, 600), 600u);
  // Puts keep working with one copy where one of a key's two nodes is down.
  for (uint64_t i = 600; i < 700; ++i) {
    auto put = client->Put(KeyOf(i), TokensFor(KeyOf(i), kTokens), PayloadFor(KeyOf(i), kChunkBytes));
    ASSERT_TRUE(put.ok()) << put.status().ToString();
    EXPECT_GE(put->stored_on, 1u);
  }
  EXPECT_EQ(ReadAll(*client, 600, 700), 100u);
}

TEST_F(ClusterTest, ANodeReturningEmptyGetsOnlyItsShareOfNewWrites) {
  StartCluster(3, /*nvme=*/false);
  auto client = Connect(1);
  PutAll(*client, 0, 300, 1);
  nodes_[2]->Kill(SIGKILL);
  EXPECT_LT(ReadAll(*client, 0, 300), 300u);  // its keys are misses now
  StartNode(2, /*nvme=*/false);               // back, empty
  // Reads let a probe through once the backoff passed; it finds the node up and closes the breaker.
  auto closed = [&] {
    for (const NodeStats& s : client->node_stats()) {
      if (s.endpoint == Address(2)) return s.circuit == NodeCircuit::kClosed;
    }
    return false;
  };
  // The bound (60 s) only guards against a hang: a loaded machine may take seconds to restart the node.
  for (int attempt = 0; attempt < 1200 && !closed(); ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ReadAll(*client, 0, 300);
  }
  ASSERT_TRUE(closed());
  PutAll(*client, 300, 1200, 1);
  const uint64_t share = KeysPerNode(*client, 300, 1200).at(Address(2));
  const auto [host, disk] = Held(2);
  EXPECT_EQ(host, share);  // exactly its own keys, nothing redirected to the empty node
  // And that is about a third of the 900 new keys. The ports change from run to run, so the share is a
  // draw: 300 +- 75 is five standard deviations of a fair three-way split (+- 30 failed about 1 run in 30).
  EXPECT_GE(host, 225u);
  EXPECT_LE(host, 375u);
  EXPECT_EQ(disk, 0u);
}

TEST_F(ClusterTest, AFourthNodeTakesAboutAQuarterOfTheKeys) {
  StartCluster(3, /*nvme=*/false);
  PutAll(*Connect(1), 0, 3000, 1);
  StartNode(3, /*nvme=*/false);
  auto four = Connect(1);  // now over 4 nodes: a key whose first choice is the new node is a miss there
  const uint64_t moved = KeysPerNode(*four, 0, 3000).at(Address(3));
  EXPECT_GT(moved, 3000 * 0.20);
  EXPECT_LT(moved, 3000 * 0.30);
  EXPECT_EQ(ReadAll(*four, 0, 3000), 3000 - moved);  // every other key is still where it was, byte-exact
}

TEST_F(ClusterTest, DiscoversNodesByNameAndReportsEveryCallToTheObserver) {
  StartCluster(1, /*nvme=*/false);
  ShardedClientOptions o;
  o.client.name_space = "cluster";
  o.client.fingerprint = TestFingerprint(kTokens);
  o.client.local_path = LocalPathMode::kOff;
  o.dns_name = Address(0);  // resolved like a headless Service's name (here to itself)
  auto client = ShardedClient::Connect(o);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  EXPECT_EQ((*client)->nodes(), std::vector<std::string>{Address(0)});
  std::map<std::string, int> seen;
  (*client)->SetObserver([&](const std::string& endpoint, std::string_view op, StatusCode code, double seconds) {
    EXPECT_GE(seconds, 0.0);
    ++seen[endpoint + " " + std::string(op) + " " + std::to_string(static_cast<int>(code))];
  });
  PutAll(**client, 0, 5, 1);
  EXPECT_EQ(ReadAll(**client, 0, 5), 5u);
  EXPECT_TRUE(Direct(0)->CheckHealth().ok());
  nodes_[0]->Kill(SIGKILL);
  EXPECT_EQ(Direct(0)->CheckHealth().code(), StatusCode::kUnavailable);
  EXPECT_EQ(ReadAll(**client, 0, 5), 0u);  // misses, not errors
  EXPECT_EQ(seen[Address(0) + " put 0"], 5);
  EXPECT_EQ(seen[Address(0) + " get 0"], 5);
  EXPECT_GE(seen[Address(0) + " get 14"], 1);  // UNAVAILABLE until the breaker opened
  const NodeStats stats = (*client)->node_stats().front();
  EXPECT_EQ(stats.circuit, NodeCircuit::kOpen);
  EXPECT_GE(stats.transport_failures, 1u);
}

TEST_F(ClusterTest, PrefixLookupAcrossNodesIsTheLeadingRunOfHits) {
  StartCluster(3, /*nvme=*/false);
  auto client = Connect(1);
  PutAll(*client, 0, 64, 1);
  std::vector<ChunkKey> chain;
  for (uint64_t i = 0; i < 64; ++i) chain.push_back(KeyOf(i));
  auto all = client->Lookup(chain);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_EQ(all->leading_hits, 64u);
  EXPECT_EQ(KeysPerNode(*client, 0, 64).size(), 3u);  // the chain really spans the nodes
  ASSERT_EQ(*client->Delete(std::vector<ChunkKey>{KeyOf(40)}), 1u);
  auto cut = client->Lookup(chain);
  ASSERT_TRUE(cut.ok());
  EXPECT_EQ(cut->leading_hits, 40u);
  EXPECT_EQ(cut->tiers[40], 0u);
  EXPECT_NE(cut->tiers[41], 0u);
}

TEST_F(ClusterTest, VariantsLiveOnTheirContentKeysNodeAndTheBestIsFoundAcrossNodes) {
  VariantsShareTheirContentKeysNodes(1);
}

TEST_F(ClusterTest, VariantsAndTheirReplicaLiveOnTheirContentKeysTwoNodes) {
  VariantsShareTheirContentKeysNodes(2);
}

TEST_F(ClusterTest, TwoReplicasFindEveryBestVariantWhenANodeDies) {
  StartCluster(3, /*nvme=*/false);
  auto client = Connect(2);
  const auto passages = PutVariants(*client, 60, 2);
  size_t first_on_victim = 0;
  for (const Passage& p : passages) first_on_victim += client->PlacementOf(p.content).front() == Address(0);
  // The replicas are really asked. The ports, and so the placement, change per run: 60 passages give
  // 20 +- 3.7 first choices on a node; 2 is five standard deviations below.
  EXPECT_GE(first_on_victim, 2u);
  nodes_[0]->Kill(SIGKILL);
  const auto ctx = ContextChunks();
  EXPECT_EQ(ExpectBest(*client, passages, {ctx[0], ctx[1]}, 1, 1.0), passages.size());
  EXPECT_EQ(ExpectBest(*client, passages, {ctx[2]}, 2, 1.0), passages.size());
  EXPECT_EQ(ExpectBest(*client, passages, {ctx[1], ctx[0]}, 0, 0.0), passages.size());
}

}  // namespace
}  // namespace kvtier::testing
