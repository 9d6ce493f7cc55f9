#include <gtest/gtest.h>

#include <cstring>

#include "kvtier/api/types.h"

namespace kvtier {
namespace {

TEST(ChunkKeyTest, HexAndBytesRoundTrip) {
  const ChunkKey key{0x0123456789abcdefull, 0xfedcba9876543210ull};
  EXPECT_EQ(key.ToHex(), "0123456789abcdeffedcba9876543210");
  auto parsed = ChunkKey::FromHex("0123456789ABCDEFfedcba9876543210");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(*parsed, key);
  const auto bytes = key.ToBytes();
  EXPECT_EQ(bytes[0], 0x01);  // big-endian, hi first
  EXPECT_EQ(bytes[15], 0x10);
  auto back = ChunkKey::FromBytes(std::string_view(reinterpret_cast<const char*>(bytes.data()), 16));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, key);
}

TEST(ChunkKeyTest, RejectsMalformedKeys) {
  auto short_key = ChunkKey::FromBytes(std::string(15, 'x'));
  EXPECT_EQ(short_key.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(short_key.status().message().find("16 bytes, got 15"), std::string::npos);
  EXPECT_EQ(ChunkKey::FromHex("abc").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ChunkKey::FromHex(std::string(31, '0') + "g").status().code(), StatusCode::kInvalidArgument);
}

ModelFingerprint ValidFingerprint() {
  ModelFingerprint fp;
  fp.model_id = "m";
  fp.num_layers = 2;
  fp.num_kv_heads = 4;
  fp.head_dim = 8;
  fp.dtype = DType::kBf16;
  fp.chunk_tokens = 16;
  return fp;
}

TEST(FingerprintTest, ValidatesEachField) {
  EXPECT_TRUE(ValidFingerprint().Validate().ok());
  auto bad = ValidFingerprint();
  bad.model_id.clear();
  EXPECT_NE(bad.Validate().message().find("model_id"), std::string::npos);
  bad = ValidFingerprint();
  bad.dtype = static_cast<DType>(9);
  EXPECT_NE(bad.Validate().message().find("dtype"), std::string::npos);
  bad = ValidFingerprint();
  bad.rope_style = RopeStyle::kNeox;  // RoPE without theta / rotary_dim
  EXPECT_NE(bad.Validate().message().find("rope_theta"), std::string::npos);
  bad.rope_theta = 10000;
  bad.rotary_dim = 3;
  EXPECT_NE(bad.Validate().message().find("rotary_dim"), std::string::npos);
  bad = ValidFingerprint();
  bad.chunk_tokens = 0;
  EXPECT_EQ(bad.Validate().code(), StatusCode::kInvalidArgument);
}

TEST(FingerprintTest, KvBytesPerToken) {
  EXPECT_EQ(ValidFingerprint().KvBytesPerToken(), 2u * 2 * 4 * 8 * 2);
}

TEST(FingerprintTest, DigestDependsOnEveryField) {
  const ChunkKey base = ValidFingerprint().Digest();
  auto fp = ValidFingerprint();
  fp.keys_post_rope = true;
  EXPECT_NE(fp.Digest(), base);
  fp = ValidFingerprint();
  fp.chunk_tokens = 17;
  EXPECT_NE(fp.Digest(), base);
  fp = ValidFingerprint();
  fp.model_id = "n";
  EXPECT_NE(fp.Digest(), base);
  EXPECT_EQ(ValidFingerprint().Digest(), base);
}

TEST(ChecksumTest, StreamEqualsOneShot) {
  std::vector<std::byte> data(100000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::byte>(i * 31 + 7);
  ChecksumStream stream;
  stream.Update(std::span(data).subspan(0, 333));
  ChecksumStream copy = stream;  // a copied state continues independently
  stream.Update(std::span(data).subspan(333));
  copy.Update(std::span(data).subspan(333));
  EXPECT_EQ(stream.Digest(), Checksum64(data));
  EXPECT_EQ(copy.Digest(), Checksum64(data));
  data[5000] ^= std::byte{1};
  EXPECT_NE(stream.Digest(), Checksum64(data));
}

TEST(StatusTest, ToStringNamesTheCode) {
  EXPECT_EQ(InvalidArgument("bad").ToString(), "INVALID_ARGUMENT: bad");
  EXPECT_EQ(Status::Ok().ToString(), "OK");
  Result<int> r = ResourceExhausted("full");
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace kvtier
