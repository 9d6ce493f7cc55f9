// The CPU twin of cachegen decoding against the codec's real decoder (runs everywhere, CI included): the
// same bytes for every level, anchor-delta setting, table placement, tokens per stream, shape and dtype; the
// same refusal (code and message) for damaged containers, whether the host parse or the decode finds the
// damage; the plan's records and device image; every argument check; and the no-GPU answer of the device
// entry point.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>
#include <random>
#include <set>

#include "cachegen_cases.h"
#include "container.h"
#include "gpu_test_common.h"
#include "kvtier/gpu/device.h"

namespace kvtier::gpu {
namespace {

using testing::CachegenCase;
using testing::DataBytes;
using testing::Pick;

using testing::ExpectError;
using testing::kDTypes;
constexpr size_t kHeaderBytes = 64;
constexpr size_t kEntryBytes = 16;

struct Answer {
  Status status;
  DataBytes bytes;
};

// Outputs of a shape larger than this are not allocated (a damaged header can claim any shape).
constexpr uint64_t kMaxTestOutput = uint64_t{64} << 20;

uint64_t OutputSize(const DataBytes& encoded) {
  Result<codec::ContainerInfo> info = codec::Inspect(encoded);
  return info.ok() ? info->shape.RawBytes() : 0;
}

Answer CodecAnswer(const DataBytes& encoded, const codec::ProfileResolver& profiles) {
  Answer a{Status::Ok(), DataBytes(OutputSize(encoded))};
  codec::DecodeOptions options;
  options.profiles = profiles;
  a.status = codec::Decode(encoded, a.bytes, options);
  return a;
}

// The host parse, then the twin into a poisoned output in the chunk's dtype.
Answer TwinAnswer(const DataBytes& encoded, const codec::ProfileResolver& profiles) {
  Result<CachegenPlan> plan = ParseCachegenContainer(encoded, profiles);
  if (!plan.ok()) return {plan.status(), {}};
  Answer a{Status::Ok(), DataBytes(CachegenOutputBytes(*plan, plan->shape.dtype), std::byte{0xff})};
  a.status = DecodeCachegenCpu(*plan, plan->shape.dtype, a.bytes);
  return a;
}

// Both refuse with the same code and message, or both decode to the same bytes. Returns the status.
Status ExpectSameAnswer(const DataBytes& encoded, const codec::ProfileResolver& profiles) {
  if (OutputSize(encoded) > kMaxTestOutput) return Status::Ok();
  const Answer want = CodecAnswer(encoded, profiles);
  const Answer got = TwinAnswer(encoded, profiles);
  EXPECT_EQ(got.status.code(), want.status.code())
      << "twin: " << got.status.ToString() << "\ncodec: " << want.status.ToString();
  EXPECT_EQ(got.status.message(), want.status.message());
  if (want.status.ok() && got.status.ok()) {
    EXPECT_EQ(got.bytes, want.bytes);
  }
  return want.status;
}

// ---- bit-exactness ----

TEST(CachegenDecodeTwin, EqualsTheCodecDecoderBitForBit) {
  std::mt19937_64 rng(101);
  for (DType dtype : kDTypes) {
    for (int level = 1; level <= 3; ++level) {
      for (bool anchor : {false, true}) {
        for (bool profile : {false, true}) {
          for (int rep = 0; rep < 2; ++rep) {
            const CachegenCase c = testing::MakeCachegenCase(rng, dtype, level, anchor, profile);
            SCOPED_TRACE(c.Describe());
            ASSERT_FALSE(c.encoded.empty());
            const Answer want = CodecAnswer(c.encoded, c.Resolver());
            ASSERT_TRUE(want.status.ok()) << want.status.ToString();
            Result<CachegenPlan> plan = ParseCachegenContainer(c.encoded, c.Resolver());
            ASSERT_TRUE(plan.ok()) << plan.status().ToString();
            EXPECT_EQ(plan->shape.Bytes(), c.shape.Bytes());
            EXPECT_EQ(plan->level, level);
            EXPECT_EQ(plan->anchor_delta, anchor);
            EXPECT_EQ(plan->tokens_per_stream, c.tokens_per_stream);
            EXPECT_EQ(plan->profile_id, profile ? c.profile->id() : 0);
            DataBytes got(c.shape.Bytes(), std::byte{0xff});
            ASSERT_TRUE(DecodeCachegenCpu(*plan, dtype, got).ok());
            ASSERT_EQ(got, want.bytes);
            // fp32 output: the values before the codec's final rounding; rounding them gives its bytes.
            DataBytes wide(CachegenOutputBytes(*plan, DType::kFp32), std::byte{0xff});
            ASSERT_TRUE(DecodeCachegenCpu(*plan, DType::kFp32, wide).ok());
            std::vector<float> values(wide.size() / 4);
            std::memcpy(values.data(), wide.data(), wide.size());
            DataBytes rounded(c.shape.Bytes());
            codec::FloatToElements(values, dtype, rounded);
            ASSERT_EQ(rounded, want.bytes);
          }
        }
      }
    }
  }
}

// Chunks of one shared profile parsed with a CachegenTableCache share one set of tables per level and
// anchor-delta setting, equal to what each chunk's own parse flattens; their decodes do not change.
TEST(CachegenDecodeTwin, ATableCacheSharesAProfilesTablesAcrossChunks) {
  std::mt19937_64 rng(117);
  const CachegenCase first = testing::MakeCachegenCase(rng, DType::kFp16, 2, true, true);
  ASSERT_FALSE(first.encoded.empty());
  ASSERT_NE(first.profile, nullptr);
  CachegenTableCache cache(2);
  // Another chunk of the same shape and profile at `level` and `anchor`.
  auto encode = [&](int level, bool anchor) {
    CachegenCase other = first;
    other.level = level;
    other.anchor_delta = anchor;
    testing::EncodeCachegenCase(rng, other);
    EXPECT_FALSE(other.encoded.empty());
    return other.encoded;
  };
  auto expect_like_own_parse = [&](const DataBytes& encoded, const CachegenPlan& cached) {
    Result<CachegenPlan> own = ParseCachegenContainer(encoded, first.Resolver());
    ASSERT_TRUE(own.ok()) << own.status().ToString();
    EXPECT_EQ(own->profile_tables, nullptr) << "no cache, no sharing";
    ASSERT_TRUE(cached.tables.empty());
    ASSERT_EQ(cached.Tables().size(), own->tables.size());
    EXPECT_EQ(std::memcmp(cached.Tables().data(), own->tables.data(), own->tables.size() * sizeof(CachegenTable)), 0);
    EXPECT_EQ(CachegenImage(cached), CachegenImage(*own));
    DataBytes a(first.shape.Bytes(), std::byte{0xff});
    DataBytes b(first.shape.Bytes(), std::byte{0x00});
    ASSERT_TRUE(DecodeCachegenCpu(cached, first.shape.dtype, a).ok());
    ASSERT_TRUE(DecodeCachegenCpu(*own, first.shape.dtype, b).ok());
    EXPECT_EQ(a, b);
  };
  Result<CachegenPlan> one = ParseCachegenContainer(first.encoded, first.Resolver(), &cache);
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  ASSERT_NE(one->profile_tables, nullptr);
  expect_like_own_parse(first.encoded, *one);
  const DataBytes second_encoded = encode(2, true);
  Result<CachegenPlan> two = ParseCachegenContainer(second_encoded, first.Resolver(), &cache);
  ASSERT_TRUE(two.ok()) << two.status().ToString();
  EXPECT_EQ(two->profile_tables, one->profile_tables) << "same profile, level and setting: one set";
  expect_like_own_parse(second_encoded, *two);
  EXPECT_EQ(cache.size(), 1u);
  // Another level and another setting are other sets; the cache keeps the two used last.
  const DataBytes level3 = encode(3, true);
  Result<CachegenPlan> three = ParseCachegenContainer(level3, first.Resolver(), &cache);
  ASSERT_TRUE(three.ok()) << three.status().ToString();
  EXPECT_NE(three->profile_tables, one->profile_tables);
  expect_like_own_parse(level3, *three);
  const DataBytes plain = encode(2, false);
  Result<CachegenPlan> four = ParseCachegenContainer(plain, first.Resolver(), &cache);
  ASSERT_TRUE(four.ok()) << four.status().ToString();
  expect_like_own_parse(plain, *four);
  EXPECT_EQ(cache.size(), 2u);
  Result<CachegenPlan> again = ParseCachegenContainer(first.encoded, first.Resolver(), &cache);
  ASSERT_TRUE(again.ok());
  EXPECT_NE(again->profile_tables, one->profile_tables) << "evicted, built again";
  EXPECT_EQ(std::memcmp(again->Tables().data(), one->Tables().data(), one->Tables().size_bytes()), 0);
  // Inline tables are the chunk's own, cache or not.
  const CachegenCase inline_case = testing::MakeCachegenCase(rng, DType::kFp16, 2, true, false);
  Result<CachegenPlan> own_tables = ParseCachegenContainer(inline_case.encoded, {}, &cache);
  ASSERT_TRUE(own_tables.ok());
  EXPECT_EQ(own_tables->profile_tables, nullptr);
  EXPECT_FALSE(own_tables->tables.empty());
}

TEST(CachegenDecodeTwin, PlanRecordsAndDeviceImage) {
  std::mt19937_64 rng(102);
  for (bool profile : {false, true}) {
    const CachegenCase c = testing::MakeCachegenCase(rng, DType::kBf16, 2, true, profile);
    SCOPED_TRACE(c.Describe());
    Result<CachegenPlan> plan = ParseCachegenContainer(c.encoded, c.Resolver());
    ASSERT_TRUE(plan.ok()) << plan.status().ToString();
    const uint64_t slices = 2 * uint64_t{c.shape.num_layers};
    const uint64_t width = uint64_t{c.shape.num_kv_heads} * c.shape.head_dim;
    const uint32_t sub_chunks = (c.shape.num_tokens + c.tokens_per_stream - 1) / c.tokens_per_stream;
    ASSERT_EQ(plan->streams.size(), slices * sub_chunks);
    EXPECT_EQ(plan->tables.size(), slices * 2 * width);
    // The data streams are the container's tail, back to back, in container order after the table streams.
    EXPECT_EQ(plan->body.data() + plan->body.size(), c.encoded.data() + c.encoded.size());
    uint64_t offset = 0;
    for (size_t i = 0; i < plan->streams.size(); ++i) {
      const CachegenStream& s = plan->streams[i];
      EXPECT_EQ(s.index, (profile ? 0 : slices) + i);
      EXPECT_EQ(s.offset, offset);
      EXPECT_EQ(s.slice, i / sub_chunks);
      EXPECT_EQ(s.first_token, (i % sub_chunks) * c.tokens_per_stream);
      EXPECT_EQ(s.delta_tables, s.plain_tables + width);
      offset += s.length;
    }
    EXPECT_EQ(offset, plan->body.size());
    const std::vector<std::byte> image = CachegenImage(*plan);
    ASSERT_EQ(image.size(), CachegenImageBytes(*plan));
    EXPECT_EQ(CachegenTablesOffset(*plan) % 16, 0u);
    EXPECT_EQ(std::memcmp(image.data(), plan->streams.data(), plan->streams.size() * sizeof(CachegenStream)), 0);
    EXPECT_EQ(std::memcmp(image.data() + CachegenTablesOffset(*plan), plan->tables.data(),
                          plan->tables.size() * sizeof(CachegenTable)),
              0);
    EXPECT_EQ(CachegenErrorBytes(*plan), 4 * plan->streams.size());
    EXPECT_EQ(CachegenWorkspaceBytes(*plan),
              (4 * plan->streams.size() + 15) / 16 * 16 + plan->streams.size() * width * 4);
  }
}

// ---- damaged containers ----

// Grows (delta > 0, with `fill` bytes) or shrinks data stream `index` at its end, keeping the container
// consistent (stream table, body size, checksums), so that only the stream's own contents are wrong.
void ResizeStream(DataBytes& c, uint32_t index, int64_t delta, std::byte fill = std::byte{0}) {
  uint32_t streams;
  std::memcpy(&streams, c.data() + 28, 4);
  uint64_t end = kHeaderBytes + kEntryBytes * streams, length = 0;
  for (uint32_t i = 0; i <= index; ++i) {
    std::memcpy(&length, c.data() + kHeaderBytes + kEntryBytes * i, 8);
    end += length;
  }
  if (delta > 0) {
    c.insert(c.begin() + static_cast<ptrdiff_t>(end), static_cast<size_t>(delta), fill);
  } else {
    c.erase(c.begin() + static_cast<ptrdiff_t>(end + delta), c.begin() + static_cast<ptrdiff_t>(end));
  }
  length += delta;
  std::memcpy(c.data() + kHeaderBytes + kEntryBytes * index, &length, 8);
  uint64_t body;
  std::memcpy(&body, c.data() + 48, 8);
  body += delta;
  std::memcpy(c.data() + 48, &body, 8);
  codec::internal::RecomputeChecksums(c);
}

// Byte offset of data stream `index` in the container.
size_t StreamAt(const DataBytes& c, uint32_t index) {
  uint32_t streams;
  std::memcpy(&streams, c.data() + 28, 4);
  size_t at = kHeaderBytes + kEntryBytes * streams;
  for (uint32_t i = 0; i < index; ++i) {
    uint64_t length;
    std::memcpy(&length, c.data() + kHeaderBytes + kEntryBytes * i, 8);
    at += length;
  }
  return at;
}

TEST(CachegenDecodeTwin, ParseRefusesWhereTheDecoderRefuses) {
  std::mt19937_64 rng(103);
  for (bool profile : {false, true}) {
    CachegenCase c = testing::MakeCachegenCase(rng, DType::kFp16, 3, true, profile);
    SCOPED_TRACE(c.Describe());
    const DataBytes& good = c.encoded;
    EXPECT_TRUE(ExpectSameAnswer(good, c.Resolver()).ok());
    uint32_t streams;
    std::memcpy(&streams, good.data() + 28, 4);
    for (size_t size : {size_t{0}, size_t{10}, size_t{63}, size_t{64}, kHeaderBytes + kEntryBytes * streams / 2,
                        good.size() - 1}) {
      EXPECT_FALSE(ExpectSameAnswer(DataBytes(good.begin(), good.begin() + size), c.Resolver()).ok());
    }
    DataBytes trailing = good;
    trailing.push_back(std::byte{0});
    EXPECT_FALSE(ExpectSameAnswer(trailing, c.Resolver()).ok());
    for (int i = 0; i < 40; ++i) {  // a flipped bit anywhere: header, table or stream checksum
      DataBytes bad = good;
      bad[rng() % bad.size()] ^= std::byte(1u << (rng() % 8));
      EXPECT_FALSE(ExpectSameAnswer(bad, c.Resolver()).ok());
    }
    for (int i = 0; i < 80; ++i) {  // resealed: the codec's own checks of header fields, tables and streams
      DataBytes bad = good;
      const size_t at = i < 20 ? rng() % kHeaderBytes : rng() % bad.size();
      bad[at] ^= std::byte(1u << (rng() % 8));
      SCOPED_TRACE("resealed flip at " + std::to_string(at) + " of " + std::to_string(bad.size()));
      codec::internal::RecomputeChecksums(bad);
      static_cast<void>(ExpectSameAnswer(bad, c.Resolver()));
    }
    auto resealed = [&](size_t at, uint32_t value, size_t bytes) {
      DataBytes bad = good;
      std::memcpy(bad.data() + at, &value, bytes);
      codec::internal::RecomputeChecksums(bad);
      return bad;
    };
    for (uint32_t tps : {0u, 257u, c.tokens_per_stream + 1}) {
      EXPECT_EQ(ExpectSameAnswer(resealed(32, tps, 4), c.Resolver()).code(), StatusCode::kInvalidArgument);
    }
    for (uint32_t level : {0u, 4u}) {
      EXPECT_EQ(ExpectSameAnswer(resealed(10, level, 1), c.Resolver()).code(), StatusCode::kInvalidArgument);
    }
    for (uint32_t flags : {0u, 1u, 2u, 3u}) static_cast<void>(ExpectSameAnswer(resealed(11, flags, 1), c.Resolver()));
    EXPECT_FALSE(ExpectSameAnswer(resealed(40, 12345, 4), c.Resolver()).ok());  // another profile id
  }
}

TEST(CachegenDecodeTwin, ProfileResolutionFailsAsInTheDecoder) {
  std::mt19937_64 rng(104);
  const CachegenCase c = testing::MakeCachegenCase(rng, DType::kFp32, 1, false, true);
  ASSERT_NE(c.profile, nullptr);
  EXPECT_EQ(ExpectSameAnswer(c.encoded, {}).code(), StatusCode::kNotFound);
  EXPECT_EQ(ExpectSameAnswer(c.encoded, [](uint64_t) { return nullptr; }).code(), StatusCode::kNotFound);
  // A profile of another shape under the chunk's id.
  ChunkShape other = c.shape;
  other.head_dim = c.shape.head_dim == 1 ? 2 : 1;
  const std::shared_ptr<const codec::ModelProfile> wrong = testing::CachegenProfile(rng, other);
  ASSERT_NE(wrong, nullptr);
  const Status s = ExpectSameAnswer(c.encoded, [&](uint64_t) { return wrong.get(); });
  ExpectError(s, StatusCode::kInvalidArgument, "layers/kv_heads/head_dim");
}

TEST(CachegenDecodeTwin, StreamDamageFoundByTheParseOrByDecoding) {
  std::mt19937_64 rng(105);
  CachegenCase c = testing::MakeCachegenCase(rng, DType::kBf16, 2, false, false);
  // A chunk with several sub-chunks and streams long enough to damage.
  while (c.shape.num_tokens < 20 || c.tokens_per_stream >= c.shape.num_tokens) {
    c = testing::MakeCachegenCase(rng, DType::kBf16, 2, false, false);
  }
  SCOPED_TRACE(c.Describe());
  const uint32_t slices = 2 * c.shape.num_layers;
  const uint32_t index = slices + 1;  // data stream 1: slice 0, second sub-chunk
  const uint32_t rows = std::min(c.tokens_per_stream, c.shape.num_tokens - c.tokens_per_stream);
  const size_t at = StreamAt(c.encoded, index);
  const std::string name = "cachegen stream " + std::to_string(index) + ": ";
  auto expect = [&](const DataBytes& bad, const std::string& what) {
    ExpectError(ExpectSameAnswer(bad, c.Resolver()), StatusCode::kInvalidArgument, name + what);
  };
  {  // the last word gone: the coder reads past the end (found only by decoding)
    DataBytes bad = c.encoded;
    ResizeStream(bad, index, -2);
    ASSERT_TRUE(ParseCachegenContainer(bad).ok());
    expect(bad, "entropy-coded data is truncated or corrupt");
  }
  {  // a word too many: the coder ends before the stream does (found only by decoding)
    DataBytes bad = c.encoded;
    ResizeStream(bad, index, 2);
    ASSERT_TRUE(ParseCachegenContainer(bad).ok());
    expect(bad, "entropy-coded data does not end where the stream ends");
  }
  {  // an odd byte count
    DataBytes bad = c.encoded;
    ResizeStream(bad, index, -1);
    expect(bad, "malformed coder states");
  }
  {  // too short for its scales and states
    DataBytes bad = c.encoded;
    uint64_t length;
    std::memcpy(&length, bad.data() + kHeaderBytes + kEntryBytes * index, 8);
    ResizeStream(bad, index, static_cast<int64_t>(2 * rows + 15) - static_cast<int64_t>(length));
    expect(bad, "shorter than its scales and coder states");
  }
  for (uint16_t scale : {uint16_t{0xbf80}, uint16_t{0x7fc0}, uint16_t{0x7f80}, uint16_t{0xff80}}) {  // -1, NaN, +-inf
    DataBytes bad = c.encoded;
    std::memcpy(bad.data() + at + 2 * (rows - 1), &scale, 2);
    codec::internal::RecomputeChecksums(bad);
    expect(bad, "row scale is negative, NaN or infinite");
  }
  {  // -0 is a scale the decoder accepts (>= 0)
    DataBytes odd = c.encoded;
    const uint16_t minus_zero = 0x8000;
    std::memcpy(odd.data() + at, &minus_zero, 2);
    codec::internal::RecomputeChecksums(odd);
    EXPECT_TRUE(ExpectSameAnswer(odd, c.Resolver()).ok());
  }
  {  // a state below 2^16
    DataBytes bad = c.encoded;
    const uint32_t low = 0xffff;
    std::memcpy(bad.data() + at + 2 * rows + 4 * 2, &low, 4);
    codec::internal::RecomputeChecksums(bad);
    expect(bad, "malformed coder states");
  }
  // Flipped bits in the states and words of every data stream: whatever the decoder says, the twin says.
  std::set<std::string> messages;
  const uint32_t sub_chunks = (c.shape.num_tokens + c.tokens_per_stream - 1) / c.tokens_per_stream;
  for (int i = 0; i < 150; ++i) {
    DataBytes bad = c.encoded;
    // The first sub-chunk of a random slice: tokens_per_stream rows.
    const uint32_t stream = slices + static_cast<uint32_t>(rng() % slices) * sub_chunks;
    uint64_t length;
    std::memcpy(&length, bad.data() + kHeaderBytes + kEntryBytes * stream, 8);
    const uint64_t words_at = 2 * uint64_t{c.tokens_per_stream};
    bad[StreamAt(bad, stream) + words_at + rng() % (length - words_at)] ^= std::byte(1u << (rng() % 8));
    codec::internal::RecomputeChecksums(bad);
    const Status s = ExpectSameAnswer(bad, c.Resolver());
    if (!s.ok()) messages.insert(s.message().substr(s.message().find(':') + 2));
  }
  // Some of that damage only decoding finds.
  EXPECT_EQ(messages.count("entropy-coded data is truncated or corrupt") +
                messages.count("entropy-coded data does not end where the stream ends"),
            2u);
}

TEST(CachegenDecodeTwin, AnotherCodecIsRefused) {
  std::mt19937_64 rng(106);
  const ChunkShape s{2, 5, 2, 8, DType::kFp16};
  const DataBytes int8 = testing::EncodeInt8(s, testing::RandomChunk(rng, s));
  ExpectError(ParseCachegenContainer(int8).status(), StatusCode::kInvalidArgument,
              "container holds codec int8, not cachegen");
}

// A device decode's chunk with its buffers in host memory, as DecodeCachegenCpu(chunks) reads them.
struct HostDeviceChunk {
  CachegenPlan plan;
  std::vector<std::max_align_t> image, tables, workspace;  // 16-byte aligned storage
  DataBytes out;
  CachegenDeviceChunk chunk;

  static std::span<std::byte> Aligned(std::vector<std::max_align_t>& storage, size_t bytes) {
    storage.resize((bytes + sizeof(std::max_align_t) - 1) / sizeof(std::max_align_t));
    return {reinterpret_cast<std::byte*>(storage.data()), bytes};
  }
  // `apart`: the tables kept apart from the records, as a shared profile's resident copy is.
  HostDeviceChunk(CachegenPlan p, DType dtype, bool apart) : plan(std::move(p)) {
    const std::vector<std::byte> full = CachegenImage(plan);
    const size_t records = apart ? CachegenTablesOffset(plan) : full.size();
    std::span<std::byte> image_bytes = Aligned(image, records);
    std::memcpy(image_bytes.data(), full.data(), records);
    std::span<std::byte> table_bytes;
    if (apart) {
      table_bytes = Aligned(tables, full.size() - records);
      std::memcpy(table_bytes.data(), full.data() + records, table_bytes.size());
    }
    out.assign(CachegenOutputBytes(plan, dtype), std::byte{0xff});
    chunk = {&plan, plan.body, image_bytes, Aligned(workspace, CachegenWorkspaceBytes(plan)), out, dtype, table_bytes};
  }
  Status Codes() const { return CachegenDeviceStatus(plan, chunk.workspace.first(CachegenErrorBytes(plan))); }
};

// The batch twin reads what the kernel reads and leaves what it leaves: every chunk decoded, the codes in the
// workspaces giving the plan twin's answer, a refused chunk not stopping the others.
TEST(CachegenDecodeTwin, TheBatchTwinLeavesTheKernelsCodesInTheWorkspaces) {
  std::mt19937_64 rng(109);
  CachegenCase refused = testing::MakeCachegenCase(rng, DType::kFp16, 2, false, false);
  while (refused.shape.num_tokens < 20 || refused.tokens_per_stream >= refused.shape.num_tokens) {
    refused = testing::MakeCachegenCase(rng, DType::kFp16, 2, false, false);
  }
  ResizeStream(refused.encoded, 2 * refused.shape.num_layers + 1, -2);  // found only by decoding
  const CachegenCase inline_tables = testing::MakeCachegenCase(rng, DType::kBf16, 3, true, false);
  const CachegenCase profile = testing::MakeCachegenCase(rng, DType::kFp16, 1, true, true);
  std::vector<HostDeviceChunk> staged;
  staged.reserve(3);
  for (const CachegenCase* c : std::initializer_list<const CachegenCase*>{&inline_tables, &refused, &profile}) {
    Result<CachegenPlan> plan = ParseCachegenContainer(c->encoded, c->Resolver());
    ASSERT_TRUE(plan.ok()) << plan.status().ToString();
    staged.emplace_back(std::move(plan).value(), c->shape.dtype, /*apart=*/c == &profile);
  }
  std::vector<CachegenDeviceChunk> chunks;
  for (const HostDeviceChunk& h : staged) chunks.push_back(h.chunk);
  ASSERT_TRUE(DecodeCachegenCpu(chunks).ok());
  for (size_t k : {size_t{0}, size_t{2}}) {
    const HostDeviceChunk& h = staged[k];
    EXPECT_TRUE(h.Codes().ok()) << h.Codes().ToString();
    DataBytes want(h.out.size());
    ASSERT_TRUE(DecodeCachegenCpu(h.plan, h.chunk.out_dtype, want).ok());
    EXPECT_EQ(h.out, want) << "chunk " << k;
  }
  DataBytes scratch(staged[1].out.size());
  const Status want = DecodeCachegenCpu(staged[1].plan, DType::kFp16, scratch);
  ASSERT_FALSE(want.ok());
  EXPECT_EQ(staged[1].Codes().code(), want.code());
  EXPECT_EQ(staged[1].Codes().message(), want.message());
  chunks[1].plan = nullptr;
  ExpectError(DecodeCachegenCpu(chunks), StatusCode::kInvalidArgument, "chunk 1: plan is null");
}

// ---- argument checks ----

TEST(CachegenDecodeTwin, Checks) {
  std::mt19937_64 rng(107);
  const CachegenCase c = testing::MakeCachegenCase(rng, DType::kFp32, 2, true, false);
  Result<CachegenPlan> parsed = ParseCachegenContainer(c.encoded);
  ASSERT_TRUE(parsed.ok());
  const CachegenPlan& good = *parsed;
  const size_t bytes = CachegenOutputBytes(good, DType::kFp32);
  DataBytes out(bytes + 4);
  const std::span<std::byte> exact(out.data(), bytes);
  ASSERT_TRUE(DecodeCachegenCpu(good, DType::kFp32, exact).ok());
  ExpectError(DecodeCachegenCpu(good, DType::kUnspecified, exact), StatusCode::kInvalidArgument,
              "output dtype must be fp16, bf16 or fp32");
  ExpectError(DecodeCachegenCpu(good, DType::kFp16, exact), StatusCode::kInvalidArgument,
              "cachegen output of " + std::to_string(bytes) + " bytes is not the " + std::to_string(bytes / 2));
  ExpectError(DecodeCachegenCpu(good, DType::kFp32, std::span(out).subspan(1, bytes)), StatusCode::kInvalidArgument,
              "output is not aligned to the 4-byte element");
  ExpectError(DecodeCachegenCpu(good, DType::kFp32, std::span<std::byte>(static_cast<std::byte*>(nullptr), bytes)),
              StatusCode::kInvalidArgument, "output is null");

  auto expect_plan = [&](auto change, const std::string& fragment) {
    CachegenPlan plan = good;
    change(plan);
    ExpectError(DecodeCachegenCpu(plan, DType::kFp32, exact), StatusCode::kInvalidArgument, fragment);
  };
  expect_plan([](CachegenPlan& p) { p.shape.num_layers = 0; }, "num_layers");
  expect_plan([](CachegenPlan& p) { p.tokens_per_stream = 0; }, "cachegen plan tokens_per_stream 0 is not 1..256");
  expect_plan([](CachegenPlan& p) { p.streams.pop_back(); }, "stream records, its shape needs");
  expect_plan([](CachegenPlan& p) { p.tables.pop_back(); }, "tables, its shape needs");
  expect_plan([](CachegenPlan& p) { p.body = {}; }, "cachegen plan body is null");
  expect_plan([](CachegenPlan& p) { p.streams[1].first_token += 1; }, "cachegen plan stream record 1 does not cover");
  expect_plan([](CachegenPlan& p) { p.streams[0].slice = 1; }, "cachegen plan stream record 0 does not cover slice 0");
  expect_plan([](CachegenPlan& p) { p.streams[0].offset = p.body.size(); }, "record 0 lies outside the body");
  expect_plan([](CachegenPlan& p) { p.streams.back().length += 1; }, "lies outside the body of");
  expect_plan([](CachegenPlan& p) { p.streams[0].delta_tables = static_cast<uint32_t>(p.tables.size()); },
              "reads tables past the");
  expect_plan([](CachegenPlan& p) { p.streams[0].bins = 0; }, "has bins 0, not 1..127");
  expect_plan([](CachegenPlan& p) { p.streams[0].bins = 128; }, "has bins 128, not 1..127");

  // The device entry point checks the same and its own buffers, naming the chunk.
  std::vector<std::byte> image = CachegenImage(good);
  std::vector<std::byte> workspace(CachegenWorkspaceBytes(good) + 16);
  const CachegenDeviceChunk chunk{&good, good.body, image, workspace, exact, DType::kFp32, {}};
  auto expect_chunk = [&](auto change, const std::string& fragment) {
    CachegenDeviceChunk bad[2] = {chunk, chunk};
    change(bad[1]);
    ExpectError(DecodeCachegen(bad), StatusCode::kInvalidArgument, "chunk 1: " + fragment);
  };
  expect_chunk([](CachegenDeviceChunk& k) { k.plan = nullptr; }, "plan is null");
  expect_chunk([](CachegenDeviceChunk& k) { k.out_dtype = DType::kBf16; }, "cachegen output of");
  expect_chunk([](CachegenDeviceChunk& k) { k.body = k.body.first(k.body.size() - 1); }, "device body of");
  expect_chunk([](CachegenDeviceChunk& k) { k.image = k.image.first(k.image.size() - 1); }, "device image of");
  expect_chunk([](CachegenDeviceChunk& k) { k.workspace = k.workspace.first(k.workspace.size() - 17); },
               "workspace of");
  expect_chunk([](CachegenDeviceChunk& k) { k.workspace = k.workspace.subspan(8); },
               "device image or workspace is not 16-byte aligned");
  // Tables kept apart: the image is then the records alone.
  const uint64_t records = CachegenTablesOffset(good);
  const std::vector<std::byte> apart_bytes(image.size() - records + 16);  // operator new: 16-byte aligned
  const std::span<const std::byte> tables(apart_bytes.data(), image.size() - records);
  expect_chunk([&](CachegenDeviceChunk& k) { k.tables = tables; }, "device image of " + std::to_string(image.size()));
  expect_chunk(
      [&](CachegenDeviceChunk& k) {
        k.image = k.image.first(records);
        k.tables = tables.first(16);
      },
      "device tables of 16 bytes are not the plan's " + std::to_string(tables.size()));
  expect_chunk(
      [&](CachegenDeviceChunk& k) {
        k.image = k.image.first(records);
        k.tables = {apart_bytes.data() + 4, tables.size()};
      },
      "device tables are not 16-byte aligned");
  CachegenPlan broken = good;
  broken.streams[0].bins = 0;
  expect_chunk([&](CachegenDeviceChunk& k) { k.plan = &broken; }, "cachegen plan stream record 0 has bins 0");
  if (!GpuAvailable()) {
    EXPECT_EQ(DecodeCachegen(std::span(&chunk, 1)).code(), StatusCode::kUnavailable);
    CachegenDeviceChunk apart = chunk;
    apart.image = apart.image.first(records);
    apart.tables = tables;
    EXPECT_EQ(DecodeCachegen(std::span(&apart, 1)).code(), StatusCode::kUnavailable) << "its arguments are right";
    EXPECT_EQ(DecodeCachegen({}).code(), StatusCode::kUnavailable);
  }
}

TEST(CachegenDecodeTwin, DeviceCodesBecomeTheDecodersStatus) {
  std::mt19937_64 rng(108);
  const CachegenCase c = testing::MakeCachegenCase(rng, DType::kFp16, 1, false, false);
  Result<CachegenPlan> plan = ParseCachegenContainer(c.encoded);
  ASSERT_TRUE(plan.ok());
  std::vector<uint32_t> codes(plan->streams.size(), 0);
  auto status = [&] {
    return CachegenDeviceStatus(*plan, std::span(reinterpret_cast<const std::byte*>(codes.data()), codes.size() * 4));
  };
  EXPECT_TRUE(status().ok());
  const size_t last = codes.size() - 1;
  const std::string name = "cachegen stream " + std::to_string(plan->streams[last].index) + ": ";
  const std::pair<uint32_t, std::string> expected[] = {
      {1, "shorter than its scales and coder states"}, {2, "row scale is negative, NaN or infinite"},
      {3, "malformed coder states"}, {4, "entropy-coded data is truncated or corrupt"},
      {5, "entropy-coded data does not end where the stream ends"}, {6, "the device image's record does not fit"}};
  for (const auto& [code, what] : expected) {
    codes[last] = code;
    ExpectError(status(), StatusCode::kInvalidArgument, name + what);
  }
  codes[last] = 99;
  ExpectError(status(), StatusCode::kInternal, "unknown error code 99");
  if (codes.size() > 1) {  // the lowest stream's error wins
    codes[0] = 4;
    ExpectError(status(), StatusCode::kInvalidArgument, "cachegen stream " + std::to_string(plan->streams[0].index));
  }
  ExpectError(CachegenDeviceStatus(*plan, {}), StatusCode::kInvalidArgument, "cachegen error words of 0 bytes");
}

}  // namespace
}  // namespace kvtier::gpu
