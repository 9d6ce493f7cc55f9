// Malformed requests get the exact documented status code, store nothing, and the server keeps serving.
#include <cstring>
#include <thread>

#include "integration/test_server.h"
#include "kvtier/api/convert.h"

namespace kvtier::testing {
namespace {

constexpr uint64_t kFrameLimit = 64 << 10;
constexpr uint64_t kChunkLimit = 1 << 20;

class BadInputTest : public ServerFixture {
 protected:
  void SetUp() override {
    StartServer(16ull << 20, [](ServerConfig& c) {
      c.service.max_frame_bytes = kFrameLimit;
      c.store.max_chunk_bytes = kChunkLimit;
      c.store.max_batch = 16;
    });
  }

  // A put header for `tokens` tokens of TestFingerprint(16) with a correct size and checksum.
  v1::PutRequest Header(const ChunkKey& key, const std::vector<std::byte>& payload, uint32_t tokens) {
    v1::PutRequest msg;
    v1::PutHeader* h = msg.mutable_header();
    *h->mutable_context() = Context();
    h->set_key(KeyToWire(key));
    for (uint32_t i = 0; i < tokens; ++i) h->add_token_ids(i);
    h->set_codec(v1::CODEC_RAW);
    h->set_payload_bytes(payload.size());
    h->set_checksum(Checksum64(payload));
    return msg;
  }

  // Sends the messages as one put stream and returns the final status.
  grpc::Status SendPut(const std::vector<v1::PutRequest>& messages) {
    auto stub = RawStub();
    grpc::ClientContext ctx;
    v1::PutResponse response;
    auto writer = stub->Put(&ctx, &response);
    for (const auto& m : messages) {
      if (!writer->Write(m)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }

  static v1::PutRequest Data(std::span<const std::byte> bytes) {
    v1::PutRequest msg;
    msg.set_data(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return msg;
  }

  // The server still works: a normal round trip succeeds.
  void ExpectStillServing() {
    const ChunkKey key{0xabc, 0xdef};
    const auto kv = PayloadFor(key, 16 * 1024);
    auto put = client_->Put(key, TokensFor(key, 16), kv);
    ASSERT_TRUE(put.ok()) << put.status().ToString();
    std::vector<std::byte> dest(kv.size());
    auto got = client_->Get(key, dest);
    ASSERT_TRUE(got.ok() && got->found);
    EXPECT_EQ(dest, kv);
  }

  static void ExpectStatus(const grpc::Status& s, grpc::StatusCode code, const std::string& fragment) {
    EXPECT_EQ(s.error_code(), code) << s.error_message();
    EXPECT_NE(s.error_message().find(fragment), std::string::npos) << "message: " << s.error_message();
  }

  bool Exists(const ChunkKey& key) { return (*client_->Exists(std::vector<ChunkKey>{key}))[0]; }
};

TEST_F(BadInputTest, FrameOverTheLimit) {
  const ChunkKey key{1, 1};
  const auto payload = PayloadFor(key, 16 * 1024 * 8);  // 128 tokens of 1 KiB would not fit 16; use a big chunk
  auto fp = TestFingerprint(128);
  v1::PutRequest header = Header(key, payload, 128);
  ToProto(fp, header.mutable_header()->mutable_context()->mutable_fingerprint());
  const grpc::Status s = SendPut({header, Data(std::span(payload).subspan(0, kFrameLimit + 1))});
  ExpectStatus(s, grpc::StatusCode::INVALID_ARGUMENT, "exceeds max_frame_bytes");
  EXPECT_FALSE(Exists(key));
  EXPECT_EQ(HostUsedBytes(), 0u);
  ExpectStillServing();
}

TEST_F(BadInputTest, ChunkOverTheLimit) {
  const ChunkKey key{2, 2};
  auto fp = TestFingerprint(4096);
  const std::vector<std::byte> payload(2048 * 1024);  // 2 MiB > 1 MiB limit
  v1::PutRequest header = Header(key, payload, 2048);
  ToProto(fp, header.mutable_header()->mutable_context()->mutable_fingerprint());
  ExpectStatus(SendPut({header}), grpc::StatusCode::INVALID_ARGUMENT, "exceeds max_chunk_bytes");
  ExpectStillServing();
}

TEST_F(BadInputTest, PayloadThatDoesNotMatchTheShape) {
  const ChunkKey key{3, 3};
  const auto payload = PayloadFor(key, 16 * 1024 - 2);
  ExpectStatus(SendPut({Header(key, payload, 16)}), grpc::StatusCode::INVALID_ARGUMENT, "does not match the shape");
  ExpectStillServing();
}

TEST_F(BadInputTest, MoreDataThanDeclared) {
  const ChunkKey key{3, 4};
  const auto payload = PayloadFor(key, 16 * 1024);
  const auto extra = PayloadFor(key, 16 * 1024 + 1);
  ExpectStatus(SendPut({Header(key, payload, 16), Data(extra)}), grpc::StatusCode::INVALID_ARGUMENT,
               "exceeds the declared payload");
  EXPECT_FALSE(Exists(key));
  EXPECT_EQ(HostUsedBytes(), 0u);
  ExpectStillServing();
}

TEST_F(BadInputTest, StreamEndingShortStoresNothing) {
  const ChunkKey key{3, 5};
  const auto payload = PayloadFor(key, 16 * 1024);
  ExpectStatus(SendPut({Header(key, payload, 16), Data(std::span(payload).subspan(0, 5000))}),
               grpc::StatusCode::INVALID_ARGUMENT, "stream ended after 5000 of 16384");
  EXPECT_FALSE(Exists(key));
  EXPECT_EQ(HostUsedBytes(), 0u);
  ExpectStillServing();
}

TEST_F(BadInputTest, UnknownDtype) {
  const ChunkKey key{4, 4};
  const auto payload = PayloadFor(key, 16 * 1024);
  v1::PutRequest header = Header(key, payload, 16);
  header.mutable_header()->mutable_context()->mutable_fingerprint()->set_dtype(static_cast<v1::DType>(42));
  ExpectStatus(SendPut({header, Data(payload)}), grpc::StatusCode::INVALID_ARGUMENT, "fingerprint.dtype");
  ExpectStillServing();
}

TEST_F(BadInputTest, UnknownCodec) {
  const ChunkKey key{4, 5};
  const auto payload = PayloadFor(key, 16 * 1024);
  v1::PutRequest header = Header(key, payload, 16);
  header.mutable_header()->set_codec(static_cast<v1::Codec>(9));
  ExpectStatus(SendPut({header, Data(payload)}), grpc::StatusCode::INVALID_ARGUMENT, "unknown codec 9");
  ExpectStillServing();
}

TEST_F(BadInputTest, ChecksumMismatchIsDataLoss) {
  const ChunkKey key{4, 6};
  auto payload = PayloadFor(key, 16 * 1024);
  v1::PutRequest header = Header(key, payload, 16);
  payload[100] ^= std::byte{1};  // bytes corrupted after the checksum was taken
  ExpectStatus(SendPut({header, Data(payload)}), grpc::StatusCode::DATA_LOSS, "checksum mismatch");
  EXPECT_FALSE(Exists(key));
  ExpectStillServing();
}

TEST_F(BadInputTest, PutCancelledHalfWayLeavesNothingVisible) {
  const ChunkKey key{5, 5};
  auto fp = TestFingerprint(512);
  const auto payload = PayloadFor(key, 512 * 1024);  // 8 frames of 64 KiB
  auto stub = RawStub();
  grpc::ClientContext ctx;
  v1::PutResponse response;
  auto writer = stub->Put(&ctx, &response);
  v1::PutRequest header = Header(key, payload, 512);
  ToProto(fp, header.mutable_header()->mutable_context()->mutable_fingerprint());
  ASSERT_TRUE(writer->Write(header));
  for (size_t off = 0; off < payload.size() / 2; off += kFrameLimit) {
    ASSERT_TRUE(writer->Write(Data(std::span(payload).subspan(off, kFrameLimit))));
  }
  ctx.TryCancel();
  EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // The server notices the cancellation asynchronously; wait (bounded) for the reservation to go.
  for (int i = 0; i < 500 && HostUsedBytes() != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(HostUsedBytes(), 0u);
  auto client = NewClient("test", fp);
  EXPECT_FALSE((*client->Exists(std::vector<ChunkKey>{key}))[0]);
  ExpectStillServing();
}

TEST_F(BadInputTest, GetWithAMismatchedFingerprint) {
  const ChunkKey key{6, 6};
  ASSERT_TRUE(client_->Put(key, TokensFor(key, 16), PayloadFor(key, 16 * 1024)).ok());
  auto fp = TestFingerprint(16);
  fp.head_dim = 32;
  fp.rotary_dim = 32;
  auto other = NewClient("test", fp);
  std::vector<std::byte> dest(64 * 1024);
  auto got = other->Get(key, dest);
  EXPECT_EQ(got.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(got.status().message().find("fingerprint mismatch"), std::string::npos) << got.status().message();
  ExpectStillServing();
}

TEST_F(BadInputTest, GetFromAnotherNamespaceIsAMiss) {
  const ChunkKey key{7, 7};
  ASSERT_TRUE(client_->Put(key, TokensFor(key, 16), PayloadFor(key, 16 * 1024)).ok());
  auto other = NewClient("someone-else");
  std::vector<std::byte> dest(16 * 1024, std::byte{0});
  auto got = other->Get(key, dest);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_FALSE(got->found);
  EXPECT_EQ(dest, std::vector<std::byte>(16 * 1024, std::byte{0}));  // not a byte of the other tenant's data
  EXPECT_EQ(other->Lookup(std::vector<ChunkKey>{key})->leading_hits, 0u);
}

TEST_F(BadInputTest, MalformedKeyLength) {
  auto stub = RawStub();
  v1::GetRequest get;
  *get.mutable_context() = Context();
  get.add_keys(std::string(15, 'k'));
  grpc::ClientContext ctx;
  auto reader = stub->Get(&ctx, get);
  v1::GetResponse msg;
  EXPECT_FALSE(reader->Read(&msg));
  ExpectStatus(reader->Finish(), grpc::StatusCode::INVALID_ARGUMENT, "keys[0]: chunk key must be 16 bytes, got 15");

  v1::LookupRequest lookup;
  *lookup.mutable_context() = Context();
  lookup.add_keys(std::string(16, 'k'));
  lookup.add_keys(std::string(17, 'k'));
  grpc::ClientContext ctx2;
  v1::LookupResponse lr;
  ExpectStatus(stub->Lookup(&ctx2, lookup, &lr), grpc::StatusCode::INVALID_ARGUMENT, "keys[1]");

  const auto payload = PayloadFor({8, 8}, 16 * 1024);
  v1::PutRequest header = Header({8, 8}, payload, 16);
  header.mutable_header()->set_key(std::string(17, 'k'));
  ExpectStatus(SendPut({header, Data(payload)}), grpc::StatusCode::INVALID_ARGUMENT, "header.key");
  ExpectStillServing();
}

TEST_F(BadInputTest, EmptyTokenList) {
  const ChunkKey key{9, 9};
  const auto payload = PayloadFor(key, 16 * 1024);
  v1::PutRequest header = Header(key, payload, 16);
  header.mutable_header()->clear_token_ids();
  ExpectStatus(SendPut({header, Data(payload)}), grpc::StatusCode::INVALID_ARGUMENT, "token_ids is empty");
  ExpectStillServing();
}

TEST_F(BadInputTest, LookupBatchOverTheLimit) {
  std::vector<ChunkKey> keys(17);
  for (uint64_t i = 0; i < keys.size(); ++i) keys[i] = {10, i};
  auto lookup = client_->Lookup(keys);
  EXPECT_EQ(lookup.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(lookup.status().message().find("exceeds max_batch 16"), std::string::npos) << lookup.status().message();
  std::vector<std::vector<std::byte>> bufs(17, std::vector<std::byte>(16));
  std::vector<std::span<std::byte>> dests(bufs.begin(), bufs.end());
  EXPECT_EQ(client_->GetBatch(keys, dests).status().code(), StatusCode::kInvalidArgument);
  ExpectStillServing();
}

TEST_F(BadInputTest, StreamOrderAndMissingContext) {
  const auto payload = PayloadFor({11, 1}, 16 * 1024);
  ExpectStatus(SendPut({Data(payload)}), grpc::StatusCode::INVALID_ARGUMENT, "data frame before any chunk header");
  ExpectStatus(SendPut({}), grpc::StatusCode::INVALID_ARGUMENT, "no chunk");
  v1::PutRequest header = Header({11, 1}, payload, 16);
  header.mutable_header()->mutable_context()->clear_fingerprint();
  ExpectStatus(SendPut({header}), grpc::StatusCode::INVALID_ARGUMENT, "no model fingerprint");
  header = Header({11, 1}, payload, 16);
  ExpectStatus(SendPut({header, Data(std::span(payload).subspan(0, 10)), Header({11, 2}, payload, 16)}),
               grpc::StatusCode::INVALID_ARGUMENT, "header for a new chunk arrived after 10 of 16384");
  v1::PutRequest empty_ns = Header({11, 3}, payload, 16);
  empty_ns.mutable_header()->mutable_context()->set_namespace_("");
  ExpectStatus(SendPut({empty_ns, Data(payload)}), grpc::StatusCode::INVALID_ARGUMENT, "namespace is empty");
  ExpectStillServing();
}

TEST_F(BadInputTest, FullTierWithNothingEvictableIsResourceExhausted) {
  auto fp = TestFingerprint(1024);
  auto client = NewClient("test", fp);
  // 16 MiB tier, 1 MiB chunks (+ a page of token ids): 15 fit, all pinned.
  int stored = 0;
  for (uint64_t i = 0; i < 20; ++i) {
    const ChunkKey key{12, i};
    auto put = client->Put(key, TokensFor(key, 1024), PayloadFor(key, 1024 * 1024), {.pin = true});
    if (!put.ok()) {
      EXPECT_EQ(put.status().code(), StatusCode::kResourceExhausted);
      EXPECT_NE(put.status().message().find("host tier full"), std::string::npos) << put.status().message();
      EXPECT_NE(put.status().message().find("chunks pinned"), std::string::npos) << put.status().message();
      break;
    }
    ++stored;
  }
  EXPECT_EQ(stored, 15);
  // Everything stored is intact.
  std::vector<std::byte> dest(1024 * 1024);
  for (uint64_t i = 0; i < static_cast<uint64_t>(stored); ++i) {
    auto got = client->Get({12, i}, dest);
    ASSERT_TRUE(got.ok() && got->found);
    EXPECT_EQ(dest, PayloadFor({12, i}, 1024 * 1024));
  }
}

}  // namespace
}  // namespace kvtier::testing
