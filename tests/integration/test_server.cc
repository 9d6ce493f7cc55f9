#include "integration/test_server.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>

#include "kvtier/api/convert.h"

namespace kvtier::testing {

ModelFingerprint TestFingerprint(uint32_t chunk_tokens) {
  ModelFingerprint fp;
  fp.model_id = "integration";
  fp.num_layers = 2;
  fp.num_kv_heads = 2;
  fp.head_dim = 64;
  fp.dtype = DType::kFp16;
  fp.rope_style = RopeStyle::kGptj;
  fp.rope_theta = 10000;
  fp.rotary_dim = 64;
  fp.chunk_tokens = chunk_tokens;
  return fp;
}

std::vector<std::byte> PayloadFor(const ChunkKey& key, size_t bytes) {
  std::vector<std::byte> out(bytes);
  uint64_t x = key.hi ^ (key.lo * 0x9e3779b97f4a7c15ull) ^ bytes;
  for (size_t i = 0; i < bytes; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    out[i] = static_cast<std::byte>(x);
  }
  return out;
}

std::vector<uint32_t> TokensFor(const ChunkKey& key, size_t n) {
  std::vector<uint32_t> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint32_t>((key.lo + i) % 32000);
  return out;
}

v1::PutRequest PutHeaderFor(const v1::RequestContext& context, const ChunkKey& key, std::span<const std::byte> payload,
                            std::span<const uint32_t> tokens) {
  v1::PutRequest header;
  v1::PutHeader* h = header.mutable_header();
  *h->mutable_context() = context;
  h->set_key(KeyToWire(key));
  h->mutable_token_ids()->Assign(tokens.begin(), tokens.end());
  h->set_codec(v1::CODEC_RAW);
  h->set_payload_bytes(payload.size());
  h->set_checksum(Checksum64(payload));
  return header;
}

ServerConfig SmallServerConfig() {
  ServerConfig c;
  c.listen = "127.0.0.1:0";
  c.metrics_listen = "";
  c.store.host_capacity_bytes = 4ull << 20;
  c.store.host_prefault = false;
  return c;
}

grpc::Status CheckHealth(const std::string& address, std::string* response) {
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  grpc::ClientContext ctx;
  grpc::Slice empty_message("");
  grpc::ByteBuffer request_bytes(&empty_message, 1);
  // grpc.health.v1.HealthCheckRequest{service: ""} is the empty message.
  grpc::GenericStub generic(channel);
  grpc::CompletionQueue cq;
  auto call = generic.PrepareUnaryCall(&ctx, "/grpc.health.v1.Health/Check", request_bytes, &cq);
  call->StartCall();
  grpc::ByteBuffer reply;
  grpc::Status status;
  call->Finish(&reply, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  if (!cq.Next(&tag, &ok)) return grpc::Status(grpc::StatusCode::INTERNAL, "completion queue shut down");
  if (!status.ok()) return status;
  std::vector<grpc::Slice> slices;
  if (!reply.Dump(&slices).ok()) return grpc::Status(grpc::StatusCode::INTERNAL, "cannot read the response");
  response->clear();
  for (const auto& s : slices) response->append(reinterpret_cast<const char*>(s.begin()), s.size());
  return status;
}

void ServerFixture::StartServer(uint64_t capacity, const std::function<void(ServerConfig&)>& tweak) {
  ServerConfig config;
  config.listen = "127.0.0.1:0";
  config.metrics_listen = "";  // the exposer takes ~2 s to stop; only MetricsTest turns it on
  config.store.host_capacity_bytes = capacity;
  config.store.host_huge_pages = false;
  config.store.now_ns = [this] { return now_ns_.load(); };
  if (tweak) tweak(config);
  auto server = Server::Start(config);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  server_ = std::move(server).value();
  client_ = NewClient();
}

void ServerFixture::TearDown() {
  client_.reset();
  server_.reset();
}

std::unique_ptr<Client> ServerFixture::NewClient(const std::string& name_space, const ModelFingerprint& fp) {
  ClientOptions options;
  options.endpoint = server_->address();
  options.name_space = name_space;
  options.fingerprint = fp;
  options.deadline = std::chrono::seconds(60);
  options.frame_bytes = 64 << 10;  // fits every test server's frame limit, and exercises many frames
  auto client = Client::Connect(options);
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  return client.ok() ? std::move(client).value() : nullptr;
}

v1::RequestContext ServerFixture::Context(const std::string& name_space, const ModelFingerprint& fp) {
  v1::RequestContext ctx;
  ctx.set_namespace_(name_space);
  ToProto(fp, ctx.mutable_fingerprint());
  return ctx;
}

std::unique_ptr<v1::KvTier::Stub> ServerFixture::RawStub() {
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(64 << 20);
  args.SetMaxReceiveMessageSize(64 << 20);
  return v1::KvTier::NewStub(
      grpc::CreateCustomChannel(server_->address(), grpc::InsecureChannelCredentials(), args));
}

grpc::Status ServerFixture::PutRaw(const v1::PutRequest& header, std::span<const std::byte> payload,
                                   v1::PutResponse* response) {
  v1::PutRequest data;
  data.set_data(reinterpret_cast<const char*>(payload.data()), payload.size());
  auto stub = RawStub();
  grpc::ClientContext ctx;
  auto writer = stub->Put(&ctx, response);
  if (writer->Write(header)) writer->Write(data);  // a refused header ends the stream
  writer->WritesDone();
  return writer->Finish();
}

uint64_t ServerFixture::HostUsedBytes() { return server_->store().Stats().tiers[0].used_bytes; }

}  // namespace kvtier::testing
