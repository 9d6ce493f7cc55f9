// A Store with a GPU tier over EmulatedDeviceMemory (the test double), for the GPU tier tests: chunk
// helpers that put and check byte-exact payloads (integration/test_server.h's PayloadFor), and a peer that
// says which copies a chunk has.
//
// Sizes: a chunk is 32 tokens of 2 KiB (64 KiB payload + 128 bytes of token ids), 17 units of 4 KiB on
// either tier, so a 1 MiB host arena or GPU arena holds 15 chunks.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <numeric>
#include <vector>

#include "chunk_table.h"
#include "integration/test_server.h"
#include "kvstore/emulated_device_memory.h"
#include "kvtier/kvstore/store.h"

namespace kvtier {

// Which copies a chunk has, read under the store's lock.
class StoreTestPeer {
 public:
  struct Copies {
    bool indexed = false, in_host = false, in_gpu = false, on_disk = false;
  };
  static Copies CopiesOf(Store& store, const Scope& scope, const ChunkKey& key) {
    std::lock_guard lock(store.mu_);
    const ChunkEntry* e = store.table_->Find(scope.ns_id, key);
    if (e == nullptr) return {};
    return {true, e->in_host, e->in_gpu, e->on_disk};
  }
};

namespace testing {

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kChunkTokens = 32;
constexpr uint64_t kPayloadBytes = kChunkTokens * 2048;
constexpr uint64_t kChunkUnits = 17;  // (128 + 64 KiB) rounded to 4 KiB units
constexpr uint64_t kPerMiB = 256 / kChunkUnits;  // 15 chunks in 1 MiB

inline ModelFingerprint GpuTestFp() {
  ModelFingerprint fp;
  fp.model_id = "gpu-tier-test";
  fp.num_layers = 2;
  fp.num_kv_heads = 4;
  fp.head_dim = 64;
  fp.dtype = DType::kFp16;
  fp.chunk_tokens = kChunkTokens;
  return fp;  // 2 KiB per token
}

class GpuTierFixture : public ::testing::Test {
 protected:
  using Copies = StoreTestPeer::Copies;

  void TearDown() override {
    store_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  StoreOptions Options(uint64_t host = 1 * kMiB, uint64_t gpu = 1 * kMiB) {
    StoreOptions o;
    o.host_capacity_bytes = host;
    o.host_prefault = false;
    o.host_huge_pages = false;
    o.gpu.capacity_bytes = gpu;
    o.gpu.device = 3;
    o.gpu.max_consecutive_errors = 3;
    o.gpu.open_device = OpenEmulatedDevice(knobs_);
    o.now_ns = [this] { return now_; };
    return o;
  }

  // Adds an NVMe tier in a fresh temporary directory (demotion only when the test asks or a put needs room).
  void WithDisk(StoreOptions& o) {
    dir_ = std::filesystem::temp_directory_path() /
           ("kvtier-gpu-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    o.disk.path = dir_.string();
    o.disk.capacity_bytes = 8 * kMiB;
    o.disk.region_bytes = 1 * kMiB;
    o.disk.background_demotion = false;
  }

  void Open(StoreOptions o) {
    store_.reset();
    auto s = Store::Open(std::move(o));
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
    auto scope = store_->OpenScope("tenant", GpuTestFp(), true);
    ASSERT_TRUE(scope.ok()) << scope.status().ToString();
    scope_ = *scope;
  }

  static ChunkKey Key(uint64_t k) { return {0x6d, k}; }

  Result<PutOutcome> Put(uint64_t k, TierKind prefer = TierKind::kNone, bool pin = false) {
    return PutIn(scope_, k, prefer, pin);
  }

  Result<PutOutcome> PutIn(const Scope& scope, uint64_t k, TierKind prefer, bool pin) {
    const auto payload = PayloadFor(Key(k), kPayloadBytes);
    std::vector<uint32_t> tokens(kChunkTokens);
    std::iota(tokens.begin(), tokens.end(), static_cast<uint32_t>(k));
    PutSpec spec{Key(k), tokens, CodecId::kRaw, payload.size(), Checksum64(payload), static_cast<uint32_t>(k),
                 pin, nullptr, prefer};
    auto put = store_->BeginPut(scope, spec);
    if (!put.ok()) return put.status();
    KVTIER_RETURN_IF_ERROR(put->Append(payload));
    return put->Commit();
  }

  // The tier a put landed in; fails the test on an error.
  TierKind PutTier(uint64_t k, TierKind prefer = TierKind::kNone, bool pin = false) {
    auto outcome = Put(k, prefer, pin);
    EXPECT_TRUE(outcome.ok()) << outcome.status().ToString();
    return outcome.ok() ? outcome->tier : TierKind::kNone;
  }

  // Plain puts of `count` fresh chunks from `first`: pushes older chunks' host copies out.
  void FillHost(uint64_t first, uint64_t count) {
    for (uint64_t k = first; k < first + count; ++k) ASSERT_EQ(PutTier(k), TierKind::kHost) << k;
  }

  // Compares a held chunk with what was put under k, byte for byte.
  static bool SameAsPut(const ChunkRef& ref, uint64_t k) {
    const auto payload = PayloadFor(Key(k), kPayloadBytes);
    return ref.payload().size() == payload.size() &&
           std::memcmp(ref.payload().data(), payload.data(), payload.size()) == 0 &&
           ref.token_ids().size() == kChunkTokens && ref.token_ids()[0] == static_cast<uint32_t>(k) &&
           ref.entry().base_position == static_cast<uint32_t>(k);
  }

  // 1: a hit with exactly the bytes, tokens and position put; 0: a miss. Wrong bytes fail the test.
  int Check(uint64_t k) {
    auto ref = store_->Get(scope_, Key(k));
    EXPECT_TRUE(ref.ok()) << ref.status().ToString();
    if (!ref.ok() || !*ref) return 0;
    EXPECT_TRUE(SameAsPut(*ref, k)) << "wrong bytes for chunk " << k;
    return 1;
  }

  Copies CopiesOf(uint64_t k) { return StoreTestPeer::CopiesOf(*store_, scope_, Key(k)); }

  TierKind LookupTier(uint64_t k) {
    std::vector<TierKind> tiers;
    EXPECT_TRUE(store_->Lookup(scope_, std::vector<ChunkKey>{Key(k)}, 0, &tiers).ok());
    return tiers.at(0);
  }

  // The snapshot of `kind` in stats, or a default one (kind kNone) when the tier is absent.
  static TierSnapshot TierOf(const StoreStats& stats, TierKind kind) {
    for (const TierSnapshot& t : stats.tiers) {
      if (t.kind == kind) return t;
    }
    return {};
  }
  TierSnapshot Gpu() { return TierOf(store_->Stats(), TierKind::kGpu); }

  std::shared_ptr<DeviceFaultKnobs> knobs_ = std::make_shared<DeviceFaultKnobs>();
  std::unique_ptr<Store> store_;
  Scope scope_;
  int64_t now_ = 1'000'000'000;
  std::filesystem::path dir_;
};

}  // namespace testing
}  // namespace kvtier
