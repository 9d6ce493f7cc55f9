// The API end to end over a real socket: round trips compare bytes.
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>

#include <cstring>

#include "integration/test_server.h"
#include "kvtier/client/chunker.h"

namespace kvtier::testing {
namespace {

class ServiceTest : public ServerFixture {};

TEST_F(ServiceTest, PutGetRoundTripsAcrossFrameBoundaries) {
  StartServer();
  const ModelFingerprint fp = TestFingerprint(4096);
  auto client = NewClient("test", fp);
  // 1 KiB per token: sizes below, at and across the 1 MiB frame size.
  for (uint32_t tokens : {1u, 1023u, 1024u, 1025u, 3000u}) {
    const ChunkKey key{tokens, 42};
    const auto kv = PayloadFor(key, tokens * fp.KvBytesPerToken());
    const auto ids = TokensFor(key, tokens);
    auto put = client->Put(key, ids, kv, {.base_position = 77});
    ASSERT_TRUE(put.ok()) << put.status().ToString();
    EXPECT_FALSE(put->already_present);
    std::vector<std::byte> dest(kv.size() + 100, std::byte{0xee});
    auto got = client->Get(key, dest, ids);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ASSERT_TRUE(got->found);
    EXPECT_EQ(got->bytes, kv.size());
    EXPECT_EQ(got->num_tokens, tokens);
    EXPECT_EQ(got->base_position, 77u);
    EXPECT_EQ(got->tier, 1);
    EXPECT_EQ(std::memcmp(dest.data(), kv.data(), kv.size()), 0) << tokens << " tokens";
    EXPECT_EQ(dest[kv.size()], std::byte{0xee});  // nothing written past the chunk
  }
}

TEST_F(ServiceTest, MissIsANormalAnswer) {
  StartServer();
  std::vector<std::byte> dest(1024);
  auto got = client_->Get({9, 9}, dest);
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(got->found);
  EXPECT_EQ(got->bytes, 0u);
}

TEST_F(ServiceTest, PrefixWorkflowWithChunkerLookupAndBatchGet) {
  StartServer();
  const ModelFingerprint fp = TestFingerprint(16);
  const Chunker chunker(fp);
  std::vector<uint32_t> prompt(64);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<uint32_t>(i * 3);
  const auto chunks = chunker.Split(prompt, KeyMode::kPrefix);
  ASSERT_EQ(chunks.size(), 4u);
  std::vector<std::vector<std::byte>> kv;
  std::vector<ChunkPut> puts;
  for (const auto& c : chunks) kv.push_back(PayloadFor(c.key, 16 * fp.KvBytesPerToken()));
  for (size_t i = 0; i < 3; ++i) {  // cache the first three chunks in one stream
    puts.push_back({chunks[i].key, std::span(prompt).subspan(chunks[i].begin, 16), kv[i], {}});
  }
  auto put = client_->PutBatch(puts);
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  ASSERT_EQ(put->size(), 3u);

  std::vector<ChunkKey> keys;
  for (const auto& c : chunks) keys.push_back(c.key);
  auto lookup = client_->Lookup(keys, std::chrono::milliseconds(5000));
  ASSERT_TRUE(lookup.ok());
  EXPECT_EQ(lookup->leading_hits, 3u);
  EXPECT_EQ(lookup->tiers, (std::vector<uint8_t>{1, 1, 1, 0}));
  EXPECT_EQ(lookup->lease_ttl_ms, 5000u);

  std::vector<std::byte> buffer(4 * kv[0].size());
  std::vector<std::span<std::byte>> dests;
  for (size_t i = 0; i < 4; ++i) dests.push_back(std::span(buffer).subspan(i * kv[0].size(), kv[0].size()));
  auto got = client_->GetBatch(keys, dests);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE((*got)[i].found);
    EXPECT_EQ(std::memcmp(dests[i].data(), kv[i].data(), kv[i].size()), 0);
  }
  EXPECT_FALSE((*got)[3].found);

  auto exists = client_->Exists(keys);
  EXPECT_EQ(*exists, (std::vector<bool>{true, true, true, false}));
  auto deleted = client_->Delete(std::vector<ChunkKey>{keys[1], keys[3]});
  EXPECT_EQ(*deleted, 1u);
  EXPECT_EQ(client_->Lookup(keys)->leading_hits, 1u);
}

TEST_F(ServiceTest, RepeatedPutIsANoOp) {
  StartServer();
  const ChunkKey key{1, 2};
  const auto kv = PayloadFor(key, 16 * 1024);
  const auto ids = TokensFor(key, 16);
  ASSERT_FALSE(client_->Put(key, ids, kv)->already_present);
  ASSERT_TRUE(client_->Put(key, ids, kv)->already_present);
  EXPECT_EQ(server_->store().Stats().tiers[0].chunks, 1u);
}

TEST_F(ServiceTest, AsyncCallsOverlap) {
  StartServer();
  std::vector<ChunkKey> keys;
  std::vector<std::vector<std::byte>> kv;
  std::vector<std::vector<uint32_t>> ids;
  for (uint64_t i = 0; i < 16; ++i) {
    keys.push_back({7, i});
    kv.push_back(PayloadFor(keys.back(), 16 * 1024));
    ids.push_back(TokensFor(keys.back(), 16));
  }
  std::vector<std::future<Result<PutResult>>> puts;
  for (size_t i = 0; i < keys.size(); ++i) puts.push_back(client_->PutAsync(keys[i], ids[i], kv[i]));
  for (auto& f : puts) ASSERT_TRUE(f.get().ok());
  auto lookup = client_->LookupAsync(keys).get();
  ASSERT_TRUE(lookup.ok());
  EXPECT_EQ(lookup->leading_hits, 16u);
  std::vector<std::vector<std::byte>> dest(keys.size(), std::vector<std::byte>(16 * 1024));
  std::vector<std::future<Result<GetResult>>> gets;
  for (size_t i = 0; i < keys.size(); ++i) gets.push_back(client_->GetAsync(keys[i], dest[i]));
  for (size_t i = 0; i < keys.size(); ++i) {
    auto r = gets[i].get();
    ASSERT_TRUE(r.ok() && r->found);
    EXPECT_EQ(dest[i], kv[i]);
  }
}

TEST_F(ServiceTest, StatsReportTiersAndLimits) {
  StartServer(32ull << 20);
  const ChunkKey key{5, 5};
  ASSERT_TRUE(client_->Put(key, TokensFor(key, 16), PayloadFor(key, 16 * 1024)).ok());
  auto stats = client_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->version(), "0.1.0");
  ASSERT_EQ(stats->tiers_size(), 1);
  EXPECT_EQ(stats->tiers(0).tier(), v1::TIER_HOST);
  EXPECT_EQ(stats->tiers(0).capacity_bytes(), 32ull << 20);
  EXPECT_EQ(stats->tiers(0).chunks(), 1u);
  EXPECT_EQ(stats->max_frame_bytes(), 1u << 20);
  EXPECT_EQ(stats->max_batch(), 1024u);
}

TEST_F(ServiceTest, HealthServiceAnswersServing) {
  StartServer();
  std::string bytes;
  const grpc::Status status = CheckHealth(server_->address(), &bytes);
  ASSERT_TRUE(status.ok()) << status.error_message();
  // HealthCheckResponse{status: SERVING (1)} encodes as field 1 varint 1.
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));
}

TEST_F(ServiceTest, ReflectionListsTheServices) {
  StartServer();
  auto channel = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
  grpc::GenericStub generic(channel);
  grpc::CompletionQueue cq;
  grpc::ClientContext ctx;
  auto next = [&cq] {
    void* tag = nullptr;
    bool ok = false;
    return cq.Next(&tag, &ok) && ok;
  };
  auto call = generic.PrepareCall(&ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  call->StartCall(nullptr);
  ASSERT_TRUE(next());
  // ServerReflectionRequest{list_services: ""}: field 7, length-delimited, empty.
  grpc::Slice request_slice(std::string("\x3a\x00", 2));
  grpc::ByteBuffer request(&request_slice, 1);
  call->Write(request, nullptr);
  ASSERT_TRUE(next());
  call->WritesDone(nullptr);
  ASSERT_TRUE(next());
  grpc::ByteBuffer response;
  call->Read(&response, nullptr);
  ASSERT_TRUE(next());
  grpc::Status status;
  call->Finish(&status, nullptr);
  ASSERT_TRUE(next());
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const auto& slice : slices) bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  EXPECT_NE(bytes.find("kvtier.v1.KvTier"), std::string::npos);
  EXPECT_NE(bytes.find("grpc.health.v1.Health"), std::string::npos);
}

}  // namespace
}  // namespace kvtier::testing

namespace kvtier::testing {
namespace {

// Two servers never share a port (gRPC's default SO_REUSEPORT would let them split the connections).
TEST_F(ServiceTest, ASecondServerOnTheSamePortIsRefused) {
  StartServer();
  ServerConfig second = SmallServerConfig();
  second.listen = server_->address();
  auto clash = Server::Start(second);
  ASSERT_FALSE(clash.ok());
  EXPECT_EQ(clash.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(clash.status().message().find("address in use"), std::string::npos) << clash.status().message();
}

}  // namespace
}  // namespace kvtier::testing
