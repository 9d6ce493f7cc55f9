#include "local_session.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "kvtier/api/convert.h"
#include "kvtier/kvstore/auth.h"
#include "kvtier/kvstore/metrics.h"

namespace kvtier {
namespace {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

uint64_t IdOf(uint32_t generation, uint32_t slot) { return uint64_t{generation} << 32 | slot; }

// Takes a free slot of `slots` (growing it when none is free) and bumps its generation.
template <typename T>
uint32_t TakeSlot(std::vector<T>& slots, std::vector<uint32_t>& free) {
  uint32_t slot;
  if (!free.empty()) {
    slot = free.back();
    free.pop_back();
  } else {
    slot = static_cast<uint32_t>(slots.size());
    slots.emplace_back();
  }
  ++slots[slot].generation;
  slots[slot].live = true;
  return slot;
}

// The slot an id names, if it is live and of the current generation.
template <typename T>
T* FindSlot(std::vector<T>& slots, uint64_t id) {
  const auto slot = static_cast<uint32_t>(id);
  if (slot >= slots.size() || !slots[slot].live || slots[slot].generation != static_cast<uint32_t>(id >> 32)) {
    return nullptr;
  }
  return &slots[slot];
}

}  // namespace

LocalSession::~LocalSession() {
  for (uint32_t i = 0; i < leases_.size(); ++i) {
    if (leases_[i].live) EndLease(leases_[i], i);
  }
  AfterSend();
}

void LocalSession::AfterSend() {
  if (pending_close_fd_ >= 0) close(pending_close_fd_);
  pending_close_fd_ = -1;
}

void LocalSession::Handle(const v1::LocalRequest& request, v1::LocalResponse* response, std::vector<int>* fds) {
  const auto start = std::chrono::steady_clock::now();
  Status s;
  Op op = Op::kGet;
  switch (request.msg_case()) {
    case v1::LocalRequest::kHello:
      op = Op::kLocalInfo;
      s = Hello(request.hello(), response->mutable_hello(), fds);
      break;
    case v1::LocalRequest::kGet:
      s = Get(request.get(), response->mutable_get());
      break;
    case v1::LocalRequest::kRelease:
      s = Release(request.release(), response->mutable_release());
      break;
    case v1::LocalRequest::kReserve:
      op = Op::kPut;
      s = Reserve(request.reserve(), response->mutable_reserve());
      break;
    case v1::LocalRequest::kCommit:
      op = Op::kPut;
      s = Commit(request.commit(), response->mutable_commit());
      break;
    case v1::LocalRequest::kAbort:
      op = Op::kPut;
      s = Abort(request.abort());
      break;
    default:
      s = InvalidArgument("local request carries no known message");
  }
  if (!s.ok()) {
    response->Clear();
    fds->clear();
    AfterSend();
  }
  response->set_code(static_cast<int>(s.code()));
  response->set_message(s.message());
  // Hello and Release are bookkeeping; a get or put is counted once, when its data moves.
  const bool counted = request.msg_case() == v1::LocalRequest::kGet || request.msg_case() == v1::LocalRequest::kCommit;
  if (env_.metrics != nullptr && (counted || !s.ok())) {
    env_.metrics->ObserveRequest(op, s.code(),
                                 std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
}

Status LocalSession::Hello(const v1::LocalHello& hello, v1::LocalHelloReply* reply, std::vector<int>* fds) {
  if (greeted_) return FailedPrecondition("this connection already said hello");
  if (hello.instance_id() != 0 && hello.instance_id() != env_.instance_id) {
    return FailedPrecondition("this socket belongs to another server instance than the one asked for");
  }
  const std::string& name_space = hello.context().namespace_();
  if (env_.auth != nullptr) {
    const std::string authorization = hello.bearer_token().empty() ? "" : "Bearer " + hello.bearer_token();
    KVTIER_RETURN_IF_ERROR(env_.auth->Check(authorization, name_space, Access::kRead));
    can_write_ = env_.auth->Check(authorization, name_space, Access::kWrite).ok();
  } else {
    can_write_ = true;
  }
  if (!hello.context().has_fingerprint()) return InvalidArgument("hello has no model fingerprint");
  auto scope = env_.store->OpenScope(name_space, FromProto(hello.context().fingerprint()), /*for_write=*/false);
  if (!scope.ok()) return scope.status();
  arena_ = env_.store->SharedArenaOf(name_space);
  if (arena_ == nullptr) {
    return PermissionDenied("namespace '" + name_space +
                            "' does not allow shared memory (server config shared_memory.namespaces)");
  }
  auto read_only = arena_->ReadOnlyFd();
  if (!read_only.ok()) return read_only.status();
  pending_close_fd_ = *read_only;
  fds->push_back(*read_only);
  const uint64_t window_bytes = env_.options->put_window_bytes;
  if (hello.want_put_window() && can_write_ && window_bytes > 0) {
    auto window = HostArena::Create({window_bytes, /*try_huge_pages=*/false, /*prefault=*/true,
                                     /*shareable=*/true, "kvtier-put-window"});
    if (!window.ok()) return window.status();
    window_ = std::move(window).value();
    window_extents_ = std::make_unique<ExtentAllocator>(window_.size());
    fds->push_back(window_.fd());
    reply->set_window_bytes(window_.size());
  }
  greeted_ = true;
  name_space_ = name_space;
  scope_ = std::move(scope).value();
  reply->set_instance_id(env_.instance_id);
  reply->set_arena_bytes(arena_->size());
  reply->set_max_lease_ms(env_.max_lease_ms);
  if (auto exported = env_.store->GpuIpcExport(); exported.ok()) {
    reply->set_gpu_ipc_handle(exported->exported.handle);
    reply->set_gpu_pci_bus_id(exported->exported.pci_bus_id);
    reply->set_gpu_arena_bytes(exported->bytes);
    gpu_exported_ = true;
  }
  return Status::Ok();
}

Status LocalSession::Get(const v1::LocalGet& get, v1::LocalGetReply* reply) {
  if (!greeted_) return FailedPrecondition("say hello first");
  KVTIER_RETURN_IF_ERROR(env_.store->CheckBatch(static_cast<size_t>(get.keys_size())));
  const uint32_t max_leases = env_.options->max_leases_per_connection;
  if (live_leases_ + static_cast<uint64_t>(get.keys_size()) > max_leases) {
    return ResourceExhausted("this connection holds " + std::to_string(live_leases_) + " leases; " +
                             std::to_string(get.keys_size()) + " more would pass max_leases_per_connection " +
                             std::to_string(max_leases) + " (release them)");
  }
  if (scope_.ns_id == 0 || scope_.fp_id == 0) {
    // Nothing of this namespace or model existed at hello; it may by now.
    auto scope = env_.store->OpenScope(name_space_, scope_.fingerprint, /*for_write=*/false);
    if (!scope.ok()) return scope.status();
    scope_ = std::move(scope).value();
  }
  const uint32_t lease_ms = std::min(get.lease_ms() == 0 ? env_.options->default_lease_ms : get.lease_ms(),
                                     env_.max_lease_ms);
  const int64_t deadline = NowNs() + int64_t{lease_ms} * 1000000;
  reply->set_lease_ms(lease_ms);
  for (int i = 0; i < get.keys_size(); ++i) {
    auto key = ChunkKey::FromBytes(get.keys(i));
    if (!key.ok()) return InvalidArgument("keys[" + std::to_string(i) + "]: " + key.status().message());
    std::span<const uint32_t> expected;
    if (i < get.expected_tokens_size()) {
      const auto& ids = get.expected_tokens(i).ids();
      expected = {ids.data(), static_cast<size_t>(ids.size())};
    }
    // The reader verifies the checksum while it copies (one pass over the bytes instead of two).
    auto ref = env_.store->Get(scope_, *key, expected, /*verify_payload=*/false);
    if (!ref.ok()) return ref.status();
    v1::LocalChunk* chunk = reply->add_chunks();
    if (!*ref) continue;
    const std::span<const std::byte> payload = ref->payload();
    if (payload.data() < arena_->data() || payload.data() + payload.size() > arena_->data() + arena_->size()) {
      return Internal("chunk " + key->ToHex() + " is not in its namespace's shared arena");
    }
    const ChunkEntry& e = ref->entry();
    chunk->set_found(true);
    chunk->set_tier(v1::TIER_HOST);
    chunk->set_codec(static_cast<v1::Codec>(e.codec));
    chunk->set_offset(static_cast<uint64_t>(payload.data() - arena_->data()));
    chunk->set_payload_bytes(payload.size());
    chunk->set_checksum(e.checksum);
    chunk->set_num_tokens(e.num_tokens);
    chunk->set_base_position(e.base_position);
    if (env_.metrics != nullptr) env_.metrics->AddCodecBytes(CodecDirection::kOut, e.codec, payload.size());
    const uint32_t slot = TakeSlot(leases_, free_lease_slots_);
    // Only a session told where the GPU arena is can use an offset in it; encoded chunks are parsed on the host.
    if (get.want_gpu() && gpu_exported_ && e.codec == static_cast<uint8_t>(CodecId::kRaw)) {
      if (auto gpu_offset = env_.store->HoldGpuCopy(*ref)) {
        chunk->set_on_gpu(true);
        chunk->set_gpu_offset(*gpu_offset);
        leases_[slot].gpu_held = true;
      }
    }
    leases_[slot].ref = std::move(ref).value();
    leases_[slot].deadline_ns = deadline;
    chunk->set_lease(IdOf(leases_[slot].generation, slot));
    ++live_leases_;
    env_.leases->fetch_add(1, std::memory_order_relaxed);
  }
  return Status::Ok();
}

Status LocalSession::Release(const v1::LocalRelease& release, v1::LocalReleaseReply* reply) {
  uint32_t dropped = 0;
  for (uint64_t id : release.corrupt()) {
    // Only while the lease holds were the bytes the reader hashed really this chunk's.
    if (Lease* lease = FindSlot(leases_, id); lease != nullptr) {
      env_.store->ReportCorrupt(lease->ref);
      ++dropped;
    }
  }
  reply->set_corrupt_dropped(dropped);
  uint32_t expired = 0;
  for (uint64_t id : release.leases()) {
    Lease* lease = FindSlot(leases_, id);
    if (lease == nullptr) {
      ++expired;
      continue;
    }
    EndLease(*lease, static_cast<uint32_t>(id));
  }
  reply->set_expired(expired);
  return Status::Ok();
}

void LocalSession::EndLease(Lease& lease, uint32_t slot) {
  if (lease.gpu_held) env_.store->ReleaseGpuCopy(lease.ref);
  lease.gpu_held = false;
  lease.ref = ChunkRef();
  lease.live = false;
  free_lease_slots_.push_back(slot);
  --live_leases_;
  env_.leases->fetch_sub(1, std::memory_order_relaxed);
}

void LocalSession::ExpireLeases() {
  if (live_leases_ == 0) return;
  const int64_t now = NowNs();
  for (uint32_t i = 0; i < leases_.size(); ++i) {
    if (leases_[i].live && leases_[i].deadline_ns <= now) EndLease(leases_[i], i);
  }
}

int LocalSession::MillisUntilNextExpiry() const {
  if (live_leases_ == 0) return -1;
  int64_t next = INT64_MAX;
  for (const Lease& lease : leases_) {
    if (lease.live) next = std::min(next, lease.deadline_ns);
  }
  const int64_t wait_ns = std::max<int64_t>(0, next - NowNs());
  return static_cast<int>(std::min<int64_t>(wait_ns / 1000000 + 1, 60000));
}

Status LocalSession::Reserve(const v1::LocalReserve& reserve, v1::LocalReserveReply* reply) {
  if (!greeted_) return FailedPrecondition("say hello first");
  if (!can_write_) return PermissionDenied("the token has read-only access to namespace '" + name_space_ + "'");
  if (window_extents_ == nullptr) return FailedPrecondition("this connection has no put window (ask for it in hello)");
  const v1::PutHeader& h = reserve.header();
  auto key = ChunkKey::FromBytes(h.key());
  if (!key.ok()) return InvalidArgument("header.key: " + key.status().message());
  if (h.payload_bytes() == 0 || h.payload_bytes() > window_.size()) {
    return InvalidArgument("payload of " + std::to_string(h.payload_bytes()) + " bytes does not fit the put window of " +
                           std::to_string(window_.size()) + " bytes");
  }
  if (scope_.ns_id == 0 || scope_.fp_id == 0) {
    auto scope = env_.store->OpenScope(name_space_, scope_.fingerprint, /*for_write=*/true);
    if (!scope.ok()) return scope.status();
    scope_ = std::move(scope).value();
  }
  auto exists = env_.store->Exists(scope_, {&*key, 1});
  if (!exists.ok()) return exists.status();
  if ((*exists)[0]) {
    reply->set_already_present(true);
    return Status::Ok();
  }
  auto extent = window_extents_->Allocate(h.payload_bytes());
  if (!extent) {
    return ResourceExhausted("put window full: " + std::to_string(window_extents_->used_bytes()) + " of " +
                             std::to_string(window_.size()) + " bytes reserved by uncommitted puts");
  }
  const uint32_t slot = TakeSlot(reservations_, free_reservation_slots_);
  Reservation& r = reservations_[slot];
  r.extent = *extent;
  r.tokens.assign(h.token_ids().begin(), h.token_ids().end());
  r.spec = PutSpec{};
  r.spec.key = *key;
  r.spec.codec = static_cast<CodecId>(h.codec() >= 0 && h.codec() < 256 ? h.codec() : 255);
  r.spec.payload_bytes = h.payload_bytes();
  r.spec.checksum = h.checksum();
  r.spec.base_position = h.base_position();
  r.spec.pin = h.pin();
  r.spec.prefer_tier = static_cast<TierKind>(h.prefer_tier() >= 0 && h.prefer_tier() < 256 ? h.prefer_tier() : 255);
  reply->set_reservation(IdOf(r.generation, slot));
  reply->set_window_offset(extent->offset);
  return Status::Ok();
}

Result<LocalSession::Reservation*> LocalSession::FindReservation(uint64_t id) {
  Reservation* r = FindSlot(reservations_, id);
  if (r == nullptr) return NotFound("unknown or finished reservation");
  return r;
}

void LocalSession::EndReservation(Reservation& reservation, uint32_t slot) {
  window_extents_->Free(reservation.extent);
  reservation.live = false;
  free_reservation_slots_.push_back(slot);
}

Status LocalSession::Commit(const v1::LocalCommit& commit, v1::LocalCommitReply* reply) {
  auto found = FindReservation(commit.reservation());
  if (!found.ok()) return found.status();
  Reservation& r = **found;
  PutSpec spec = r.spec;
  spec.token_ids = r.tokens;
  Status s;
  auto pending = env_.store->BeginPut(scope_, spec);
  if (pending.ok()) {
    // One copy from the window into the arena; the store hashes the copy it keeps.
    s = pending->Append({window_.data() + r.extent.offset, spec.payload_bytes});
    if (s.ok()) {
      auto outcome = pending->Commit();
      if (outcome.ok()) {
        reply->set_already_present(outcome->already_present);
        reply->set_tier(static_cast<v1::Tier>(outcome->tier));
        if (env_.metrics != nullptr && !outcome->already_present) {
          env_.metrics->AddCodecBytes(CodecDirection::kIn, static_cast<uint8_t>(spec.codec), spec.payload_bytes);
        }
      } else {
        s = outcome.status();
      }
    }
  } else {
    s = pending.status();
  }
  EndReservation(r, static_cast<uint32_t>(commit.reservation()));
  return s;
}

Status LocalSession::Abort(const v1::LocalAbort& abort) {
  auto found = FindReservation(abort.reservation());
  if (!found.ok()) return found.status();
  EndReservation(**found, static_cast<uint32_t>(abort.reservation()));
  return Status::Ok();
}

}  // namespace kvtier
