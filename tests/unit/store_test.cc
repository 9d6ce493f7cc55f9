#include "kvtier/kvstore/store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <map>
#include <numeric>
#include <vector>

namespace kvtier {

// Reaches into a chunk's stored bytes to simulate memory corruption.
class StoreTestPeer {
 public:
  static std::byte* MutablePayload(const ChunkRef& ref) { return const_cast<std::byte*>(ref.payload_.data()); }
};

namespace {

constexpr uint64_t kMiB = 1 << 20;

ModelFingerprint Fp(uint32_t chunk_tokens = 256) {
  ModelFingerprint fp;
  fp.model_id = "store-test";
  fp.num_layers = 2;
  fp.num_kv_heads = 4;
  fp.head_dim = 64;
  fp.dtype = DType::kFp16;
  fp.chunk_tokens = chunk_tokens;
  return fp;  // 2 KiB per token
}

class StoreTest : public ::testing::Test {
 protected:
  void Open(uint64_t capacity = 4 * kMiB, std::map<std::string, uint64_t> shared_arenas = {}) {
    StoreOptions options;
    options.shared_arena_bytes = std::move(shared_arenas);
    options.host_capacity_bytes = capacity;
    options.host_prefault = false;
    options.host_huge_pages = false;
    options.max_chunk_bytes = 2 * kMiB;
    options.max_batch = 8;
    options.now_ns = [this] { return now_.load(); };
    auto store = Store::Open(options);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    auto scope = store_->OpenScope("tenant-a", Fp(), true);
    ASSERT_TRUE(scope.ok());
    scope_ = *scope;
  }

  static std::vector<std::byte> Payload(uint32_t tokens, uint8_t seed) {
    std::vector<std::byte> p(tokens * Fp().KvBytesPerToken());
    for (size_t i = 0; i < p.size(); ++i) p[i] = static_cast<std::byte>((i * 13 + seed) & 0xff);
    return p;
  }

  Result<PutOutcome> Put(const Scope& scope, ChunkKey key, const std::vector<std::byte>& payload, bool pin = false) {
    std::vector<uint32_t> tokens(payload.size() / Fp().KvBytesPerToken());
    std::iota(tokens.begin(), tokens.end(), static_cast<uint32_t>(key.lo));
    PutSpec spec;
    spec.key = key;
    spec.token_ids = tokens;
    spec.payload_bytes = payload.size();
    spec.checksum = Checksum64(payload);
    spec.pin = pin;
    auto put = store_->BeginPut(scope, spec);
    if (!put.ok()) return put.status();
    // Arrives in frames, as from the network.
    for (size_t off = 0; off < payload.size(); off += 10000) {
      const size_t n = std::min<size_t>(10000, payload.size() - off);
      KVTIER_RETURN_IF_ERROR(put->Append(std::span(payload).subspan(off, n)));
    }
    return put->Commit();
  }

  bool Has(ChunkKey key) { return (*store_->Exists(scope_, std::vector<ChunkKey>{key}))[0]; }

  std::atomic<int64_t> now_{1'000'000'000};
  std::unique_ptr<Store> store_;
  Scope scope_;
};

TEST_F(StoreTest, PutThenGetReturnsTheSameBytesAndTokens) {
  Open();
  const auto payload = Payload(64, 1);
  auto put = Put(scope_, {1, 7}, payload);
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_FALSE(put->already_present);
  EXPECT_EQ(put->tier, TierKind::kHost);
  auto ref = store_->Get(scope_, {1, 7});
  ASSERT_TRUE(ref.ok());
  ASSERT_TRUE(*ref);
  ASSERT_EQ(ref->payload().size(), payload.size());
  EXPECT_EQ(std::memcmp(ref->payload().data(), payload.data(), payload.size()), 0);
  ASSERT_EQ(ref->token_ids().size(), 64u);
  EXPECT_EQ(ref->token_ids()[0], 7u);
  EXPECT_EQ(ref->token_ids()[63], 70u);
  EXPECT_EQ(store_->Stats().tiers[0].hits, 1u);
}

TEST_F(StoreTest, SecondPutOfACommittedKeyIsANoOp) {
  Open();
  ASSERT_TRUE(Put(scope_, {1, 1}, Payload(64, 1)).ok());
  const uint64_t used = store_->host_tier().used_bytes();
  auto again = Put(scope_, {1, 1}, Payload(64, 2));  // different bytes: ignored, chunks are immutable
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->already_present);
  EXPECT_EQ(store_->host_tier().used_bytes(), used);
  auto ref = store_->Get(scope_, {1, 1});
  EXPECT_EQ(std::memcmp(ref->payload().data(), Payload(64, 1).data(), ref->payload().size()), 0);
}

TEST_F(StoreTest, NamespacesAreIsolated) {
  Open();
  ASSERT_TRUE(Put(scope_, {2, 2}, Payload(8, 1)).ok());
  auto other = store_->OpenScope("tenant-b", Fp(), false);
  ASSERT_TRUE(other.ok());
  auto ref = store_->Get(*other, {2, 2});
  ASSERT_TRUE(ref.ok());
  EXPECT_FALSE(*ref);
  auto other_w = store_->OpenScope("tenant-b", Fp(), true);
  EXPECT_FALSE((*store_->Exists(*other_w, std::vector<ChunkKey>{{2, 2}}))[0]);
  EXPECT_EQ(*store_->Delete(*other_w, std::vector<ChunkKey>{{2, 2}}), 0u);
  EXPECT_TRUE(Has({2, 2}));
}

TEST_F(StoreTest, MismatchedFingerprintIsAnError) {
  Open();
  ASSERT_TRUE(Put(scope_, {3, 3}, Payload(8, 1)).ok());
  auto fp = Fp();
  fp.num_layers = 4;
  auto other = store_->OpenScope("tenant-a", fp, false);
  ASSERT_TRUE(other.ok());
  auto ref = store_->Get(*other, {3, 3});
  EXPECT_EQ(ref.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(ref.status().message().find("fingerprint mismatch"), std::string::npos);
  std::vector<TierKind> tiers;
  EXPECT_EQ(store_->Lookup(*other, std::vector<ChunkKey>{{3, 3}}, 0, &tiers).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(StoreTest, WrongExpectedTokensAreAMiss) {
  Open();
  ASSERT_TRUE(Put(scope_, {4, 0}, Payload(4, 1)).ok());
  const std::vector<uint32_t> right = {0, 1, 2, 3};
  const std::vector<uint32_t> wrong = {0, 1, 2, 4};
  EXPECT_TRUE(*store_->Get(scope_, {4, 0}, right));
  EXPECT_FALSE(*store_->Get(scope_, {4, 0}, wrong));
  EXPECT_EQ(store_->Stats().token_mismatches, 1u);
}

TEST_F(StoreTest, ChecksumMismatchAtCommitStoresNothing) {
  Open();
  const auto payload = Payload(8, 1);
  std::vector<uint32_t> tokens(8, 1);
  PutSpec spec{{5, 5}, tokens, CodecId::kRaw, payload.size(), Checksum64(payload) ^ 1, 0, false, nullptr};
  auto put = store_->BeginPut(scope_, spec);
  ASSERT_TRUE(put.ok());
  ASSERT_TRUE(put->Append(payload).ok());
  auto commit = put->Commit();
  EXPECT_EQ(commit.status().code(), StatusCode::kDataLoss);
  EXPECT_FALSE(Has({5, 5}));
  EXPECT_EQ(store_->host_tier().used_bytes(), 0u);
}

TEST_F(StoreTest, AbandonedPutLeavesNothingBehind) {
  Open();
  const auto payload = Payload(64, 1);
  std::vector<uint32_t> tokens(64, 1);
  {
    auto put = store_->BeginPut(scope_, {{6, 6}, tokens, CodecId::kRaw, payload.size(), Checksum64(payload), 0, false, nullptr});
    ASSERT_TRUE(put.ok());
    ASSERT_TRUE(put->Append(std::span(payload).subspan(0, 1000)).ok());
    EXPECT_EQ(put->Commit().status().code(), StatusCode::kFailedPrecondition);  // incomplete
    EXPECT_GT(store_->host_tier().used_bytes(), 0u);
  }
  EXPECT_FALSE(Has({6, 6}));
  EXPECT_EQ(store_->host_tier().used_bytes(), 0u);
}

TEST_F(StoreTest, AppendBeyondTheDeclaredPayloadIsRefused) {
  Open();
  const auto payload = Payload(8, 1);
  std::vector<uint32_t> tokens(8, 1);
  auto put = store_->BeginPut(scope_, {{7, 7}, tokens, CodecId::kRaw, payload.size(), Checksum64(payload), 0, false, nullptr});
  ASSERT_TRUE(put.ok());
  ASSERT_TRUE(put->Append(payload).ok());
  const std::byte extra[1] = {};
  EXPECT_EQ(put->Append(extra).code(), StatusCode::kInvalidArgument);
}

TEST_F(StoreTest, SpecValidation) {
  Open();
  const std::vector<uint32_t> tokens(8, 1);
  const uint64_t bytes = 8 * Fp().KvBytesPerToken();
  auto code = [&](PutSpec spec) { return store_->BeginPut(scope_, spec).status(); };
  Status s = code({{8, 8}, {}, CodecId::kRaw, 0, 0, 0, false, nullptr});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("token_ids is empty"), std::string::npos);
  s = code({{8, 8}, tokens, CodecId::kRaw, bytes + 2, 0, 0, false, nullptr});
  EXPECT_NE(s.message().find("does not match the shape"), std::string::npos);
  s = code({{8, 8}, tokens, static_cast<CodecId>(7), bytes, 0, 0, false, nullptr});
  EXPECT_NE(s.message().find("unknown codec"), std::string::npos);
  const std::vector<uint32_t> too_many(257, 1);
  s = code({{8, 8}, too_many, CodecId::kRaw, 257 * Fp().KvBytesPerToken(), 0, 0, false, nullptr});
  EXPECT_NE(s.message().find("exceed fingerprint.chunk_tokens"), std::string::npos);
  auto big = store_->OpenScope("tenant-a", Fp(4096), true);
  const std::vector<uint32_t> many(2048, 1);
  s = store_->BeginPut(*big, {{8, 9}, many, CodecId::kRaw, 2048 * Fp().KvBytesPerToken(), 0, 0, false, nullptr}).status();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("max_chunk_bytes"), std::string::npos);
  EXPECT_EQ(store_->OpenScope("", Fp(), true).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(StoreTest, EvictsLeastRecentlyUsedUnderPressure) {
  Open(1 * kMiB);  // 3 chunks of 256 KiB (+ a token page each) fit
  for (uint64_t k = 0; k < 3; ++k) ASSERT_TRUE(Put(scope_, {9, k}, Payload(128, 1)).ok());
  ASSERT_TRUE(*store_->Get(scope_, {9, 0}));  // 0 becomes most recent; 1 is now the LRU
  ASSERT_TRUE(Put(scope_, {9, 3}, Payload(128, 1)).ok());
  EXPECT_TRUE(Has({9, 0}));
  EXPECT_FALSE(Has({9, 1}));
  EXPECT_TRUE(Has({9, 2}));
  EXPECT_TRUE(Has({9, 3}));
  EXPECT_EQ(store_->Stats().tiers[0].evictions, 1u);
}

TEST_F(StoreTest, PinnedChunksAreNeverEvicted) {
  Open(1 * kMiB);
  for (uint64_t k = 0; k < 3; ++k) ASSERT_TRUE(Put(scope_, {10, k}, Payload(128, 1), /*pin=*/true).ok());
  auto full = Put(scope_, {10, 9}, Payload(128, 1));
  EXPECT_EQ(full.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(full.status().message().find("3 chunks pinned"), std::string::npos) << full.status().message();
  for (uint64_t k = 0; k < 3; ++k) EXPECT_TRUE(Has({10, k}));
  // Deleting a pinned chunk frees its space.
  EXPECT_EQ(*store_->Delete(scope_, std::vector<ChunkKey>{{10, 0}}), 1u);
  EXPECT_TRUE(Put(scope_, {10, 9}, Payload(128, 1)).ok());
}

TEST_F(StoreTest, LeasesProtectUntilTheyExpire) {
  Open(1 * kMiB);
  for (uint64_t k = 0; k < 3; ++k) ASSERT_TRUE(Put(scope_, {11, k}, Payload(128, 1)).ok());
  std::vector<TierKind> tiers;
  const std::vector<ChunkKey> chain = {{11, 0}, {11, 1}, {11, 7}, {11, 2}};
  auto leading = store_->Lookup(scope_, chain, /*lease_ttl_ms=*/1000, &tiers);
  ASSERT_TRUE(leading.ok());
  EXPECT_EQ(*leading, 2u);  // {11,7} breaks the chain; {11,2} is a hit but not leading
  EXPECT_EQ(tiers, (std::vector<TierKind>{TierKind::kHost, TierKind::kHost, TierKind::kNone, TierKind::kHost}));
  // 0 and 1 are leased: the only victim is 2.
  ASSERT_TRUE(Put(scope_, {11, 3}, Payload(128, 1)).ok());
  EXPECT_TRUE(Has({11, 0}));
  EXPECT_TRUE(Has({11, 1}));
  EXPECT_FALSE(Has({11, 2}));
  // With 0, 1 leased and 3 the only other chunk, the next put evicts 3 ...
  ASSERT_TRUE(Put(scope_, {11, 4}, Payload(128, 1)).ok());
  EXPECT_FALSE(Has({11, 3}));
  // ... and once the lease expires, the oldest leased chunk goes.
  now_ += 1'000'000'001;
  ASSERT_TRUE(Put(scope_, {11, 5}, Payload(128, 1)).ok());
  EXPECT_FALSE(Has({11, 0}));
  EXPECT_TRUE(Has({11, 1}));
}

TEST_F(StoreTest, LeasesHeldCountsLiveLeasesOnly) {
  Open();
  for (uint64_t k = 0; k < 4; ++k) ASSERT_TRUE(Put(scope_, {12, k}, Payload(16, 1)).ok());
  std::vector<TierKind> tiers;
  EXPECT_EQ(store_->Stats().leases_held, 0u);
  ASSERT_TRUE(store_->Lookup(scope_, std::vector<ChunkKey>{{12, 0}, {12, 1}, {12, 2}}, 0, &tiers).ok());
  EXPECT_EQ(store_->Stats().leases_held, 0u);  // no lease asked for
  ASSERT_TRUE(store_->Lookup(scope_, std::vector<ChunkKey>{{12, 0}, {12, 1}, {12, 2}}, 1000, &tiers).ok());
  ASSERT_TRUE(store_->Lookup(scope_, std::vector<ChunkKey>{{12, 0}}, 1000, &tiers).ok());  // renewal: same chunk
  EXPECT_EQ(store_->Stats().leases_held, 3u);
  ASSERT_EQ(*store_->Delete(scope_, std::vector<ChunkKey>{{12, 1}}), 1u);  // a deleted chunk holds no lease
  EXPECT_EQ(store_->Stats().leases_held, 2u);
  now_ += 500'000'000;
  ASSERT_TRUE(store_->Lookup(scope_, std::vector<ChunkKey>{{12, 3}}, 1000, &tiers).ok());
  EXPECT_EQ(store_->Stats().leases_held, 3u);
  now_ += 500'000'000;  // 0 and 2 expire now (a lease is held while now < until)
  EXPECT_EQ(store_->Stats().leases_held, 1u);
  EXPECT_EQ(store_->Stats().leases_held, 1u);  // pruning the expired ones changed nothing else
  ASSERT_TRUE(store_->Lookup(scope_, std::vector<ChunkKey>{{12, 0}}, 1000, &tiers).ok());  // leased again
  EXPECT_EQ(store_->Stats().leases_held, 2u);
  now_ += 2'000'000'000;
  EXPECT_EQ(store_->Stats().leases_held, 0u);
  // Deleting leased and formerly leased chunks leaves nothing counted (or listed).
  ASSERT_TRUE(store_->Lookup(scope_, std::vector<ChunkKey>{{12, 2}}, 1000, &tiers).ok());
  ASSERT_EQ(*store_->Delete(scope_, std::vector<ChunkKey>{{12, 0}, {12, 2}, {12, 3}}), 3u);
  EXPECT_EQ(store_->Stats().leases_held, 0u);
}

TEST_F(StoreTest, InflightPutBytesAreTheReservationsNotYetCommitted) {
  Open();
  const auto payload = Payload(64, 1);
  std::vector<uint32_t> tokens(64, 1);
  EXPECT_EQ(store_->Stats().inflight_put_bytes, 0u);
  auto first = store_->BeginPut(scope_, {{13, 1}, tokens, CodecId::kRaw, payload.size(), Checksum64(payload), 0, false, nullptr});
  ASSERT_TRUE(first.ok());
  const uint64_t one = store_->host_tier().used_bytes();
  EXPECT_EQ(store_->Stats().inflight_put_bytes, one);
  {
    auto second =
        store_->BeginPut(scope_, {{13, 2}, tokens, CodecId::kRaw, payload.size(), Checksum64(payload), 0, false, nullptr});
    ASSERT_TRUE(second.ok());
    EXPECT_EQ(store_->Stats().inflight_put_bytes, 2 * one);
  }  // abandoned
  EXPECT_EQ(store_->Stats().inflight_put_bytes, one);
  ASSERT_TRUE(first->Append(payload).ok());
  ASSERT_TRUE(first->Commit().ok());
  EXPECT_EQ(store_->Stats().inflight_put_bytes, 0u);
  // A reservation that fails its checksum is released too.
  auto bad = store_->BeginPut(scope_, {{13, 3}, tokens, CodecId::kRaw, payload.size(), 12345, 0, false, nullptr});
  ASSERT_TRUE(bad.ok());
  ASSERT_TRUE(bad->Append(payload).ok());
  EXPECT_EQ(bad->Commit().status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(store_->Stats().inflight_put_bytes, 0u);
}

TEST_F(StoreTest, AllLeasedMeansResourceExhaustedNamingLeases) {
  Open(1 * kMiB);
  std::vector<ChunkKey> keys;
  for (uint64_t k = 0; k < 3; ++k) {
    keys.push_back({12, k});
    ASSERT_TRUE(Put(scope_, keys.back(), Payload(128, 1)).ok());
  }
  std::vector<TierKind> tiers;
  ASSERT_EQ(*store_->Lookup(scope_, keys, 5000, &tiers), 3u);
  auto full = Put(scope_, {12, 9}, Payload(128, 1));
  EXPECT_EQ(full.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(full.status().message().find("3 leased"), std::string::npos) << full.status().message();
}

TEST_F(StoreTest, ChunkBeingReadSurvivesDeleteUntilReleased) {
  Open();
  const auto payload = Payload(64, 3);
  ASSERT_TRUE(Put(scope_, {13, 1}, payload).ok());
  auto ref = store_->Get(scope_, {13, 1});
  ASSERT_TRUE(ref.ok() && *ref);
  EXPECT_EQ(*store_->Delete(scope_, std::vector<ChunkKey>{{13, 1}}), 1u);
  EXPECT_FALSE(Has({13, 1}));
  EXPECT_GT(store_->host_tier().used_bytes(), 0u);  // still held by the reader
  EXPECT_EQ(std::memcmp(ref->payload().data(), payload.data(), payload.size()), 0);
  *ref = ChunkRef();
  EXPECT_EQ(store_->host_tier().used_bytes(), 0u);
}

TEST_F(StoreTest, CorruptBytesAreAMissAndTheChunkIsDropped) {
  Open();
  ASSERT_TRUE(Put(scope_, {14, 1}, Payload(64, 3)).ok());
  {
    auto ref = store_->Get(scope_, {14, 1});
    ASSERT_TRUE(*ref);
    StoreTestPeer::MutablePayload(*ref)[777] ^= std::byte{0x40};
  }
  auto ref = store_->Get(scope_, {14, 1});
  ASSERT_TRUE(ref.ok());
  EXPECT_FALSE(*ref);
  EXPECT_EQ(store_->Stats().checksum_failures, 1u);
  EXPECT_FALSE(Has({14, 1}));
  EXPECT_EQ(store_->host_tier().used_bytes(), 0u);
}

TEST_F(StoreTest, BatchLimits) {
  Open();
  std::vector<ChunkKey> nine(9);
  std::vector<TierKind> tiers;
  auto s = store_->Lookup(scope_, nine, 0, &tiers).status();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("max_batch 8"), std::string::npos);
  EXPECT_EQ(store_->Exists(scope_, {}).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(StoreTest, NamespaceLimit) {
  StoreOptions options;
  options.host_capacity_bytes = kMiB;
  options.host_prefault = false;
  options.max_namespaces = 2;
  auto store = Store::Open(options);
  ASSERT_TRUE(store.ok());
  EXPECT_TRUE((*store)->OpenScope("a", Fp(), true).ok());
  EXPECT_TRUE((*store)->OpenScope("b", Fp(), true).ok());
  EXPECT_EQ((*store)->OpenScope("c", Fp(), true).status().code(), StatusCode::kResourceExhausted);
  EXPECT_TRUE((*store)->OpenScope("c", Fp(), false).ok());  // reads of unknown namespaces just miss
}

}  // namespace
}  // namespace kvtier

namespace kvtier {
namespace {

// Per-namespace quotas: a put past its namespace's quota is RESOURCE_EXHAUSTED naming the quota, other
// namespaces are not affected, and deleting frees quota (also when an aborted put gave its bytes back).
TEST(StoreQuotaTest, PutsPastTheQuotaAreRefusedNamingItAndDeletesFreeIt) {
  StoreOptions options;
  options.host_capacity_bytes = 8 * kMiB;
  options.host_prefault = false;
  options.host_huge_pages = false;
  options.default_quota_bytes = 3 * 64 * 2048;              // three 64-token chunks
  options.namespace_quota_bytes["small"] = 64 * 2048;       // one
  options.namespace_quota_bytes["unlimited"] = 0;
  auto store = Store::Open(options);
  ASSERT_TRUE(store.ok());
  auto put = [&](const std::string& ns, uint64_t k) -> Status {
    auto scope = (*store)->OpenScope(ns, Fp(), true);
    if (!scope.ok()) return scope.status();
    std::vector<std::byte> payload(64 * 2048, std::byte{7});
    std::vector<uint32_t> tokens(64, 1);
    auto p = (*store)->BeginPut(*scope, {{1, k}, tokens, CodecId::kRaw, payload.size(), Checksum64(payload), 0, false, nullptr});
    if (!p.ok()) return p.status();
    KVTIER_RETURN_IF_ERROR(p->Append(payload));
    return p->Commit().status();
  };
  ASSERT_TRUE(put("small", 1).ok());
  const Status refused = put("small", 2);
  EXPECT_EQ(refused.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(refused.message().find("quotas.namespaces.small"), std::string::npos) << refused.message();
  EXPECT_NE(refused.message().find("namespace 'small' holds 131072 bytes"), std::string::npos) << refused.message();

  for (uint64_t k = 1; k <= 3; ++k) ASSERT_TRUE(put("tenant", k).ok()) << k;
  const Status by_default = put("tenant", 4);
  EXPECT_EQ(by_default.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(by_default.message().find("quotas.default_bytes"), std::string::npos) << by_default.message();
  for (uint64_t k = 1; k <= 10; ++k) ASSERT_TRUE(put("unlimited", k).ok()) << k;

  // An abandoned put gives its reservation back.
  {
    auto scope = (*store)->OpenScope("small", Fp(), true);
    auto deleted = (*store)->Delete(*scope, std::vector<ChunkKey>{{1, 1}});
    ASSERT_TRUE(deleted.ok() && *deleted == 1u);
    std::vector<uint32_t> tokens(64, 1);
    auto abandoned = (*store)->BeginPut(*scope, {{1, 5}, tokens, CodecId::kRaw, 64 * 2048, 0, 0, false, nullptr});
    ASSERT_TRUE(abandoned.ok());
  }
  EXPECT_TRUE(put("small", 2).ok());  // the delete and the abort freed the quota
}

// A namespace with a shared arena keeps its chunks there, and filling it evicts only its own chunks.
TEST_F(StoreTest, SharedArenaHoldsItsNamespaceAndEvictsOnlyWithinIt) {
  Open(4 * kMiB, {{"shared", 2 * kMiB}});
  const HostArena* arena = store_->SharedArenaOf("shared");
  ASSERT_NE(arena, nullptr);
  EXPECT_GE(arena->fd(), 0);
  EXPECT_EQ(store_->SharedArenaOf("tenant-a"), nullptr);
  auto shared = store_->OpenScope("shared", Fp(), true);
  ASSERT_TRUE(shared.ok());
  ASSERT_TRUE(Put(scope_, {7, 7}, Payload(256, 7)).ok());  // 512 KiB in the main arena
  const uint64_t main_used = store_->host_tier().used_bytes();
  for (uint64_t i = 0; i < 8; ++i) ASSERT_TRUE(Put(*shared, {1, i}, Payload(256, 1)).ok());  // 4 MiB into 2 MiB
  EXPECT_EQ(store_->host_tier().used_bytes(), main_used);  // the main arena was not touched
  EXPECT_TRUE(Has({7, 7}));                                 // nor was its chunk evicted
  auto newest = store_->Get(*shared, {1, 7});
  ASSERT_TRUE(newest.ok() && *newest);
  const std::byte* at = newest->payload().data();
  EXPECT_GE(at, arena->data());
  EXPECT_LT(at, arena->data() + arena->size());
  EXPECT_TRUE(std::equal(newest->payload().begin(), newest->payload().end(), Payload(256, 1).begin()));
  auto oldest = store_->Exists(*shared, std::vector<ChunkKey>{{1, 0}});
  ASSERT_TRUE(oldest.ok());
  EXPECT_FALSE((*oldest)[0]);  // LRU within the shared arena
  // Store statistics count both arenas.
  EXPECT_EQ(store_->Stats().tiers[0].capacity_bytes, 6 * kMiB);
}

TEST_F(StoreTest, SharedArenaOptionsAreValidated) {
  StoreOptions options;
  options.shared_arena_bytes["tiny"] = 4096;
  EXPECT_NE(options.Validate().message().find("at least 1 MiB"), std::string::npos);
  options.shared_arena_bytes = {{"", kMiB}};
  EXPECT_EQ(options.Validate().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvtier
