#include "kvtier/client/client.h"

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/impl/codegen/client_unary_call.h>
#include <grpcpp/impl/codegen/rpc_method.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/security/credentials.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "kvtier/api/convert.h"
#include "kvtier/v1/kvtier.grpc.pb.h"
#include "get_stream.h"
#include "gpu_channel_state.h"
#include "local_path.h"
#include "thread_pool.h"

namespace kvtier {

void PrepareContext(const ClientOptions& o, grpc::ClientContext* ctx) {
  ctx->set_deadline(std::chrono::system_clock::now() + o.deadline);
  if (!o.bearer_token.empty()) ctx->AddMetadata("authorization", "Bearer " + o.bearer_token);
}

Status ClientOptions::Validate() const {
  if (endpoint.empty()) return InvalidArgument("ClientOptions.endpoint is empty");
  if (name_space.empty() || name_space.size() > 128) {
    return InvalidArgument("ClientOptions.name_space must be 1..128 bytes");
  }
  KVTIER_RETURN_IF_ERROR(fingerprint.Validate());
  if (deadline.count() <= 0) return InvalidArgument("ClientOptions.deadline must be > 0");
  if (max_attempts < 1) return InvalidArgument("ClientOptions.max_attempts must be >= 1");
  if (frame_bytes < 4096 || frame_bytes > max_message_bytes) {
    return InvalidArgument("ClientOptions.frame_bytes must be in [4096, max_message_bytes]");
  }
  if (max_message_bytes > (1ull << 31) - 1) return InvalidArgument("ClientOptions.max_message_bytes must be < 2 GiB");
  if (async_threads == 0) return InvalidArgument("ClientOptions.async_threads must be >= 1");
  if (local_retry.count() < 0) return InvalidArgument("ClientOptions.local_retry must be >= 0");
  if (reconnect_backoff.count() <= 0 || max_reconnect_backoff < reconnect_backoff) {
    return InvalidArgument("ClientOptions: need 0 < reconnect_backoff <= max_reconnect_backoff");
  }
  if (local_lease.count() <= 0 || local_lease.count() > 600000) {
    return InvalidArgument("ClientOptions.local_lease must be in (0, 10 min]");
  }
  if (tls.cert_chain_pem.empty() != tls.private_key_pem.empty()) {
    return InvalidArgument("ClientOptions.tls: cert_chain_pem and private_key_pem go together");
  }
  if (!tls.enabled() && !tls.cert_chain_pem.empty()) {
    return InvalidArgument("ClientOptions.tls: a client certificate needs root_ca_pem (TLS on)");
  }
  if (codec::CodecName(encode.codec) == "unknown") return InvalidArgument("ClientOptions.encode.codec is unknown");
  if (encode.profile != nullptr &&
      (encode.profile->num_layers() != fingerprint.num_layers ||
       encode.profile->num_kv_heads() != fingerprint.num_kv_heads || encode.profile->head_dim() != fingerprint.head_dim)) {
    return InvalidArgument("ClientOptions.encode.profile was built for another KV shape than the fingerprint");
  }
  return Status::Ok();
}

struct Client::Impl {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::KvTier::Stub> stub;
  grpc::internal::RpcMethod get_method;  // Get, read as raw frames (get_stream.h)
  v1::RequestContext context;  // namespace + fingerprint, copied into every request
  ThreadPool pool;
  std::mutex profiles_mu;
  std::map<uint64_t, std::unique_ptr<codec::ModelProfile>> profiles;  // by id; guarded by profiles_mu
  std::unique_ptr<LocalPath> local;  // null when ClientOptions.local_path is kOff

  Impl(size_t threads, std::shared_ptr<grpc::Channel> ch)
      : channel(std::move(ch)),
        stub(v1::KvTier::NewStub(channel)),
        get_method("/kvtier.v1.KvTier/Get", grpc::internal::RpcMethod::SERVER_STREAMING, channel),
        pool(threads) {}
};

namespace {

std::string WireKey(const ChunkKey& key) { return KeyToWire(key); }

}  // namespace

Client::Client(ClientOptions options) : options_(std::move(options)) {}
Client::~Client() = default;

Result<std::unique_ptr<Client>> Client::Connect(ClientOptions options) {
  KVTIER_RETURN_IF_ERROR(options.Validate());
  std::unique_ptr<Client> client(new Client(std::move(options)));
  const ClientOptions& o = client->options_;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(o.max_message_bytes));
  args.SetMaxSendMessageSize(static_cast<int>(o.max_message_bytes));
  // Each Client gets its own connection instead of sharing one with every channel to the same address.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // Not GRPC_ARG_MIN_RECONNECT_BACKOFF_MS: gRPC also uses it as the connect timeout, and a short one fails
  // connections to a busy server.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, static_cast<int>(o.reconnect_backoff.count()));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, static_cast<int>(o.max_reconnect_backoff.count()));
  // While a call is open (a GPU channel lives as long as its transfer), ping a silent connection every 30 s
  // and drop it after 10 s without an answer, so a dead server host ends the call instead of hanging it. The
  // server allows pings this often (kvstore/src/server.cc).
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (o.tls.enabled()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = o.tls.root_ca_pem;
    ssl.pem_cert_chain = o.tls.cert_chain_pem;
    ssl.pem_private_key = o.tls.private_key_pem;
    credentials = grpc::SslCredentials(ssl);
    if (!o.tls.server_name.empty()) args.SetSslTargetNameOverride(o.tls.server_name);
  }
  client->impl_ = std::make_unique<Impl>(o.async_threads, grpc::CreateCustomChannel(o.endpoint, credentials, args));
  client->impl_->context.set_namespace_(o.name_space);
  ToProto(o.fingerprint, client->impl_->context.mutable_fingerprint());
  if (o.local_path != LocalPathMode::kOff) {
    Client* c = client.get();
    client->impl_->local = std::make_unique<LocalPath>(o, client->impl_->context, [c] { return c->LocalInfo(); });
  }
  return client;
}

Result<std::optional<std::vector<GetResult>>> Client::GetLeased(std::span<const ChunkKey> keys,
                                                                const LeasedChunkSink& sink, bool want_gpu) {
  if (keys.empty()) return InvalidArgument("GetLeased of no keys");
  if (!sink) return InvalidArgument("GetLeased needs a sink");
  if (!impl_->local) return std::optional<std::vector<GetResult>>();
  return impl_->local->Visit(keys, {}, sink, want_gpu);
}

LocalPathStats Client::local_stats() const { return impl_->local ? impl_->local->stats() : LocalPathStats{}; }

std::string Client::local_fallback_reason() const {
  if (!impl_->local) return "ClientOptions.local_path is off";
  return impl_->local->last_fallback_reason();
}

Status Client::LocalUnavailable() const {
  return FailedPrecondition("the shared-memory path cannot be used (ClientOptions.local_path = kRequire): " +
                            local_fallback_reason());
}

namespace {

// Runs `attempt` until it succeeds, fails with something other than UNAVAILABLE, or tries run out.
template <typename Fn>
auto WithRetry(const ClientOptions& o, Fn&& attempt) -> decltype(attempt()) {
  thread_local std::minstd_rand rng(std::random_device{}());
  auto backoff = o.initial_backoff;
  for (int i = 1;; ++i) {
    auto result = attempt();
    if (result.ok() || result.status().code() != StatusCode::kUnavailable || i >= o.max_attempts) return result;
    const auto jittered = std::chrono::milliseconds(
        backoff.count() / 2 + static_cast<long>(rng() % static_cast<unsigned>(backoff.count() / 2 + 1)));
    std::this_thread::sleep_for(jittered);
    backoff = std::min(backoff * 2, o.max_backoff);
  }
}

}  // namespace

Result<PutResult> Client::Put(const ChunkKey& key, std::span<const uint32_t> token_ids, std::span<const std::byte> kv,
                              const PutOptions& options) {
  const ChunkPut chunk{key, token_ids, kv, options};
  auto results = PutBatch({&chunk, 1});
  if (!results.ok()) return results.status();
  return results->front();
}

namespace {

codec::KvShape ShapeOf(const ModelFingerprint& fp, size_t tokens) {
  return {fp.num_layers, fp.num_kv_heads, fp.head_dim, static_cast<uint32_t>(tokens), fp.dtype};
}

// Encodes each chunk's KV as the options say; `payloads` then views what goes on the wire.
Status EncodeChunks(const ClientOptions& o, std::span<const ChunkPut> chunks, std::vector<std::vector<std::byte>>& encoded,
                    std::vector<std::span<const std::byte>>& payloads) {
  payloads.reserve(chunks.size());
  if (o.encode.codec == codec::CodecId::kRaw) {
    for (const ChunkPut& c : chunks) payloads.push_back(c.kv);
    return Status::Ok();
  }
  encoded.resize(chunks.size());
  for (size_t i = 0; i < chunks.size(); ++i) {
    const codec::KvView view{ShapeOf(o.fingerprint, chunks[i].token_ids.size()), chunks[i].kv, {}};
    if (Status s = codec::Encode(view, o.encode, encoded[i]); !s.ok()) {
      return Status(s.code(), "chunk " + chunks[i].key.ToHex() + ": " + s.message());
    }
    payloads.push_back(encoded[i]);
  }
  return Status::Ok();
}

}  // namespace

Result<std::vector<PutResult>> Client::PutBatch(std::span<const ChunkPut> chunks) {
  if (chunks.empty()) return InvalidArgument("PutBatch of no chunks");
  std::vector<std::vector<std::byte>> encoded;
  std::vector<std::span<const std::byte>> payloads;
  KVTIER_RETURN_IF_ERROR(EncodeChunks(options_, chunks, encoded, payloads));
  std::vector<uint64_t> checksums;
  checksums.reserve(chunks.size());
  for (const auto& payload : payloads) checksums.push_back(Checksum64(payload));
  // The shared-memory put path carries no reuse metadata: variant puts go over gRPC.
  const bool variants = std::any_of(chunks.begin(), chunks.end(), [](const ChunkPut& c) { return c.options.reuse; });
  if (impl_->local && !variants) {
    auto local = impl_->local->PutBatch(chunks, payloads, checksums, options_.encode.codec);
    if (!local.ok()) return local.status();
    if (*local) return std::move(**local);
    if (options_.local_path == LocalPathMode::kRequire) return LocalUnavailable();
  }
  return WithRetry(options_, [&]() -> Result<std::vector<PutResult>> {
    grpc::ClientContext ctx;
    PrepareContext(options_, &ctx);
    v1::PutResponse response;
    auto writer = impl_->stub->Put(&ctx, &response);
    v1::PutRequest msg;
    bool open = true;
    for (size_t i = 0; i < chunks.size() && open; ++i) {
      const ChunkPut& c = chunks[i];
      const std::span<const std::byte> payload = payloads[i];
      v1::PutHeader* h = msg.mutable_header();
      *h->mutable_context() = impl_->context;
      h->set_key(WireKey(c.key));
      h->mutable_token_ids()->Assign(c.token_ids.begin(), c.token_ids.end());
      h->set_codec(static_cast<v1::Codec>(options_.encode.codec));
      h->set_payload_bytes(payload.size());
      h->set_checksum(checksums[i]);
      h->set_base_position(c.options.base_position);
      h->set_pin(c.options.pin);
      h->set_prefer_tier(c.options.prefer_tier);
      if (c.options.reuse != nullptr) *h->mutable_reuse() = *c.options.reuse;
      else h->clear_reuse();
      open = writer->Write(msg);
      for (uint64_t off = 0; off < payload.size() && open; off += options_.frame_bytes) {
        const uint64_t n = std::min<uint64_t>(options_.frame_bytes, payload.size() - off);
        msg.set_data(reinterpret_cast<const char*>(payload.data() + off), n);
        open = writer->Write(msg);
      }
    }
    if (open) writer->WritesDone();
    const grpc::Status status = writer->Finish();
    if (!status.ok()) return FromGrpc(status);
    if (static_cast<size_t>(response.results_size()) != chunks.size()) {
      return Internal("server acknowledged " + std::to_string(response.results_size()) + " of " +
                      std::to_string(chunks.size()) + " chunks");
    }
    std::vector<PutResult> out(chunks.size());
    for (size_t i = 0; i < chunks.size(); ++i) {
      const v1::PutResult& r = response.results(static_cast<int>(i));
      out[i].already_present = r.already_present();
      out[i].variant_admitted = chunks[i].options.reuse == nullptr || r.variant_admitted();
    }
    return out;
  });
}

Result<std::optional<std::vector<GetResult>>> Client::LocalGet(std::span<const ChunkKey> keys,
                                                               std::span<const std::span<std::byte>> dests,
                                                               std::span<const std::span<const uint32_t>> expected,
                                                               const codec::DecodeOptions* decode) {
  if (!impl_->local || (options_.server_decode && decode != nullptr)) return std::optional<std::vector<GetResult>>();
  auto local = impl_->local->GetBatch(keys, dests, expected, decode);
  if (!local.ok() || *local || options_.local_path != LocalPathMode::kRequire) return local;
  return LocalUnavailable();
}

Result<GetResult> Client::Get(const ChunkKey& key, std::span<std::byte> dest, std::span<const uint32_t> expected_tokens) {
  const codec::DecodeOptions decode = DecodeOptions();
  {
    const std::span<std::byte> dests[1] = {dest};
    auto local = LocalGet({&key, 1}, dests,
                          expected_tokens.empty() ? std::span<const std::span<const uint32_t>>()
                                                  : std::span(&expected_tokens, 1),
                          &decode);
    if (!local.ok()) return local.status();
    if (*local) return (**local).front();
  }
  v1::GetRequest request;
  *request.mutable_context() = impl_->context;
  request.add_keys(KeyToWire(key));
  if (!expected_tokens.empty()) {
    request.add_expected_tokens()->mutable_ids()->Assign(expected_tokens.begin(), expected_tokens.end());
  }
  request.set_decode_to_raw(options_.server_decode);
  const std::span<std::byte> dests[1] = {dest};
  auto results = WithRetry(options_, [&] {
    return RunGetStream(impl_->channel.get(), impl_->get_method, options_, request, {&key, 1}, dests, &decode);
  });
  if (!results.ok()) return results.status();
  return results->front();
}

Result<std::vector<GetResult>> Client::GetBatch(std::span<const ChunkKey> keys,
                                                std::span<const std::span<std::byte>> dests) {
  if (keys.size() != dests.size()) return InvalidArgument("GetBatch needs one destination per key");
  if (keys.empty()) return InvalidArgument("GetBatch of no keys");
  return RunBatch(keys, dests, /*keep_encoded=*/false);
}

Result<std::vector<GetResult>> Client::GetBatchEncoded(std::span<const ChunkKey> keys,
                                                       std::span<const std::span<std::byte>> dests) {
  if (keys.size() != dests.size()) return InvalidArgument("GetBatchEncoded needs one destination per key");
  if (keys.empty()) return InvalidArgument("GetBatchEncoded of no keys");
  return RunBatch(keys, dests, /*keep_encoded=*/true);
}

Result<std::vector<GetResult>> Client::RunBatch(std::span<const ChunkKey> keys,
                                                std::span<const std::span<std::byte>> dests, bool keep_encoded) {
  const codec::DecodeOptions decode = DecodeOptions();
  const codec::DecodeOptions* decoding = keep_encoded ? nullptr : &decode;
  {
    auto local = LocalGet(keys, dests, {}, decoding);
    if (!local.ok()) return local.status();
    if (*local) return std::move(**local);
  }
  v1::GetRequest request;
  *request.mutable_context() = impl_->context;
  for (const ChunkKey& k : keys) request.add_keys(KeyToWire(k));
  request.set_decode_to_raw(options_.server_decode && !keep_encoded);
  return WithRetry(options_, [&] {
    return RunGetStream(impl_->channel.get(), impl_->get_method, options_, request, keys, dests, decoding);
  });
}

Result<std::vector<VariantGetResult>> Client::GetBestVariants(std::span<const ChunkKey> content_keys,
                                                              std::span<const ChunkKey> prompt_context,
                                                              std::span<const std::span<std::byte>> dests) {
  if (content_keys.size() != dests.size()) return InvalidArgument("GetBestVariants needs one destination per key");
  if (content_keys.empty()) return InvalidArgument("GetBestVariants of no keys");
  v1::GetRequest request;
  *request.mutable_context() = impl_->context;
  for (const ChunkKey& k : content_keys) request.add_keys(KeyToWire(k));
  for (const ChunkKey& k : prompt_context) request.add_variant_context(KeyToWire(k));
  request.set_select_variant(true);
  request.set_decode_to_raw(options_.server_decode);
  const codec::DecodeOptions decode = DecodeOptions();
  std::vector<v1::ChunkHeader> headers;
  auto results = WithRetry(options_, [&] {
    return RunGetStream(impl_->channel.get(), impl_->get_method, options_, request, content_keys, dests, &decode,
                        &headers);
  });
  if (!results.ok()) return results.status();
  std::vector<VariantGetResult> out(content_keys.size());
  for (size_t i = 0; i < out.size(); ++i) {
    out[i].chunk = (*results)[i];
    if (!out[i].chunk.found) continue;
    v1::ChunkHeader& h = headers[i];
    auto key = ChunkKey::FromBytes(h.variant_key());
    if (!key.ok()) return Internal("server answered content key " + content_keys[i].ToHex() + " without a variant key");
    out[i].variant_key = *key;
    out[i].context_match = h.context_match();
    out[i].reuse = std::move(*h.mutable_reuse());
    out[i].group_token_context_attention.assign(h.group_token_context_attention().begin(),
                                                h.group_token_context_attention().end());
    out[i].group_context_impact = h.group_context_impact();
  }
  return out;
}

namespace {

// Runs one unary RPC with the client's deadline and retry policy.
template <typename Request, typename Response>
Result<Response> CallUnary(const ClientOptions& o, v1::KvTier::Stub* stub,
                           grpc::Status (v1::KvTier::Stub::*method)(grpc::ClientContext*, const Request&, Response*),
                           const Request& request) {
  return WithRetry(o, [&]() -> Result<Response> {
    grpc::ClientContext ctx;
    PrepareContext(o, &ctx);
    Response response;
    const grpc::Status status = (stub->*method)(&ctx, request, &response);
    if (!status.ok()) return FromGrpc(status);
    return response;
  });
}

template <typename Request>
Request KeysRequest(const v1::RequestContext& context, std::span<const ChunkKey> keys) {
  Request request;
  *request.mutable_context() = context;
  for (const ChunkKey& k : keys) request.add_keys(WireKey(k));
  return request;
}

}  // namespace

Result<LookupResult> Client::Lookup(std::span<const ChunkKey> keys, std::chrono::milliseconds lease) {
  auto request = KeysRequest<v1::LookupRequest>(impl_->context, keys);
  request.set_lease_ttl_ms(static_cast<uint32_t>(std::max<int64_t>(0, lease.count())));
  auto response = CallUnary(options_, impl_->stub.get(), &v1::KvTier::Stub::Lookup, request);
  if (!response.ok()) return response.status();
  LookupResult out;
  out.leading_hits = response->leading_hits();
  out.lease_ttl_ms = response->lease_ttl_ms();
  for (int t : response->tiers()) out.tiers.push_back(static_cast<uint8_t>(t));
  return out;
}

Result<std::vector<bool>> Client::Exists(std::span<const ChunkKey> keys) {
  auto response = CallUnary(options_, impl_->stub.get(), &v1::KvTier::Stub::Exists,
                            KeysRequest<v1::ExistsRequest>(impl_->context, keys));
  if (!response.ok()) return response.status();
  return std::vector<bool>(response->exists().begin(), response->exists().end());
}

Result<uint32_t> Client::Delete(std::span<const ChunkKey> keys) {
  auto response = CallUnary(options_, impl_->stub.get(), &v1::KvTier::Stub::Delete,
                            KeysRequest<v1::DeleteRequest>(impl_->context, keys));
  if (!response.ok()) return response.status();
  return response->deleted();
}

Result<v1::StatsResponse> Client::Stats() {
  return CallUnary(options_, impl_->stub.get(), &v1::KvTier::Stub::Stats, v1::StatsRequest());
}

Status Client::CheckHealth() {
  grpc::ClientContext ctx;
  PrepareContext(options_, &ctx);
  const grpc::internal::RpcMethod method("/grpc.health.v1.Health/Check", grpc::internal::RpcMethod::NORMAL_RPC,
                                         impl_->channel);
  grpc::Slice empty("");
  const grpc::ByteBuffer request(&empty, 1);  // HealthCheckRequest{service: ""} is the empty message
  grpc::ByteBuffer response;
  const grpc::Status status = grpc::internal::BlockingUnaryCall(impl_->channel.get(), method, &ctx, request, &response);
  if (!status.ok()) return FromGrpc(status);
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (response.Dump(&slices).ok()) {
    for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  // HealthCheckResponse{status: SERVING} is field 1, varint 1.
  if (bytes != std::string("\x08\x01", 2)) return Unavailable("server is not serving (health check)");
  return Status::Ok();
}

Result<v1::LocalInfoResponse> Client::LocalInfo() {
  return CallUnary(options_, impl_->stub.get(), &v1::KvTier::Stub::LocalInfo, v1::LocalInfoRequest());
}

Result<uint64_t> Client::PutProfile(std::string_view name, const codec::ModelProfile& profile) {
  v1::PutProfileRequest request;
  *request.mutable_context() = impl_->context;
  request.set_name(std::string(name));
  const std::span<const std::byte> bytes = profile.serialized();
  request.set_profile(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  auto response = CallUnary(options_, impl_->stub.get(), &v1::KvTier::Stub::PutProfile, request);
  if (!response.ok()) return response.status();
  if (response->profile_id() != profile.id()) {
    return Internal("server stored the profile under another id than its bytes hash to");
  }
  auto copy = codec::ModelProfile::Deserialize(bytes);
  if (copy.ok()) {
    std::lock_guard lock(impl_->profiles_mu);
    impl_->profiles.emplace(profile.id(), std::make_unique<codec::ModelProfile>(std::move(copy).value()));
  }
  return profile.id();
}

Result<std::unique_ptr<codec::ModelProfile>> Client::GetProfile(std::string_view name) {
  if (name.empty()) return InvalidArgument("GetProfile needs a name");
  return FetchProfile(name, 0);
}

Result<std::unique_ptr<codec::ModelProfile>> Client::GetProfileById(uint64_t id) { return FetchProfile("", id); }

Result<std::unique_ptr<codec::ModelProfile>> Client::FetchProfile(std::string_view name, uint64_t id) {
  v1::GetProfileRequest request;
  *request.mutable_context() = impl_->context;
  request.set_name(std::string(name));
  request.set_profile_id(id);
  auto response = CallUnary(options_, impl_->stub.get(), &v1::KvTier::Stub::GetProfile, request);
  if (!response.ok()) return response.status();
  auto profile = codec::ModelProfile::Deserialize(AsBytes(response->profile()));
  if (!profile.ok()) return DataLoss("server sent a profile that does not parse: " + profile.status().message());
  if (profile->id() != response->profile_id() || (id != 0 && profile->id() != id)) {
    return DataLoss("server sent a profile whose bytes do not hash to the id asked for");
  }
  return std::make_unique<codec::ModelProfile>(std::move(profile).value());
}

const codec::ModelProfile* Client::ResolveProfile(uint64_t id) {
  {
    std::lock_guard lock(impl_->profiles_mu);
    auto it = impl_->profiles.find(id);
    if (it != impl_->profiles.end()) return it->second.get();
  }
  auto fetched = GetProfileById(id);
  if (!fetched.ok()) return nullptr;  // the decoder reports the id as unknown
  std::lock_guard lock(impl_->profiles_mu);
  return impl_->profiles.emplace(id, std::move(fetched).value()).first->second.get();
}

codec::DecodeOptions Client::DecodeOptions() {
  return {[this](uint64_t id) { return ResolveProfile(id); }, options_.encode.executor};
}

std::future<Result<PutResult>> Client::PutAsync(const ChunkKey& key, std::span<const uint32_t> token_ids,
                                                std::span<const std::byte> kv, const PutOptions& options) {
  return impl_->pool.Submit([=, this] { return Put(key, token_ids, kv, options); });
}

std::future<Result<GetResult>> Client::GetAsync(const ChunkKey& key, std::span<std::byte> dest,
                                                std::span<const uint32_t> expected_tokens) {
  return impl_->pool.Submit([=, this] { return Get(key, dest, expected_tokens); });
}

std::future<Result<LookupResult>> Client::LookupAsync(std::vector<ChunkKey> keys, std::chrono::milliseconds lease) {
  return impl_->pool.Submit([keys = std::move(keys), lease, this] { return Lookup(keys, lease); });
}

Result<std::unique_ptr<GpuChannel>> Client::OpenGpuChannel(gpu::PeerLinkKind link, std::chrono::milliseconds timeout) {
  auto state =
      GpuChannel::State::Open(*impl_->stub, options_.bearer_token, impl_->context, link, timeout, options_.deadline);
  if (!state.ok()) return state.status();
  return std::unique_ptr<GpuChannel>(new GpuChannel(std::move(state).value()));
}

}  // namespace kvtier
