// PeerLink ids, the join by kind, and the loopback twin (both ends in one process).
#include "kvtier/gpu/peer_link.h"

#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "peer_link_internal.h"

namespace kvtier::gpu {
namespace {

using Name = std::array<std::byte, 128>;

// The two ends of one loopback link: a queue of messages towards each rank.
struct LoopbackPair {
  std::mutex mu;
  std::condition_variable changed;
  bool joined[2] = {false, false};
  bool gone[2] = {false, false};  // that end was destroyed
  std::deque<std::vector<std::byte>> to[2];
};

// Links being joined, by name; a pair leaves once both ends joined (or the joiner gave up).
struct Registry {
  std::mutex mu;
  std::map<Name, std::shared_ptr<LoopbackPair>> pending;
};

Registry& Links() {
  static Registry* registry = new Registry;  // never destroyed: ends may outlive static destruction order
  return *registry;
}

class LoopbackLink final : public PeerLink {
 public:
  LoopbackLink(std::shared_ptr<LoopbackPair> pair, int rank, std::chrono::milliseconds patience)
      : pair_(std::move(pair)), rank_(rank), patience_(patience) {}
  ~LoopbackLink() override {
    std::lock_guard lock(pair_->mu);
    pair_->gone[rank_] = true;
    pair_->changed.notify_all();
  }

  PeerLinkKind kind() const override { return PeerLinkKind::kLoopback; }

  Status Send(const void* data, size_t bytes) override {
    if (!broken_.ok()) return broken_;
    if (data == nullptr && bytes > 0) return Break(InvalidArgument("loopback link: Send of a null buffer"));
    std::lock_guard lock(pair_->mu);
    if (pair_->gone[1 - rank_]) return Break(Unavailable("loopback link: the peer closed the link"));
    const auto* p = static_cast<const std::byte*>(data);
    pair_->to[1 - rank_].emplace_back(p, p + bytes);
    pair_->changed.notify_all();
    return Status::Ok();
  }

  // The twin runs at once: waits (at most the join's timeout) for the matching Send.
  Status Recv(void* data, size_t bytes) override {
    if (!broken_.ok()) return broken_;
    if (data == nullptr && bytes > 0) return Break(InvalidArgument("loopback link: Recv into a null buffer"));
    std::unique_lock lock(pair_->mu);
    auto& queue = pair_->to[rank_];
    const bool arrived = pair_->changed.wait_for(lock, patience_, [&] { return !queue.empty() || pair_->gone[1 - rank_]; });
    if (queue.empty()) {
      return Break(Unavailable(arrived ? "loopback link: the peer closed the link"
                                       : "loopback link: nothing arrived within " + std::to_string(patience_.count()) +
                                             " ms"));
    }
    std::vector<std::byte> message = std::move(queue.front());
    queue.pop_front();
    lock.unlock();
    if (message.size() != bytes) {
      return Break(Internal("loopback link: received " + std::to_string(message.size()) + " bytes where " +
                            std::to_string(bytes) + " were expected"));
    }
    if (bytes > 0) std::memcpy(data, message.data(), bytes);
    return Status::Ok();
  }

  Status After(StreamHandle) override { return broken_; }
  Status Wait(std::chrono::milliseconds) override { return broken_; }
  void Abort() override {
    if (broken_.ok()) (void)Break(Unavailable("aborted by its owner"));
    std::lock_guard lock(pair_->mu);
    pair_->gone[rank_] = true;  // the peer's pending and later operations fail at once
    pair_->changed.notify_all();
  }

 private:
  Status Break(Status s) {
    broken_ = Unavailable("loopback link broken: " + s.ToString());
    return s;
  }

  std::shared_ptr<LoopbackPair> pair_;
  const int rank_;
  const std::chrono::milliseconds patience_;
  Status broken_;
};

Result<std::unique_ptr<PeerLink>> JoinLoopback(const Name& name, int rank, std::chrono::milliseconds timeout,
                                               const std::function<bool()>& give_up) {
  Registry& registry = Links();
  std::shared_ptr<LoopbackPair> pair;
  {
    std::lock_guard lock(registry.mu);
    auto& slot = registry.pending[name];
    if (slot == nullptr) slot = std::make_shared<LoopbackPair>();
    pair = slot;
  }
  std::unique_lock lock(pair->mu);
  if (pair->joined[rank]) return InvalidArgument("loopback link: rank " + std::to_string(rank) + " joined twice");
  pair->joined[rank] = true;
  pair->changed.notify_all();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool both = false;
  bool gave_up = false;
  while (!(both = pair->joined[1 - rank]) && std::chrono::steady_clock::now() < deadline) {
    if (give_up && give_up()) {
      gave_up = true;
      break;
    }
    pair->changed.wait_for(lock, std::chrono::milliseconds(10));
  }
  if (!both) pair->joined[rank] = false;
  lock.unlock();
  {
    std::lock_guard registry_lock(registry.mu);
    auto it = registry.pending.find(name);
    if (it != registry.pending.end() && it->second == pair) registry.pending.erase(it);
  }
  if (gave_up) return Unavailable("loopback link: the join was given up (the peer went away)");
  if (!both) {
    return Unavailable("loopback link: the peer did not join within " + std::to_string(timeout.count()) + " ms");
  }
  return std::unique_ptr<PeerLink>(new LoopbackLink(std::move(pair), rank, timeout));
}

}  // namespace

const char* PeerLinkKindName(PeerLinkKind kind) {
  switch (kind) {
    case PeerLinkKind::kNccl:
      return "nccl";
    case PeerLinkKind::kLoopback:
      return "loopback";
  }
  return "unknown";
}

Result<PeerLinkId> NewPeerLinkId(PeerLinkKind kind) {
  PeerLinkId id;
  id.kind = kind;
  if (kind == PeerLinkKind::kNccl) {
    auto nccl = NcclCreateUniqueId();
    if (!nccl.ok()) return nccl.status();
    id.bytes = nccl->bytes;
    return id;
  }
  if (kind != PeerLinkKind::kLoopback) return InvalidArgument("unknown peer link kind");
  std::random_device seed;
  std::mt19937_64 random(seed());
  for (size_t i = 0; i < id.bytes.size(); i += 8) {
    const uint64_t v = random();
    std::memcpy(id.bytes.data() + i, &v, 8);
  }
  return id;
}

Result<std::unique_ptr<PeerLink>> JoinPeerLink(const PeerLinkId& id, int rank, int device,
                                               std::chrono::milliseconds timeout,
                                               const std::function<bool()>& give_up) {
  if (rank != 0 && rank != 1) return InvalidArgument("peer link: rank must be 0 or 1, not " + std::to_string(rank));
  switch (id.kind) {
    case PeerLinkKind::kNccl:
      return internal::JoinNcclLink(NcclUniqueId{id.bytes}, rank, device, timeout, give_up);
    case PeerLinkKind::kLoopback:
      return JoinLoopback(id.bytes, rank, timeout, give_up);
  }
  return InvalidArgument("unknown peer link kind " + std::to_string(static_cast<int>(id.kind)));
}

}  // namespace kvtier::gpu
