#include "kvtier/kvstore/service.h"

#include <algorithm>
#include <vector>

#include "get_reactor.h"
#include "wire_keys.h"
#include "kvtier/api/convert.h"
#include "variant_proto.h"

namespace kvtier {
namespace {

// Most content keys a variant-selecting get may name as the new prompt.
constexpr size_t kMaxVariantContext = 65536;

std::span<const uint32_t> TokensOf(const google::protobuf::RepeatedField<uint32_t>& ids) {
  return {ids.data(), static_cast<size_t>(ids.size())};
}

std::span<const std::byte> BytesOf(const std::string& s) { return AsBytes(s); }

// The `authorization` metadata of a call; empty when absent.
std::string_view AuthorizationOf(const grpc::ServerContextBase& ctx) {
  const auto& metadata = ctx.client_metadata();
  auto it = metadata.find("authorization");
  return it == metadata.end() ? std::string_view() : std::string_view(it->second.data(), it->second.size());
}

}  // namespace

Status ServiceOptions::Validate() const {
  if (max_frame_bytes < 4096 || max_frame_bytes > (64ull << 20)) {
    return InvalidArgument("max_frame_bytes must be in [4096, 64 MiB]");
  }
  if (gpu_link_timeout_ms == 0) return InvalidArgument("gpu_tier.link_timeout_ms must be > 0");
  return Status::Ok();
}

KvTierService::KvTierService(Store* store, Metrics* metrics, ServiceOptions options, const Authorizer* auth)
    : store_(store), metrics_(metrics), options_(options), auth_(auth), started_(std::chrono::steady_clock::now()) {}

template <typename Fn>
grpc::Status KvTierService::Timed(Op op, Fn&& fn) {
  const auto start = std::chrono::steady_clock::now();
  const Status status = fn();
  Observe(op, start, status);
  return ToGrpc(status);
}

void KvTierService::Observe(Op op, std::chrono::steady_clock::time_point start, const Status& status) {
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (metrics_ != nullptr) metrics_->ObserveRequest(op, status.code(), seconds);
}

Result<Scope> KvTierService::ScopeOf(const grpc::ServerContextBase& ctx, const v1::RequestContext& context,
                                     Access access, bool for_write) {
  if (auth_ != nullptr) KVTIER_RETURN_IF_ERROR(auth_->Check(AuthorizationOf(ctx), context.namespace_(), access));
  if (!context.has_fingerprint()) return InvalidArgument("request context has no model fingerprint");
  return store_->OpenScope(context.namespace_(), FromProto(context.fingerprint()), for_write);
}

grpc::Status KvTierService::Put(grpc::ServerContext* ctx, grpc::ServerReader<v1::PutRequest>* reader,
                                v1::PutResponse* response) {
  return Timed(Op::kPut, [&] { return DoPut(ctx, reader, response); });
}

Status KvTierService::DoPut(grpc::ServerContext* ctx, grpc::ServerReader<v1::PutRequest>* reader,
                            v1::PutResponse* response) {
  v1::PutRequest msg;
  PendingPut pending;
  Scope scope;
  std::string scope_namespace;
  int chunks = 0;
  CodecId pending_codec = CodecId::kRaw;
  while (reader->Read(&msg)) {
    if (msg.has_header()) {
      if (pending.active()) {
        return InvalidArgument("header for a new chunk arrived after " + std::to_string(pending.received_bytes()) +
                               " of " + std::to_string(pending.expected_bytes()) + " payload bytes of chunk " +
                               pending.key().ToHex());
      }
      const v1::PutHeader& h = msg.header();
      auto key = ChunkKey::FromBytes(h.key());
      if (!key.ok()) return InvalidArgument("header.key: " + key.status().message());
      // Streams usually carry many chunks of one namespace and model: resolve the scope once.
      if (chunks == 0 || h.context().namespace_() != scope_namespace ||
          FromProto(h.context().fingerprint()) != scope.fingerprint) {
        auto s = ScopeOf(*ctx, h.context(), Access::kWrite, /*for_write=*/true);
        if (!s.ok()) return s.status();
        scope = std::move(s).value();
        scope_namespace = h.context().namespace_();
      }
      PutSpec spec;
      spec.key = *key;
      spec.token_ids = TokensOf(h.token_ids());
      spec.codec = static_cast<CodecId>(h.codec() >= 0 && h.codec() < 256 ? h.codec() : 255);
      spec.payload_bytes = h.payload_bytes();
      spec.checksum = h.checksum();
      spec.base_position = h.base_position();
      spec.pin = h.pin();
      spec.prefer_tier = static_cast<TierKind>(h.prefer_tier() >= 0 && h.prefer_tier() < 256 ? h.prefer_tier() : 255);
      if (h.has_reuse()) {
        auto meta = VariantMetaFromProto(h.reuse());
        if (!meta.ok()) return meta.status();
        spec.variant = std::move(meta).value();
      }
      auto begun = store_->BeginPut(scope, spec);
      if (!begun.ok()) return begun.status();
      pending = std::move(begun).value();
      pending_codec = spec.codec;
      ++chunks;
    } else if (msg.msg_case() == v1::PutRequest::kData) {
      if (!pending.active()) return InvalidArgument("data frame before any chunk header");
      const std::string& data = msg.data();
      if (data.size() > options_.max_frame_bytes) {
        return InvalidArgument("frame of " + std::to_string(data.size()) + " bytes exceeds max_frame_bytes " +
                               std::to_string(options_.max_frame_bytes));
      }
      KVTIER_RETURN_IF_ERROR(pending.Append(BytesOf(data)));
    } else {
      return InvalidArgument("put message carries neither a header nor data");
    }
    if (pending.active() && pending.complete()) {
      const ChunkKey key = pending.key();
      const uint64_t bytes = pending.expected_bytes();
      auto outcome = pending.Commit();
      pending = PendingPut();
      if (!outcome.ok()) return outcome.status();
      if (metrics_ != nullptr && !outcome->already_present) {
        metrics_->AddCodecBytes(CodecDirection::kIn, static_cast<uint8_t>(pending_codec), bytes);
      }
      v1::PutResult* result = response->add_results();
      result->set_key(KeyToWire(key));
      result->set_already_present(outcome->already_present);
      result->set_tier(static_cast<v1::Tier>(outcome->tier));
      result->set_variant_admitted(outcome->variant_admitted);
    }
  }
  if (ctx->IsCancelled()) return Cancelled("put stream cancelled by the client");
  if (pending.active()) {
    return InvalidArgument("stream ended after " + std::to_string(pending.received_bytes()) + " of " +
                           std::to_string(pending.expected_bytes()) + " payload bytes of chunk " +
                           pending.key().ToHex() + "; nothing of it was stored");
  }
  if (chunks == 0) return InvalidArgument("put stream carried no chunk");
  return Status::Ok();
}

Result<KvTierService::AcquiredGet> KvTierService::AcquireForGet(const grpc::ServerContextBase& ctx,
                                                                const grpc::ByteBuffer& raw) {
  v1::GetRequest request;
  grpc::ByteBuffer copy(raw);  // shares the slices; Deserialize consumes its argument
  if (!grpc::SerializationTraits<v1::GetRequest>::Deserialize(&copy, &request).ok()) {
    return InvalidArgument("get request does not parse");
  }
  auto scope = ScopeOf(ctx, request.context(), Access::kRead, /*for_write=*/false);
  if (!scope.ok()) return scope.status();
  auto keys = KeysOf(request.keys());
  if (!keys.ok()) return keys.status();
  KVTIER_RETURN_IF_ERROR(store_->CheckBatch(keys->size()));
  if (request.expected_tokens_size() != 0 && static_cast<size_t>(request.expected_tokens_size()) != keys->size()) {
    return InvalidArgument("expected_tokens has " + std::to_string(request.expected_tokens_size()) +
                           " entries for " + std::to_string(keys->size()) + " keys");
  }
  // Take every chunk first, so a fingerprint error surfaces before any byte is streamed and the
  // chunks cannot be evicted while they are being sent.
  AcquiredGet out;
  if (request.decode_to_raw()) out.decode_profiles = store_->ProfileResolver(*scope);
  std::vector<ChunkRef>& refs = out.refs;
  refs.reserve(keys->size());
  std::vector<ChunkKey> prompt;
  if (request.select_variant()) {
    if (static_cast<size_t>(request.variant_context_size()) > kMaxVariantContext) {
      return InvalidArgument("variant_context has " + std::to_string(request.variant_context_size()) +
                             " keys; at most " + std::to_string(kMaxVariantContext) + " are allowed");
    }
    for (int i = 0; i < request.variant_context_size(); ++i) {
      auto key = ChunkKey::FromBytes(request.variant_context(i));
      if (!key.ok()) return InvalidArgument("variant_context[" + std::to_string(i) + "]: " + key.status().message());
      prompt.push_back(*key);
    }
  } else if (request.variant_context_size() != 0) {
    return InvalidArgument("variant_context is only meaningful with select_variant");
  }
  // Header fields beyond the chunk's own, allocated only when some key has them (plain gets rarely do).
  std::vector<v1::ChunkHeader>& extras = out.extras;
  auto extra = [&](size_t i) -> v1::ChunkHeader& {
    if (extras.empty()) extras.resize(keys->size());
    return extras[i];
  };
  for (size_t i = 0; i < keys->size(); ++i) {
    const ChunkKey& key = (*keys)[i];
    std::span<const uint32_t> expected;
    if (request.expected_tokens_size() != 0) expected = TokensOf(request.expected_tokens(static_cast<int>(i)).ids());
    if (!request.select_variant()) {
      auto ref = store_->Get(*scope, key, expected);
      if (!ref.ok()) return ref.status();
      if (*ref) {
        if (auto meta = store_->VariantOf(*scope, key)) VariantMetaToProto(*meta, extra(i).mutable_reuse());
      }
      refs.push_back(std::move(ref).value());
      continue;
    }
    // The new context of a chunk is what precedes its first occurrence in the prompt.
    const size_t before = std::find(prompt.begin(), prompt.end(), key) - prompt.begin();
    auto choice = store_->SelectVariant(*scope, key, std::span<const ChunkKey>(prompt).first(before), expected);
    if (!choice.ok()) return choice.status();
    if (metrics_ != nullptr) metrics_->CountVariantSelection(static_cast<bool>(choice->ref));
    if (choice->ref) {
      v1::ChunkHeader& h = extra(i);
      h.set_variant_key(KeyToWire(choice->variant_key));
      VariantMetaToProto(*choice->meta, h.mutable_reuse());
      h.set_context_match(choice->match.score);
      h.mutable_group_token_context_attention()->Add(choice->group.token_context_attention.begin(),
                                                     choice->group.token_context_attention.end());
      h.set_group_context_impact(choice->group.context_impact);
    }
    refs.push_back(std::move(choice->ref));
  }
  return out;
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* KvTierService::Get(grpc::CallbackServerContext* ctx,
                                                               const grpc::ByteBuffer* request) {
  const auto start = std::chrono::steady_clock::now();
  auto acquired = AcquireForGet(*ctx, *request);
  auto* reactor = new GetReactor(metrics_, options_.max_frame_bytes, start);
  if (!acquired.ok()) reactor->Fail(acquired.status());
  else reactor->Start(std::move(acquired->refs), std::move(acquired->decode_profiles), std::move(acquired->extras));
  return reactor;
}

grpc::Status KvTierService::Lookup(grpc::ServerContext* ctx, const v1::LookupRequest* request,
                                   v1::LookupResponse* response) {
  return Timed(Op::kLookup, [&]() -> Status {
    auto scope = ScopeOf(*ctx, request->context(), Access::kRead, /*for_write=*/false);
    if (!scope.ok()) return scope.status();
    auto keys = KeysOf(request->keys());
    if (!keys.ok()) return keys.status();
    std::vector<TierKind> tiers;
    auto leading = store_->Lookup(*scope, *keys, request->lease_ttl_ms(), &tiers);
    if (!leading.ok()) return leading.status();
    response->set_leading_hits(*leading);
    for (TierKind t : tiers) response->add_tiers(static_cast<v1::Tier>(t));
    response->set_lease_ttl_ms(std::min(request->lease_ttl_ms(), store_->options().max_lease_ttl_ms));
    return Status::Ok();
  });
}

grpc::Status KvTierService::Exists(grpc::ServerContext* ctx, const v1::ExistsRequest* request,
                                   v1::ExistsResponse* response) {
  return Timed(Op::kExists, [&]() -> Status {
    auto scope = ScopeOf(*ctx, request->context(), Access::kRead, /*for_write=*/false);
    if (!scope.ok()) return scope.status();
    auto keys = KeysOf(request->keys());
    if (!keys.ok()) return keys.status();
    auto exists = store_->Exists(*scope, *keys);
    if (!exists.ok()) return exists.status();
    for (bool e : *exists) response->add_exists(e);
    return Status::Ok();
  });
}

grpc::Status KvTierService::Delete(grpc::ServerContext* ctx, const v1::DeleteRequest* request,
                                   v1::DeleteResponse* response) {
  return Timed(Op::kDelete, [&]() -> Status {
    auto scope = ScopeOf(*ctx, request->context(), Access::kWrite, /*for_write=*/false);
    if (!scope.ok()) return scope.status();
    auto keys = KeysOf(request->keys());
    if (!keys.ok()) return keys.status();
    auto deleted = store_->Delete(*scope, *keys);
    if (!deleted.ok()) return deleted.status();
    response->set_deleted(*deleted);
    return Status::Ok();
  });
}

grpc::Status KvTierService::LocalInfo(grpc::ServerContext* ctx, const v1::LocalInfoRequest*,
                                      v1::LocalInfoResponse* response) {
  return Timed(Op::kLocalInfo, [&]() -> Status {
    if (auth_ != nullptr) KVTIER_RETURN_IF_ERROR(auth_->CheckAnyToken(AuthorizationOf(*ctx)));
    *response = local_info_;
    return Status::Ok();
  });
}

grpc::Status KvTierService::Stats(grpc::ServerContext* ctx, const v1::StatsRequest*, v1::StatsResponse* response) {
  return Timed(Op::kStats, [&]() -> Status {
    if (auth_ != nullptr) KVTIER_RETURN_IF_ERROR(auth_->CheckAnyToken(AuthorizationOf(*ctx)));
    const StoreStats stats = store_->Stats();
    response->set_version(KVTIER_VERSION);
    response->set_uptime_seconds(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_).count()));
    for (const TierSnapshot& t : stats.tiers) {
      v1::TierStats* pb = response->add_tiers();
      pb->set_tier(static_cast<v1::Tier>(t.kind));
      pb->set_capacity_bytes(t.capacity_bytes);
      pb->set_used_bytes(t.used_bytes);
      pb->set_chunks(t.chunks);
      pb->set_pinned_chunks(t.pinned_chunks);
      pb->set_hits(t.hits);
      pb->set_evictions(t.evictions);
    }
    response->set_misses(stats.misses);
    response->set_checksum_failures(stats.checksum_failures);
    response->set_token_mismatches(stats.token_mismatches);
    response->set_namespaces(stats.namespaces);
    response->set_max_chunk_bytes(store_->options().max_chunk_bytes);
    response->set_max_frame_bytes(options_.max_frame_bytes);
    response->set_max_batch(store_->options().max_batch);
    return Status::Ok();
  });
}

grpc::Status KvTierService::PutProfile(grpc::ServerContext* ctx, const v1::PutProfileRequest* request,
                                       v1::PutProfileResponse* response) {
  return Timed(Op::kPutProfile, [&]() -> Status {
    auto scope = ScopeOf(*ctx, request->context(), Access::kWrite, /*for_write=*/true);
    if (!scope.ok()) return scope.status();
    auto stored = store_->PutProfile(*scope, request->name(), BytesOf(request->profile()));
    if (!stored.ok()) return stored.status();
    response->set_profile_id(stored->profile->id());
    response->set_already_present(stored->already_present);
    return Status::Ok();
  });
}

grpc::Status KvTierService::GetProfile(grpc::ServerContext* ctx, const v1::GetProfileRequest* request,
                                       v1::GetProfileResponse* response) {
  return Timed(Op::kGetProfile, [&]() -> Status {
    auto scope = ScopeOf(*ctx, request->context(), Access::kRead, /*for_write=*/false);
    if (!scope.ok()) return scope.status();
    if (request->name().empty() && request->profile_id() == 0) {
      return InvalidArgument("get profile needs a name or a profile id");
    }
    auto stored = store_->GetProfile(*scope, request->name(), request->profile_id());
    if (!stored.ok()) return stored.status();
    const std::span<const std::byte> bytes = stored->profile->serialized();
    response->set_name(stored->name);
    response->set_profile_id(stored->profile->id());
    response->set_profile(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return Status::Ok();
  });
}

}  // namespace kvtier
