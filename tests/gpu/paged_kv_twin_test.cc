// CPU twins of pack/unpack: against a naive per-element pack, round trips, fused re-rotation, and the
// argument checks (code and message). Run everywhere, with or without CUDA.
#include <gtest/gtest.h>

#include <random>

#include "kvtier/gpu/device.h"
#include "kvtier/gpu/paged_kv.h"
#include "kvtier/gpu/rope.h"
#include "gpu_test_common.h"
#include "paged_kv_cases.h"

namespace kvtier::gpu {
namespace {

using testing::Bytes;
using testing::HostCache;
using testing::NaivePack;
using testing::PagedCase;
using testing::RandomBytes;
using testing::RandomCase;

constexpr std::byte kPoison{0xff};
using testing::kDTypes;

TEST(PagedKvTwin, PackMatchesNaiveReference) {
  std::mt19937_64 rng(1);
  for (DType dtype : kDTypes) {
    for (int i = 0; i < 40; ++i) {
      const PagedCase c = RandomCase(rng, dtype);
      SCOPED_TRACE(c.Describe());
      HostCache cache(c.shape, std::byte{0});
      cache.Randomize(rng);
      Bytes chunk(c.shape.ChunkBytes(c.num_tokens), kPoison);
      ASSERT_TRUE(PackPagedKvCpu(cache.View(), c.Slice(), chunk).ok());
      ASSERT_EQ(chunk, NaivePack(cache, c));
    }
  }
}

TEST(PagedKvTwin, UnpackWritesExactlyTheSlotsAndPacksBack) {
  std::mt19937_64 rng(2);
  for (DType dtype : kDTypes) {
    for (int i = 0; i < 40; ++i) {
      const PagedCase c = RandomCase(rng, dtype);
      SCOPED_TRACE(c.Describe());
      const Bytes chunk = RandomBytes(rng, c.shape.ChunkBytes(c.num_tokens));
      HostCache cache(c.shape, kPoison);
      ASSERT_TRUE(UnpackPagedKvCpu(cache.View(), c.Slice(), chunk).ok());

      Bytes back(chunk.size(), kPoison);
      ASSERT_TRUE(PackPagedKvCpu(cache.View(), c.Slice(), back).ok());
      ASSERT_EQ(back, chunk);
      // Nothing but the sequence's slots was written: re-poisoning them restores an all-poison cache.
      HostCache poisoned(c.shape, kPoison);
      const Bytes poison_chunk(chunk.size(), kPoison);
      ASSERT_TRUE(UnpackPagedKvCpu(cache.View(), c.Slice(), poison_chunk).ok());
      ASSERT_TRUE(cache == poisoned);
    }
  }
}

TEST(PagedKvTwin, PackThenUnpackIntoACopyRestoresTheSlots) {
  std::mt19937_64 rng(3);
  for (DType dtype : kDTypes) {
    for (int i = 0; i < 20; ++i) {
      const PagedCase c = RandomCase(rng, dtype);
      SCOPED_TRACE(c.Describe());
      HostCache source(c.shape, std::byte{0});
      source.Randomize(rng);
      Bytes chunk(c.shape.ChunkBytes(c.num_tokens));
      ASSERT_TRUE(PackPagedKvCpu(source.View(), c.Slice(), chunk).ok());
      HostCache target(source);
      // Scramble the target's slots, then unpack: the cache is the source again, byte for byte.
      const Bytes noise = RandomBytes(rng, chunk.size());
      ASSERT_TRUE(UnpackPagedKvCpu(target.View(), c.Slice(), noise).ok());
      ASSERT_TRUE(UnpackPagedKvCpu(target.View(), c.Slice(), chunk).ok());
      ASSERT_TRUE(target == source);
    }
  }
}

TEST(PagedKvTwin, FusedRerotationEqualsRerotateThenUnpack) {
  std::mt19937_64 rng(4);
  for (DType dtype : kDTypes) {
    for (RopeStyle style : {RopeStyle::kNeox, RopeStyle::kGptj}) {
      for (int i = 0; i < 12; ++i) {
        const PagedCase c = RandomCase(rng, dtype, /*even_head_dim=*/true);
        SCOPED_TRACE(c.Describe());
        UnpackOptions options;
        options.rope = RopeParams{style, 2 * testing::Uniform(rng, 1, c.shape.head_dim / 2), 10000.0 + i};
        options.rerotate_delta = static_cast<int64_t>(testing::Uniform(rng, 0, 5000)) - 2500;
        if (options.rerotate_delta == 0) options.rerotate_delta = 7;
        const Bytes chunk = testing::RandomValues(rng, dtype, c.shape.ChunkBytes(c.num_tokens));

        HostCache fused(c.shape, kPoison);
        ASSERT_TRUE(UnpackPagedKvCpu(fused.View(), c.Slice(), chunk, options).ok());

        Bytes rotated = chunk;
        const ChunkShape shape{c.shape.num_layers, c.num_tokens, c.shape.num_kv_heads, c.shape.head_dim, dtype};
        ASSERT_TRUE(RerotateChunkKeysCpu(shape, options.rope, options.rerotate_delta, rotated).ok());
        HostCache twostep(c.shape, kPoison);
        ASSERT_TRUE(UnpackPagedKvCpu(twostep.View(), c.Slice(), rotated).ok());
        ASSERT_TRUE(fused == twostep);
        ASSERT_NE(rotated, chunk);  // the rotation did something
      }
    }
  }
}

// --- argument checks -----------------------------------------------------------------------------------------

class PagedKvChecks : public ::testing::Test {
 protected:
  PagedKvChecks() : c_(MakeCase()), cache_(c_.shape, std::byte{0}), chunk_(c_.shape.ChunkBytes(c_.num_tokens)) {}

  static PagedCase MakeCase() {
    PagedCase c;
    c.shape = PagedKvShape{2, 6, 4, 2, 8, DType::kFp16};
    c.table = {5, 0, 3};
    c.first_token = 2;
    c.num_tokens = 9;  // positions 2..10: blocks 0..2
    return c;
  }

  void ExpectInvalid(const Status& status, const std::string& fragment) {
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.ToString();
    EXPECT_NE(status.message().find(fragment), std::string::npos) << status.message();
  }
  Status Pack(const PagedCase& c) { return PackPagedKvCpu(cache_.View(), c.Slice(), chunk_); }
  Status Unpack(const PagedCase& c, const UnpackOptions& options = {}) {
    return UnpackPagedKvCpu(cache_.View(), c.Slice(), chunk_, options);
  }

  PagedCase c_;
  HostCache cache_;
  Bytes chunk_;
};

TEST_F(PagedKvChecks, GoodCallsPass) {
  EXPECT_TRUE(Pack(c_).ok());
  EXPECT_TRUE(Unpack(c_).ok());
}

TEST_F(PagedKvChecks, Shape) {
  PagedKvCache view = cache_.View();
  view.shape.block_size = 0;
  ExpectInvalid(PackPagedKvCpu(view, c_.Slice(), chunk_), "block_size is 0");
  view = cache_.View();
  view.shape.dtype = DType::kUnspecified;
  ExpectInvalid(PackPagedKvCpu(view, c_.Slice(), chunk_), "dtype");
  view = cache_.View();
  view.shape.head_dim = 0;
  ExpectInvalid(PackPagedKvCpu(view, c_.Slice(), chunk_), "head_dim is 0");
}

TEST_F(PagedKvChecks, LayerPointers) {
  std::vector<void*> one = {cache_.k_ptrs[0]};
  PagedKvCache view{c_.shape, one, cache_.v_ptrs};
  ExpectInvalid(PackPagedKvCpu(view, c_.Slice(), chunk_), "k_layers has 1 layer pointers, the shape says 2");
  std::vector<void*> with_null = {cache_.v_ptrs[0], nullptr};
  view = PagedKvCache{c_.shape, cache_.k_ptrs, with_null};
  ExpectInvalid(PackPagedKvCpu(view, c_.Slice(), chunk_), "v_layers[1] is null");
  std::vector<void*> odd = {static_cast<std::byte*>(cache_.k_ptrs[0]) + 1, cache_.k_ptrs[1]};
  view = PagedKvCache{c_.shape, odd, cache_.v_ptrs};
  ExpectInvalid(PackPagedKvCpu(view, c_.Slice(), chunk_), "k_layers[0] is not aligned to the 2-byte element");
}

TEST_F(PagedKvChecks, TokenRangeAndTable) {
  PagedCase c = c_;
  c.num_tokens = 0;
  ExpectInvalid(Pack(c), "num_tokens is 0");
  c = c_;
  c.num_tokens = 11;  // reaches position 12: needs 4 entries
  chunk_.resize(c.shape.ChunkBytes(c.num_tokens));
  ExpectInvalid(Pack(c), "block table of 3 entries does not cover position 12 (needs 4 entries of 4 tokens)");
  chunk_.resize(c_.shape.ChunkBytes(c_.num_tokens));
  c = c_;
  c.table[2] = 6;
  ExpectInvalid(Pack(c), "block_table[2] = 6 is outside the cache's 6 blocks");
  c.table[2] = -1;
  ExpectInvalid(Pack(c), "block_table[2] = -1 is outside");
  SequenceSlice no_table = c_.Slice();
  no_table.block_table = nullptr;
  ExpectInvalid(PackPagedKvCpu(cache_.View(), no_table, chunk_), "block_table is null");
  // Two bytes into an int32 array: a GPU could not read it (never dereferenced here either).
  std::vector<int32_t> shifted(c_.table.size() + 1);
  SequenceSlice misaligned = c_.Slice();
  misaligned.block_table = reinterpret_cast<const int32_t*>(reinterpret_cast<const std::byte*>(shifted.data()) + 2);
  ExpectInvalid(PackPagedKvCpu(cache_.View(), misaligned, chunk_), "block_table is not 4-byte aligned");
  ExpectInvalid(UnpackPagedKvCpu(cache_.View(), misaligned, chunk_), "block_table is not 4-byte aligned");
}

TEST_F(PagedKvChecks, EntriesBeforeAndAfterTheRangeAreNotRead) {
  PagedCase c = c_;
  c.first_token = 4;  // positions 4..12: blocks 1..3
  c.table = {-7, 0, 3, 1, 99};
  EXPECT_TRUE(Pack(c).ok());
  EXPECT_TRUE(Unpack(c).ok());
}

TEST_F(PagedKvChecks, UnpackRejectsABlockUsedTwice) {
  PagedCase c = c_;
  c.table = {5, 0, 5};
  EXPECT_TRUE(Pack(c).ok());  // reading one block twice is harmless
  ExpectInvalid(Unpack(c), "block id 5 appears at block_table[0] and block_table[2]");
}

TEST_F(PagedKvChecks, ChunkSize) {
  chunk_.pop_back();
  ExpectInvalid(Pack(c_), "chunk of 1151 bytes is not 2 layers x 2 x 9 tokens x 32 bytes = 1152");
}

TEST_F(PagedKvChecks, RerotationOptions) {
  UnpackOptions options;
  options.rerotate_delta = 3;
  ExpectInvalid(Unpack(c_, options), "rope style must be NeoX or GPT-J");
  options.rope = RopeParams{RopeStyle::kNeox, 3, 10000.0};
  ExpectInvalid(Unpack(c_, options), "rotary_dim 3 must be even");
  options.rope.rotary_dim = 10;
  ExpectInvalid(Unpack(c_, options), "rotary_dim 10 exceeds head_dim 8");
  options.rope.rotary_dim = 8;
  options.rope.theta = 0;
  ExpectInvalid(Unpack(c_, options), "theta");
  options.rope.theta = 500000.0;
  EXPECT_TRUE(Unpack(c_, options).ok());
  options.rerotate_delta = 0;
  options.rope = RopeParams{};
  EXPECT_TRUE(Unpack(c_, options).ok());  // no rotation: the RoPE fields are not consulted
}

// The device entry points check their arguments the same way before they look for a GPU; with good
// arguments and no GPU they answer UNAVAILABLE.
TEST_F(PagedKvChecks, DeviceEntryPointsCheckFirstThenNeedAGpu) {
  PagedCase c = c_;
  c.num_tokens = 0;
  ExpectInvalid(PackPagedKv(cache_.View(), c.Slice(), chunk_), "num_tokens is 0");
  chunk_.pop_back();
  ExpectInvalid(UnpackPagedKv(cache_.View(), c_.Slice(), chunk_), "chunk of 1151 bytes");
  chunk_.push_back(std::byte{0});
  UnpackOptions options;
  options.rerotate_delta = 1;
  options.rope = RopeParams{RopeStyle::kGptj, 8, 10000.0};
  PagedKvCache wide = cache_.View();
  wide.shape.head_dim = 512;  // the twin accepts rotary_dim 258, the kernels stop at 256
  options.rope.rotary_dim = 258;
  Bytes wide_chunk(wide.shape.ChunkBytes(c_.num_tokens));
  ExpectInvalid(UnpackPagedKv(wide, c_.Slice(), wide_chunk, options), "exceeds the device kernels' limit of 256");
  if (GpuAvailable()) GTEST_SKIP() << "a GPU is present: the UNAVAILABLE half of this test needs none";
  EXPECT_EQ(PackPagedKv(cache_.View(), c_.Slice(), chunk_).code(), StatusCode::kUnavailable);
  EXPECT_EQ(UnpackPagedKv(cache_.View(), c_.Slice(), chunk_).code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace kvtier::gpu
