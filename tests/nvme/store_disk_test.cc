// The NVMe tier inside the Store: demotion, promotion, warm restart, reclaim, admission, and faults
// injected under the tier (flipped bytes, EIO, ENOSPC, short writes). Real io_uring I/O on real files.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <unordered_map>
#include <vector>

#include "kvtier/api/chunk_keys.h"
#include "kvtier/api/reuse.h"
#include "kvtier/codec/model_profile.h"
#include "kvtier/kvstore/store.h"
#include "nvme/disk_format.h"
#include "nvme/faulty_file.h"
#include "nvme/meta_store.h"

namespace kvtier::testing {
namespace {

constexpr uint64_t kMiB = 1 << 20;

ModelFingerprint Fp() {
  ModelFingerprint fp;
  fp.model_id = "disk-test";
  fp.num_layers = 2;
  fp.num_kv_heads = 4;
  fp.head_dim = 64;
  fp.dtype = DType::kFp16;
  fp.chunk_tokens = 128;
  return fp;  // 2 KiB per token; 128 tokens = 256 KiB
}

std::vector<std::byte> Payload(uint64_t seed, size_t bytes = 128 * 2048) {
  std::vector<std::byte> out(bytes);
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (auto& b : out) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b = static_cast<std::byte>(x);
  }
  return out;
}

class StoreDiskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("kvtier-disk-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    knobs_ = std::make_shared<FaultKnobs>();
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  StoreOptions Options(uint64_t host = 4 * kMiB, uint64_t disk = 8 * kMiB) {
    StoreOptions o;
    o.host_capacity_bytes = host;
    o.host_prefault = false;
    o.host_huge_pages = false;
    o.disk.path = dir_.string();
    o.disk.capacity_bytes = disk;
    o.disk.region_bytes = 1 * kMiB;
    o.disk.demote_watermark = 0.5;
    o.disk.demote_batch_bytes = 1 * kMiB;
    o.disk.max_consecutive_errors = 3;
    o.disk.background_demotion = false;  // demotion happens when puts need room, or when the test says
    auto knobs = knobs_;
    o.disk.wrap_file = [knobs](std::unique_ptr<BlockFile> f) -> std::unique_ptr<BlockFile> {
      return std::make_unique<FaultInjectingFile>(std::move(f), knobs);
    };
    o.now_ns = [this] { return now_; };
    return o;
  }

  void Open(StoreOptions o) {
    store_.reset();
    auto s = Store::Open(std::move(o));
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
    auto scope = store_->OpenScope("tenant", Fp(), true);
    ASSERT_TRUE(scope.ok()) << scope.status().ToString();
    scope_ = *scope;
  }

  Status Put(uint64_t k, bool pin = false) {
    const auto payload = Payload(k);
    std::vector<uint32_t> tokens(payload.size() / 2048);
    std::iota(tokens.begin(), tokens.end(), static_cast<uint32_t>(k));
    PutSpec spec{{7, k}, tokens, CodecId::kRaw, payload.size(), Checksum64(payload), static_cast<uint32_t>(k), pin, nullptr};
    auto put = store_->BeginPut(scope_, spec);
    if (!put.ok()) return put.status();
    KVTIER_RETURN_IF_ERROR(put->Append(payload));
    return put->Commit().status();
  }

  // 1: hit with the right bytes and tokens, 0: miss, fails the test on wrong bytes.
  int Check(uint64_t k) {
    auto ref = store_->Get(scope_, {7, k});
    EXPECT_TRUE(ref.ok()) << ref.status().ToString();
    if (!ref.ok() || !*ref) return 0;
    const auto payload = Payload(k);
    EXPECT_EQ(ref->payload().size(), payload.size());
    EXPECT_EQ(std::memcmp(ref->payload().data(), payload.data(), payload.size()), 0) << "wrong bytes for " << k;
    EXPECT_EQ(ref->token_ids()[0], static_cast<uint32_t>(k));
    EXPECT_EQ(ref->entry().base_position, static_cast<uint32_t>(k));
    return 1;
  }

  TierKind TierOf(uint64_t k) {
    std::vector<TierKind> tiers;
    (void)store_->Lookup(scope_, std::vector<ChunkKey>{{7, k}}, 0, &tiers);
    return tiers[0];
  }

  const TierSnapshot& Disk(const StoreStats& s) { return s.tiers.at(1); }

  std::filesystem::path dir_;
  std::shared_ptr<FaultKnobs> knobs_;
  std::unique_ptr<Store> store_;
  Scope scope_;
  int64_t now_ = 1'000'000'000;
};

TEST_F(StoreDiskTest, EvictedChunksAreDemotedAndPromotedByteExact) {
  Open(Options(4 * kMiB, 16 * kMiB));
  for (uint64_t k = 0; k < 40; ++k) ASSERT_TRUE(Put(k).ok());  // 10 MiB through a 4 MiB host tier
  const StoreStats stats = store_->Stats();
  EXPECT_GT(stats.disk.demotions, 20u);
  EXPECT_GT(stats.disk.write_bytes, 20 * 256 * 1024u);
  EXPECT_EQ(TierOf(0), TierKind::kNvme);
  EXPECT_EQ(TierOf(39), TierKind::kHost);
  for (uint64_t k = 0; k < 40; ++k) EXPECT_EQ(Check(k), 1) << k;  // nothing was lost on the way down
  EXPECT_GT(store_->Stats().disk.promotions, 20u);
  EXPECT_EQ(store_->Stats().checksum_failures, 0u);
}

// KV-like fp16 values (finite, smooth) that the lossy codecs accept.
std::vector<std::byte> SmoothFp16(size_t values, float seed) {
  std::vector<std::byte> out(values * 2);
  for (size_t i = 0; i < values; ++i) {
    const float f = std::sin(0.11f * static_cast<float>(i % 509) + seed);  // |f| <= 1: exponent fits fp16
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    const int exponent = static_cast<int>((bits >> 23) & 0xff) - 112;
    const uint16_t h = static_cast<uint16_t>(((bits >> 16) & 0x8000u) |
                                             (exponent > 0 ? (exponent << 10) | ((bits >> 13) & 0x3ffu) : 0));
    std::memcpy(out.data() + 2 * i, &h, 2);
  }
  return out;
}

TEST_F(StoreDiskTest, ProfilesAndEncodedChunksSurviveARestart) {
  Open(Options(4 * kMiB, 16 * kMiB));
  const codec::KvShape shape{Fp().num_layers, Fp().num_kv_heads, Fp().head_dim, 128, DType::kFp16};
  const auto sample = SmoothFp16(shape.NumValues(), 1.0f);
  auto profile = codec::ModelProfile::Build(std::vector<codec::KvView>{{shape, sample, {}}});
  ASSERT_TRUE(profile.ok()) << profile.status().ToString();
  auto stored = store_->PutProfile(scope_, "tables-v1", profile->serialized());
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();

  codec::EncodeOptions encode;
  encode.codec = codec::CodecId::kCacheGen;
  encode.profile = &*profile;
  std::vector<std::byte> chunk;
  ASSERT_TRUE(codec::Encode({shape, SmoothFp16(shape.NumValues(), 2.0f), {}}, encode, chunk).ok());
  std::vector<uint32_t> tokens(128, 5);
  auto put = store_->BeginPut(scope_, {{9, 9}, tokens, CodecId::kCacheGen, chunk.size(), Checksum64(chunk), 0, false, nullptr});
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  ASSERT_TRUE(put->Append(chunk).ok());
  ASSERT_TRUE(put->Commit().ok());
  EXPECT_EQ(store_->DemoteAll(), 1u);

  Open(Options(4 * kMiB, 16 * kMiB));  // restart
  auto by_name = store_->GetProfile(scope_, "tables-v1", 0);
  ASSERT_TRUE(by_name.ok()) << by_name.status().ToString();
  EXPECT_EQ(by_name->profile->id(), profile->id());
  EXPECT_TRUE(std::ranges::equal(by_name->profile->serialized(), profile->serialized()));
  auto ref = store_->Get(scope_, {9, 9});
  ASSERT_TRUE(ref.ok() && *ref);
  EXPECT_EQ(ref->entry().codec, static_cast<uint8_t>(CodecId::kCacheGen));
  ASSERT_TRUE(std::ranges::equal(ref->payload(), chunk));
  std::vector<std::byte> decoded(shape.RawBytes());
  EXPECT_TRUE(codec::Decode(ref->payload(), decoded, {store_->ProfileResolver(scope_), nullptr}).ok());
}

TEST_F(StoreDiskTest, FullDiskReclaimsTheOldestRegionFirst) {
  Open(Options(4 * kMiB, 8 * kMiB));  // 8 regions of 3 records
  for (uint64_t k = 0; k < 40; ++k) ASSERT_TRUE(Put(k).ok());
  EXPECT_EQ(TierOf(0), TierKind::kNone);  // FIFO: the first region written went first
  EXPECT_EQ(TierOf(39), TierKind::kHost);
  int hits = 0;
  for (uint64_t k = 0; k < 40; ++k) hits += Check(k);  // fails the test on any wrong byte
  EXPECT_GT(hits, 20);
  EXPECT_GT(Disk(store_->Stats()).evictions, 0u);
  EXPECT_EQ(store_->Stats().checksum_failures, 0u);
}

TEST_F(StoreDiskTest, PromotedChunkEvictedAgainIsNotRewritten) {
  Open(Options(4 * kMiB, 16 * kMiB));
  for (uint64_t k = 0; k < 12; ++k) ASSERT_TRUE(Put(k).ok());
  store_->DemoteAll();
  for (uint64_t k = 12; k < 24; ++k) ASSERT_TRUE(Put(k).ok());  // pushes 0..11 out of DRAM
  ASSERT_EQ(TierOf(0), TierKind::kNvme);
  ASSERT_EQ(Check(0), 1);  // promoted back to DRAM
  ASSERT_EQ(TierOf(0), TierKind::kHost);
  store_->DemoteAll();
  const uint64_t written = store_->Stats().disk.write_bytes;
  for (uint64_t k = 24; k < 40; ++k) ASSERT_TRUE(Put(k).ok());  // evicts 0 from DRAM again
  ASSERT_EQ(TierOf(0), TierKind::kNvme);
  // Chunk 0 still had its disk copy: the only new writes are for 24..39.
  store_->DemoteAll();
  const uint64_t record = disk::RecordBytes(128, 128 * 2048);
  EXPECT_LE(store_->Stats().disk.write_bytes - written, 16 * record);
  EXPECT_EQ(Check(0), 1);
}

TEST_F(StoreDiskTest, WarmRestartKeepsEveryChunkOnDisk) {
  Open(Options(4 * kMiB, 16 * kMiB));
  for (uint64_t k = 0; k < 20; ++k) ASSERT_TRUE(Put(k).ok());
  store_->DemoteAll();
  ASSERT_EQ(*store_->Delete(scope_, std::vector<ChunkKey>{{7, 19}}), 1u);  // deleted stays deleted
  const uint64_t disk_chunks = Disk(store_->Stats()).chunks;
  ASSERT_EQ(disk_chunks, 19u);
  Open(Options(4 * kMiB, 16 * kMiB));  // a new process: only the disk and the index survive
  EXPECT_EQ(Disk(store_->Stats()).chunks, disk_chunks);
  EXPECT_EQ(store_->Stats().tiers[0].chunks, 0u);
  int hits = 0;
  for (uint64_t k = 0; k < 19; ++k) hits += Check(k);
  EXPECT_EQ(static_cast<uint64_t>(hits), disk_chunks);
  EXPECT_EQ(Check(19), 0);
  EXPECT_EQ(store_->Stats().checksum_failures, 0u);
}

TEST_F(StoreDiskTest, FlippedBytesOnDiskAreAMissAndCounted) {
  Open(Options(4 * kMiB, 16 * kMiB));
  for (uint64_t k = 0; k < 24; ++k) ASSERT_TRUE(Put(k).ok());
  store_->DemoteAll();
  ASSERT_EQ(TierOf(0), TierKind::kNvme);
  knobs_->flip_reads = 1;
  EXPECT_EQ(Check(0), 0);  // never a corrupt byte: a miss
  EXPECT_EQ(store_->Stats().checksum_failures, 1u);
  EXPECT_FALSE((*store_->Exists(scope_, std::vector<ChunkKey>{{7, 0}}))[0]);  // the index entry is gone
  EXPECT_EQ(Check(1), 1);  // the next read is fine
}

TEST_F(StoreDiskTest, CorruptHeaderOrPayloadInTheFileIsAMissAfterRestart) {
  Open(Options(4 * kMiB, 16 * kMiB));
  for (uint64_t k = 0; k < 20; ++k) ASSERT_TRUE(Put(k).ok());
  store_->DemoteAll();
  store_.reset();
  // Flip one byte in the first record's header and one in the second record's payload, on the file.
  const uint64_t record = disk::RecordBytes(128, 128 * 2048);
  {
    std::fstream f(dir_ / "kvtier.data", std::ios::in | std::ios::out | std::ios::binary);
    for (uint64_t offset : {uint64_t{40}, record + disk::kHeaderBlock + 1000}) {
      f.seekg(static_cast<std::streamoff>(offset));
      char c = 0;
      f.read(&c, 1);
      c ^= 0x01;
      f.seekp(static_cast<std::streamoff>(offset));
      f.write(&c, 1);
    }
  }
  Open(Options(4 * kMiB, 16 * kMiB));
  int hits = 0;
  for (uint64_t k = 0; k < 20; ++k) hits += Check(k);  // Check fails the test on any wrong byte
  EXPECT_EQ(store_->Stats().checksum_failures, 2u);
  EXPECT_GT(hits, 0);
}

TEST_F(StoreDiskTest, RepeatedEioDisablesTheTierAndDramKeepsServing) {
  Open(Options(4 * kMiB, 16 * kMiB));
  for (uint64_t k = 0; k < 30; ++k) ASSERT_TRUE(Put(k).ok());  // the first ~15 end up on disk only
  knobs_->fail_reads = -1;
  int failed_reads = 0;
  for (uint64_t k = 0; k < 30 && !store_->Stats().disk.failed; ++k) {
    if (TierOf(k) != TierKind::kNvme) continue;
    EXPECT_EQ(Check(k), 0);  // an unreadable chunk is a miss, not an error
    ++failed_reads;
  }
  const StoreStats stats = store_->Stats();
  EXPECT_TRUE(stats.disk.failed);
  EXPECT_EQ(failed_reads, 3);  // max_consecutive_errors
  EXPECT_EQ(stats.disk.read_errors, 3u);
  EXPECT_EQ(Disk(stats).chunks, 0u);  // disk-only chunks are gone from the index
  // The host tier keeps serving; nothing more is written to the disabled tier.
  knobs_->fail_writes = -1;
  const uint64_t writes = knobs_->writes;
  for (uint64_t k = 100; k < 130; ++k) ASSERT_TRUE(Put(k).ok());
  EXPECT_EQ(Check(129), 1);
  store_->DemoteAll();
  EXPECT_EQ(knobs_->writes.load(), writes);
  EXPECT_EQ(TierOf(100), TierKind::kNone);  // evicted from DRAM, with no disk to go to
}

TEST_F(StoreDiskTest, DiskFullStopsDemotionButNotPuts) {
  Open(Options(4 * kMiB, 16 * kMiB));
  knobs_->no_space = true;
  for (uint64_t k = 0; k < 40; ++k) ASSERT_TRUE(Put(k).ok());
  store_->DemoteAll();
  const StoreStats stats = store_->Stats();
  EXPECT_TRUE(stats.disk.full);
  EXPECT_FALSE(stats.disk.failed);
  EXPECT_EQ(stats.disk.demotions, 0u);
  EXPECT_EQ(Check(39), 1);
  EXPECT_EQ(Disk(stats).chunks, 0u);
}

TEST_F(StoreDiskTest, ShortWritesLeaveNoIndexEntry) {
  Open(Options(4 * kMiB, 16 * kMiB));
  knobs_->short_writes = true;
  for (uint64_t k = 0; k < 12; ++k) ASSERT_TRUE(Put(k).ok());
  store_->DemoteAll();
  EXPECT_EQ(Disk(store_->Stats()).chunks, 0u);
  EXPECT_GT(store_->Stats().disk.write_errors, 0u);
  knobs_->short_writes = false;
  store_.reset();
  Open(Options(4 * kMiB, 16 * kMiB));
  EXPECT_EQ(Disk(store_->Stats()).chunks, 0u);  // nothing half-written was indexed
}

TEST_F(StoreDiskTest, SeenTwiceAdmitsOnlyReusedChunks) {
  auto o = Options(4 * kMiB, 16 * kMiB);
  o.disk.admission = "seen-twice";
  Open(o);
  for (uint64_t k = 0; k < 8; ++k) ASSERT_TRUE(Put(k).ok());
  for (uint64_t k = 0; k < 4; ++k) ASSERT_EQ(Check(k), 1);  // 0..3 are reused
  store_->DemoteAll();
  for (uint64_t k = 0; k < 4; ++k) EXPECT_TRUE(TierOf(k) != TierKind::kNone);
  const StoreStats stats = store_->Stats();
  EXPECT_EQ(stats.disk.admission_rejected, 4u);
  EXPECT_EQ(stats.disk.demotions, 4u);
}

TEST_F(StoreDiskTest, WriteBudgetLimitsBytesPerDay) {
  auto o = Options(4 * kMiB, 16 * kMiB);
  o.disk.admission = "write-budget";
  const uint64_t record = disk::RecordBytes(128, 128 * 2048);
  o.disk.write_budget_bytes_per_day = 3 * record;
  Open(o);
  for (uint64_t k = 0; k < 8; ++k) ASSERT_TRUE(Put(k).ok());
  store_->DemoteAll();
  EXPECT_EQ(store_->Stats().disk.demotions, 3u);
  EXPECT_EQ(store_->Stats().disk.admission_rejected, 5u);
}

TEST_F(StoreDiskTest, LruReclaimKeepsRecentlyReadRegions) {
  auto o = Options(2 * kMiB, 4 * kMiB);  // 4 regions of 3 records
  o.disk.reclaim = "lru";
  o.disk.reinsert_hits = false;
  Open(o);
  for (uint64_t k = 0; k < 9; ++k) ASSERT_TRUE(Put(k).ok());
  store_->DemoteAll();  // regions: {0,1,2} {3,4,5} {6,7,8}
  for (uint64_t k = 9; k < 16; ++k) ASSERT_TRUE(Put(k).ok());  // 0..8 leave DRAM
  ASSERT_EQ(TierOf(0), TierKind::kNvme);
  ASSERT_EQ(Check(0), 1);  // region of 0 is now the most recently read
  store_->DemoteAll();  // needs space: the LRU region {3,4,5} goes first
  EXPECT_NE(TierOf(0), TierKind::kNone);
  EXPECT_EQ(TierOf(3), TierKind::kNone);
}

TEST_F(StoreDiskTest, ReinsertionKeepsChunksReadFromTheReclaimedRegion) {
  auto o = Options(2 * kMiB, 4 * kMiB);
  o.disk.reinsert_hits = true;
  Open(o);
  for (uint64_t k = 0; k < 9; ++k) ASSERT_TRUE(Put(k).ok());
  store_->DemoteAll();
  for (uint64_t k = 9; k < 16; ++k) ASSERT_TRUE(Put(k).ok());
  ASSERT_EQ(Check(1), 1);                 // 1 is read from disk (promoted) ...
  for (uint64_t k = 16; k < 24; ++k) ASSERT_TRUE(Put(k).ok());  // ... and pushed out of DRAM again
  ASSERT_EQ(TierOf(1), TierKind::kNvme);
  store_->DemoteAll();          // FIFO reclaims region {0,1,2}: 1 is reinserted
  EXPECT_EQ(TierOf(0), TierKind::kNone);
  EXPECT_EQ(TierOf(1), TierKind::kNvme);
  EXPECT_GE(store_->Stats().disk.reinsertions, 1u);
  EXPECT_EQ(Check(1), 1);
}

TEST_F(StoreDiskTest, BufferedIoWorksWhenDirectIoIsOff) {
  auto o = Options(4 * kMiB, 16 * kMiB);
  o.disk.direct_io = false;  // what the tier falls back to where O_DIRECT is refused
  Open(o);
  for (uint64_t k = 0; k < 30; ++k) ASSERT_TRUE(Put(k).ok());
  EXPECT_FALSE(store_->Stats().disk.direct_io);
  for (uint64_t k = 0; k < 30; ++k) EXPECT_EQ(Check(k), 1) << k;
}

// Variants whose chunks are on disk keep their metadata and put order across a restart.
class VariantDiskTest : public StoreDiskTest {
 protected:
  static constexpr ChunkKey kA{0, 1}, kB{0, 2}, kC{0, 3}, kD{0, 4};

  StoreOptions VariantOptions(uint32_t max_variants = 4) {
    StoreOptions o = Options(4 * kMiB, 16 * kMiB);
    o.variants.max_variants = max_variants;
    return o;
  }

  static std::vector<uint32_t> Tokens() {
    std::vector<uint32_t> tokens(128);
    std::iota(tokens.begin(), tokens.end(), 500u);
    return tokens;
  }
  static ChunkKey Content() { return DeriveContentKey(Fp().Digest(), Tokens()); }
  static ChunkKey KeyOf(std::vector<ChunkKey> context) { return VariantKey(Content(), context); }

  // Metadata with every field set, distinct per `seed`.
  static std::shared_ptr<VariantMeta> Meta(std::vector<ChunkKey> context, float seed) {
    auto m = std::make_shared<VariantMeta>();
    m->content_key = Content();
    m->context = std::move(context);
    for (size_t i = 0; i < m->context.size(); ++i) m->context_attention.push_back(seed + float(i));
    m->context_impact = seed / 10;
    m->layer_context_impact = {seed / 20, seed / 30};
    for (size_t t = 0; t < 128; ++t) m->token_context_attention.push_back(float(t % 7) / 7 * seed / 10);
    return m;
  }

  Status PutVariant(std::shared_ptr<const VariantMeta> meta, uint64_t seed) {
    const auto payload = Payload(seed);
    const auto tokens = Tokens();
    PutSpec spec{KeyOf(meta->context), tokens, CodecId::kRaw, payload.size(), Checksum64(payload), 0, false, meta};
    auto put = store_->BeginPut(scope_, spec);
    if (!put.ok()) return put.status();
    KVTIER_RETURN_IF_ERROR(put->Append(payload));
    return put->Commit().status();
  }

  // The chosen variant's key (zero on a miss); fails the test unless its bytes are those put under that key.
  ChunkKey Choose(std::vector<ChunkKey> new_context, std::shared_ptr<const VariantMeta>* meta = nullptr) {
    auto choice = store_->SelectVariant(scope_, Content(), new_context);
    EXPECT_TRUE(choice.ok()) << choice.status().ToString();
    if (!choice.ok() || !choice->ref) return ChunkKey{};
    const auto payload = Payload(seed_of_.at(choice->variant_key));
    EXPECT_TRUE(std::ranges::equal(choice->ref.payload(), payload))
        << "wrong bytes for " << choice->variant_key.ToHex();
    if (meta != nullptr) *meta = choice->meta;
    return choice->variant_key;
  }

  Status Put(std::vector<ChunkKey> context, float seed) {
    seed_of_[KeyOf(context)] = static_cast<uint64_t>(seed * 100);
    return PutVariant(Meta(std::move(context), seed), static_cast<uint64_t>(seed * 100));
  }

  // Closes the store and lists the variant records left in the disk index.
  std::vector<ChunkKey> RecordsAfterClose() {
    store_.reset();
    auto meta = MetaStore::Open((dir_ / "index").string());
    EXPECT_TRUE(meta.ok()) << meta.status().ToString();
    auto snap = (*meta)->Load();
    std::vector<ChunkKey> keys;
    for (const DiskVariantRecord& r : snap->variants) keys.push_back(r.variant_key);
    return Sorted(std::move(keys));
  }

  static std::vector<ChunkKey> Sorted(std::vector<ChunkKey> keys) {
    std::ranges::sort(keys, [](const ChunkKey& a, const ChunkKey& b) { return a.ToHex() < b.ToHex(); });
    return keys;
  }

  std::unordered_map<ChunkKey, uint64_t, ChunkKeyHasher> seed_of_;
};

void ExpectSameMeta(const VariantMeta& a, const VariantMeta& b) {
  EXPECT_EQ(a.content_key, b.content_key);
  EXPECT_EQ(a.context, b.context);
  EXPECT_EQ(a.context_attention, b.context_attention);
  EXPECT_EQ(a.context_impact, b.context_impact);
  EXPECT_EQ(a.layer_context_impact, b.layer_context_impact);
  EXPECT_EQ(a.token_context_attention, b.token_context_attention);
}

TEST_F(VariantDiskTest, VariantsSurviveARestartWithTheirMetadataAndPutOrder) {
  Open(VariantOptions());
  ASSERT_TRUE(Put({kA, kB}, 2).ok());
  ASSERT_TRUE(Put({kC}, 3).ok());
  ASSERT_TRUE(Put({kD}, 4).ok());  // ties with {kC} for a context without either: the later put wins
  const std::vector<std::vector<ChunkKey>> contexts = {{kA, kB}, {kC}, {kD}, {}, {kB}, {kA, kC, kB}};
  std::vector<ChunkKey> before;
  std::vector<std::shared_ptr<const VariantMeta>> metas;
  for (const auto& context : contexts) {
    metas.emplace_back();
    before.push_back(Choose(context, &metas.back()));
  }
  ASSERT_EQ(before[3], KeyOf({kD}));
  ASSERT_EQ(before[4], KeyOf({kA, kB}));
  store_->DemoteAll();

  Open(VariantOptions());  // a new process
  EXPECT_EQ(store_->Stats().variants, 3u);
  EXPECT_EQ(store_->Stats().disk.variants_restored, 3u);
  EXPECT_EQ(store_->Stats().disk.variant_records_skipped, 0u);
  for (size_t i = 0; i < contexts.size(); ++i) {
    std::shared_ptr<const VariantMeta> meta;
    EXPECT_EQ(Choose(contexts[i], &meta), before[i]) << "context " << i;
    ASSERT_NE(meta, nullptr);
    ExpectSameMeta(*meta, *metas[i]);
  }
  // The put sequence goes on above the restored one: among equals the new put wins.
  const std::vector<ChunkKey> neutral = {ChunkKey{0, 99}};
  EXPECT_EQ(Choose(neutral), KeyOf({kD}));
  ASSERT_TRUE(Put({ChunkKey{0, 5}}, 5).ok());
  EXPECT_EQ(Choose(neutral), KeyOf({ChunkKey{0, 5}}));
}

TEST_F(VariantDiskTest, DeletedAndReplacedVariantsStayGone) {
  Open(VariantOptions(/*max_variants=*/2));
  ASSERT_TRUE(Put({kA}, 1).ok());
  ASSERT_TRUE(Put({kB}, 2).ok());
  ASSERT_EQ(*store_->Delete(scope_, std::vector<ChunkKey>{KeyOf({kA})}), 1u);
  ASSERT_TRUE(Put({kC}, 3).ok());
  ASSERT_TRUE(Put({kD}, 4).ok());  // the group is full: replaces {kB}, the least recent
  ASSERT_EQ(store_->VariantOf(scope_, KeyOf({kB})), nullptr);
  // The deleted variant's key comes back as a plain chunk: it must not become a variant again.
  const auto payload = Payload(9);
  const auto tokens = Tokens();
  auto put = store_->BeginPut(scope_, {KeyOf({kA}), tokens, CodecId::kRaw, payload.size(), Checksum64(payload), 0,
                                       false, nullptr});
  ASSERT_TRUE(put.ok());
  ASSERT_TRUE(put->Append(payload).ok());
  ASSERT_TRUE(put->Commit().ok());
  store_->DemoteAll();
  EXPECT_EQ(RecordsAfterClose(), Sorted({KeyOf({kC}), KeyOf({kD})}));

  Open(VariantOptions(2));
  EXPECT_EQ(store_->Stats().variants, 2u);
  EXPECT_EQ(store_->VariantOf(scope_, KeyOf({kA})), nullptr);
  EXPECT_EQ(store_->VariantOf(scope_, KeyOf({kB})), nullptr);
  EXPECT_NE(store_->VariantOf(scope_, KeyOf({kC})), nullptr);
  EXPECT_EQ(Choose({kB}), KeyOf({kD}));  // not {kB}, nor the plain chunk under {kA}'s key
  // Deleting the content key deletes every variant, and their records.
  ASSERT_EQ(*store_->Delete(scope_, std::vector<ChunkKey>{Content()}), 2u);
  EXPECT_TRUE(RecordsAfterClose().empty());
  Open(VariantOptions(2));
  EXPECT_EQ(store_->Stats().variants, 0u);
  EXPECT_EQ(Choose({kC}), ChunkKey{});
}

TEST_F(VariantDiskTest, ACorruptRecordIsSkippedAndTheRestRestored) {
  Open(VariantOptions());
  ASSERT_TRUE(Put({kA}, 1).ok());
  ASSERT_TRUE(Put({kB}, 2).ok());
  ASSERT_TRUE(Put({kC}, 3).ok());
  store_->DemoteAll();
  const uint32_t ns = scope_.ns_id;
  store_.reset();
  {
    auto meta = MetaStore::Open((dir_ / "index").string());
    ASSERT_TRUE(meta.ok());
    ASSERT_TRUE((*meta)->CorruptVariantForTest(ns, KeyOf({kB}), 20).ok());  // inside the content key
    ASSERT_TRUE((*meta)->CorruptVariantForTest(ns, KeyOf({kC}), 0).ok());   // the version byte
  }
  Open(VariantOptions());
  EXPECT_EQ(store_->Stats().variants, 1u);
  EXPECT_EQ(store_->Stats().disk.variant_records_skipped, 2u);
  EXPECT_EQ(Choose({kB}), KeyOf({kA}));
  EXPECT_EQ(store_->VariantOf(scope_, KeyOf({kB})), nullptr);
  {
    auto plain = store_->Get(scope_, KeyOf({kB}));
    ASSERT_TRUE(plain.ok() && *plain);  // a skipped record's chunk stays, as a plain chunk
  }  // the reference must end before the store closes below
  // A re-put with its metadata indexes it again.
  ASSERT_TRUE(Put({kB}, 2).ok());
  EXPECT_EQ(Choose({kB}), KeyOf({kB}));
  EXPECT_EQ(RecordsAfterClose(), Sorted({KeyOf({kA}), KeyOf({kB})}));  // the corrupt {kC} record is gone
}

TEST_F(VariantDiskTest, ARecordWhoseChunkNeverReachedDiskIsIgnored) {
  Open(VariantOptions());
  ASSERT_TRUE(Put({kA}, 1).ok());
  store_->DemoteAll();
  ASSERT_TRUE(Put({kB}, 2).ok());  // in DRAM only when the process ends (no shutdown flush in the Store)
  ASSERT_EQ(Choose({kB}), KeyOf({kB}));
  EXPECT_EQ(RecordsAfterClose(), Sorted({KeyOf({kA}), KeyOf({kB})}));
  Open(VariantOptions());
  EXPECT_EQ(store_->Stats().variants, 1u);
  EXPECT_EQ(store_->Stats().disk.variant_records_skipped, 0u);
  EXPECT_EQ(store_->VariantOf(scope_, KeyOf({kB})), nullptr);
  EXPECT_EQ(Choose({kB}), KeyOf({kA}));
  EXPECT_EQ(RecordsAfterClose(), Sorted({KeyOf({kA})}));
}

TEST_F(VariantDiskTest, ARestartWithFewerMaxVariantsKeepsTheNewestPuts) {
  Open(VariantOptions(4));
  ASSERT_TRUE(Put({kA}, 1).ok());
  ASSERT_TRUE(Put({kB}, 2).ok());
  ASSERT_TRUE(Put({kC}, 3).ok());
  store_->DemoteAll();
  Open(VariantOptions(2));
  EXPECT_EQ(store_->Stats().variants, 2u);
  EXPECT_EQ(store_->VariantOf(scope_, KeyOf({kA})), nullptr);
  EXPECT_NE(store_->VariantOf(scope_, KeyOf({kB})), nullptr);
  EXPECT_NE(store_->VariantOf(scope_, KeyOf({kC})), nullptr);
}

}  // namespace
}  // namespace kvtier::testing
