// The container layer on its own: layout, every check ParseContainer makes, and StreamBytes.
#include <gtest/gtest.h>

#include <cstring>

#include "container.h"
#include "kvtier/api/types.h"

namespace kvtier::codec::internal {
namespace {

const KvShape kShape{2, 1, 4, 3, DType::kFp16};

std::vector<std::byte> Bytes(std::initializer_list<int> v) {
  std::vector<std::byte> out;
  for (int x : v) out.push_back(std::byte(x));
  return out;
}

std::vector<std::byte> Sample(CodecId codec = CodecId::kRaw, ContainerParams params = {}) {
  EncodedStreams s;
  s.params = params;
  s.streams = {Bytes({1, 2, 3}), Bytes({}), Bytes({4, 5, 6, 7, 8})};
  std::vector<std::byte> out;
  EXPECT_TRUE(WriteContainer(codec, kShape, s, out).ok());
  return out;
}

ContainerHeader HeaderOf(const std::vector<std::byte>& c) {
  ContainerHeader h;
  std::memcpy(&h, c.data(), sizeof(h));
  return h;
}

// Rewrites the header (and its checksum) so a test reaches the check after the checksum.
void Rewrite(std::vector<std::byte>& c, void (*edit)(ContainerHeader&)) {
  ContainerHeader h = HeaderOf(c);
  edit(h);
  std::memcpy(c.data(), &h, sizeof(h));
  std::memset(c.data() + 36, 0, 4);
  h.header_checksum = static_cast<uint32_t>(Checksum64({c.data(), 60}));
  std::memcpy(c.data() + 60, &h.header_checksum, 4);
}

void ExpectParseError(const std::vector<std::byte>& c, StatusCode code, const std::string& substring) {
  auto r = ParseContainer(c);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), code) << r.status().ToString();
  EXPECT_NE(r.status().message().find(substring), std::string::npos) << r.status().message();
}

TEST(Container, LayoutIsHeaderTableBody) {
  const auto c = Sample(CodecId::kMixed, ContainerParams{0, 0, 0x1234, 0});
  ASSERT_EQ(c.size(), 64u + 3 * 16 + 8);
  const ContainerHeader h = HeaderOf(c);
  EXPECT_EQ(std::memcmp(c.data(), "KVTC", 4), 0);
  EXPECT_EQ(h.version, 1);
  EXPECT_EQ(h.header_bytes, 64);
  EXPECT_EQ(h.codec, uint8_t(CodecId::kMixed));
  EXPECT_EQ(h.dtype, uint8_t(DType::kFp16));
  EXPECT_EQ(h.num_layers, 2u);
  EXPECT_EQ(h.num_kv_heads, 1u);
  EXPECT_EQ(h.head_dim, 4u);
  EXPECT_EQ(h.num_tokens, 3u);
  EXPECT_EQ(h.num_streams, 3u);
  EXPECT_EQ(h.codec_param, 0x1234u);
  EXPECT_EQ(h.body_bytes, 8u);
  EXPECT_EQ(h.header_checksum, uint32_t(Checksum64({c.data(), 60})));
  EXPECT_EQ(h.table_checksum, uint32_t(Checksum64({c.data() + 64, 48})));
  StreamEntry e;
  std::memcpy(&e, c.data() + 64 + 32, 16);
  EXPECT_EQ(e.length, 5u);
  EXPECT_EQ(e.checksum, Checksum64(Bytes({4, 5, 6, 7, 8})));
  EXPECT_EQ(c[64 + 48 + 3], std::byte{4});
}

TEST(Container, ParseGivesInfoAndStreams) {
  const auto c = Sample(CodecId::kCacheGen, ContainerParams{2, kFlagAnchorDelta | kFlagInlineTables, 9, 77});
  auto r = ParseContainer(c);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->info.codec, CodecId::kCacheGen);
  EXPECT_EQ(r->info.shape, kShape);
  EXPECT_EQ(r->info.level, 2);
  EXPECT_TRUE(r->info.anchor_delta);
  EXPECT_EQ(r->info.profile_id, 77u);
  EXPECT_EQ(r->info.num_streams, 3u);
  EXPECT_EQ(r->info.encoded_bytes, c.size());
  EXPECT_EQ(r->params.codec_param, 9u);
  EXPECT_EQ(r->params.flags, kFlagAnchorDelta | kFlagInlineTables);
  EXPECT_EQ(r->table.size(), 3u);
  auto s2 = StreamBytes(*r, 2);
  ASSERT_TRUE(s2.ok());
  EXPECT_EQ(std::vector<std::byte>(s2->begin(), s2->end()), Bytes({4, 5, 6, 7, 8}));
  auto s1 = StreamBytes(*r, 1);
  ASSERT_TRUE(s1.ok());
  EXPECT_TRUE(s1->empty());
  EXPECT_EQ(StreamBytes(*r, 3).status().code(), StatusCode::kInvalidArgument);
}

TEST(Container, StreamChecksumIsCheckedLazily) {
  auto c = Sample();
  c.back() ^= std::byte{1};
  auto r = ParseContainer(c);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(StreamBytes(*r, 0).ok());
  auto bad = StreamBytes(*r, 2);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(bad.status().message().find("stream 2 checksum mismatch"), std::string::npos);
}

TEST(Container, RejectsWhatIsNotOurs) {
  ExpectParseError({}, StatusCode::kInvalidArgument, "shorter than its 64-byte header");
  auto c = Sample();
  c[0] = std::byte{'X'};
  ExpectParseError(c, StatusCode::kInvalidArgument, "bad magic");
  c = Sample();
  Rewrite(c, [](ContainerHeader& h) { h.version = 2; });
  ExpectParseError(c, StatusCode::kInvalidArgument, "version 2 is not supported");
  c = Sample();
  Rewrite(c, [](ContainerHeader& h) { h.header_bytes = 72; });
  ExpectParseError(c, StatusCode::kInvalidArgument, "header_bytes 72 must be 64");
}

TEST(Container, ReservedBytesMustBeZero) {
  auto c = Sample();
  for (int i = 36; i < 40; ++i) EXPECT_EQ(c[i], std::byte{0});
  c[37] = std::byte{1};
  ContainerHeader h = HeaderOf(c);
  h.header_checksum = static_cast<uint32_t>(Checksum64({c.data(), 60}));
  std::memcpy(c.data() + 60, &h.header_checksum, 4);
  ExpectParseError(c, StatusCode::kInvalidArgument, "reserved bytes 36..39 are not zero");
}

TEST(Container, HeaderChecksum) {
  auto c = Sample();
  c[20] ^= std::byte{0x10};  // num_layers
  ExpectParseError(c, StatusCode::kDataLoss, "header checksum mismatch");
}

TEST(Container, UnknownValuesAfterAValidChecksum) {
  struct Case {
    void (*edit)(ContainerHeader&);
    std::string message;
  };
  const Case cases[] = {
      {[](ContainerHeader& h) { h.codec = 0; }, "unknown codec id 0"},
      {[](ContainerHeader& h) { h.codec = 7; }, "unknown codec id 7"},
      {[](ContainerHeader& h) { h.dtype = 0; }, "unknown dtype 0"},
      {[](ContainerHeader& h) { h.dtype = 4; }, "unknown dtype 4"},
      {[](ContainerHeader& h) { h.flags = 4; }, "unknown bits"},
      {[](ContainerHeader& h) { h.flags = kFlagInlineTables; }, "cachegen-only fields"},
      {[](ContainerHeader& h) { h.level = 1; }, "cachegen-only fields"},
      {[](ContainerHeader& h) { h.profile_id = 5; }, "cachegen-only fields"},
      {[](ContainerHeader& h) { h.num_layers = 0; }, "num_layers 0"},
      {[](ContainerHeader& h) { h.head_dim = 5000; }, "head_dim 5000"},
      {[](ContainerHeader& h) { h.num_streams = 0; }, "num_streams 0"},
      {[](ContainerHeader& h) { h.num_streams = kMaxStreams + 1; }, "num_streams 1048577"},
      {[](ContainerHeader& h) { h.num_streams = 100; }, "truncated inside its 100-entry stream table"},
      {[](ContainerHeader& h) { h.table_checksum ^= 1; }, "stream table checksum mismatch"},
      {[](ContainerHeader& h) { h.body_bytes = 9; }, "header says 112 + 9 body bytes"},
      {[](ContainerHeader& h) { h.body_bytes = ~uint64_t{0}; }, "body bytes"},
  };
  for (const Case& k : cases) {
    auto c = Sample();
    Rewrite(c, k.edit);
    const bool data_loss = k.message.find("checksum") != std::string::npos;
    ExpectParseError(c, data_loss ? StatusCode::kDataLoss : StatusCode::kInvalidArgument, k.message);
  }
  auto c = Sample(CodecId::kCacheGen, ContainerParams{4, 0, 0, 0});
  ExpectParseError(c, StatusCode::kInvalidArgument, "cachegen level 4");
}

TEST(Container, TableLengthsMustAddUpToTheBody) {
  auto c = Sample();
  // Make stream 0 claim one byte more and stream 2 one byte less: the sum still matches.
  StreamEntry e0, e2;
  std::memcpy(&e0, c.data() + 64, 16);
  std::memcpy(&e2, c.data() + 96, 16);
  e0.length += 1;
  e2.length -= 1;
  std::memcpy(c.data() + 64, &e0, 16);
  std::memcpy(c.data() + 96, &e2, 16);
  ContainerHeader h = HeaderOf(c);
  h.table_checksum = uint32_t(Checksum64({c.data() + 64, 48}));
  std::memcpy(c.data(), &h, 64);
  Rewrite(c, [](ContainerHeader&) {});
  auto r = ParseContainer(c);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(StreamBytes(*r, 0).status().code(), StatusCode::kDataLoss);
  // A length past the body is refused before any stream is read.
  e0.length = ~uint64_t{0} - 2;
  std::memcpy(c.data() + 64, &e0, 16);
  h = HeaderOf(c);
  h.table_checksum = uint32_t(Checksum64({c.data() + 64, 48}));
  std::memcpy(c.data(), &h, 64);
  Rewrite(c, [](ContainerHeader&) {});
  ExpectParseError(c, StatusCode::kInvalidArgument, "runs past the body");
}

TEST(Container, TrailingBytesAndTruncation) {
  auto c = Sample();
  c.push_back(std::byte{0});
  ExpectParseError(c, StatusCode::kInvalidArgument, "container is 121 bytes, header says 112 + 8 body bytes");
  c = Sample();
  c.pop_back();
  ExpectParseError(c, StatusCode::kInvalidArgument, "header says 112 + 8 body bytes");
}

TEST(Container, WriteRefusesNoStreams) {
  EncodedStreams s;
  std::vector<std::byte> out;
  EXPECT_EQ(WriteContainer(CodecId::kRaw, kShape, s, out).code(), StatusCode::kInternal);
}

}  // namespace
}  // namespace kvtier::codec::internal
