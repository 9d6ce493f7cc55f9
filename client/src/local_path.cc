#include "local_path.h"

#include <algorithm>
#include <cstring>
#include <fstream>

#include "get_stream.h"
#include "kvtier/api/convert.h"

namespace kvtier {
namespace {

std::string ReadBootId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id;
}

constexpr size_t kMaxIdleChannels = 8;

// Copies `src` into `dst` and hashes what it copied, block by block while each block is still in cache:
// the verification costs a fraction of a second pass over memory. Whether the bytes match `checksum`.
bool CopyVerified(std::span<const std::byte> src, std::byte* dst, uint64_t checksum) {
  constexpr size_t kBlock = 64 << 10;
  ChecksumStream hash;
  for (size_t off = 0; off < src.size(); off += kBlock) {
    const size_t n = std::min(kBlock, src.size() - off);
    std::memcpy(dst + off, src.data() + off, n);
    hash.Update({dst + off, n});
  }
  return hash.Digest() == checksum;
}

// Where GetBatch copies its hits to.
struct CopyTarget {
  std::span<const ChunkKey> keys;
  std::span<const std::span<std::byte>> dests;
  const codec::DecodeOptions* decode;  // null: encoded chunks are copied as stored
};

// Copies (or decodes) every hit out of the arena, hashing what is read (SHM.md: the reader verifies); the
// indices of hits that do not hash to their checksum go into `corrupt`.
Status CopyHits(const CopyTarget& t, std::span<LeasedChunk> chunks, std::vector<size_t>* corrupt) {
  for (size_t j = 0; j < chunks.size(); ++j) {
    LeasedChunk& c = chunks[j];
    const size_t i = c.index;
    bool intact = true;
    if (c.codec != v1::CODEC_RAW && t.decode != nullptr) {
      intact = Checksum64(c.payload) == c.checksum;
      if (intact) KVTIER_RETURN_IF_ERROR(DecodeInto(c.payload, t.dests[i], t.keys[i], *t.decode, c.result));
      c.result.codec = v1::CODEC_RAW;
    } else if (c.payload.size() > t.dests[i].size()) {
      return InvalidArgument("destination of " + std::to_string(t.dests[i].size()) + " bytes is smaller than chunk " +
                             t.keys[i].ToHex() + " of " + std::to_string(c.payload.size()) + " bytes");
    } else {
      intact = CopyVerified(c.payload, t.dests[i].data(), c.checksum);
    }
    if (!intact) corrupt->push_back(j);
  }
  return Status::Ok();
}

}  // namespace

LocalPath::LocalPath(const ClientOptions& options, v1::RequestContext context, InfoFn info)
    : options_(options), context_(std::move(context)), info_(std::move(info)), boot_id_(ReadBootId()) {}

LocalPath::~LocalPath() = default;

LocalPathStats LocalPath::stats() const {
  return {gets_.load(std::memory_order_relaxed), puts_.load(std::memory_order_relaxed),
          fallbacks_.load(std::memory_order_relaxed), expired_.load(std::memory_order_relaxed)};
}

std::string LocalPath::last_fallback_reason() const {
  std::lock_guard lock(mu_);
  return reason_;
}

void LocalPath::Unusable(const Status& why, bool lasting) {
  std::lock_guard lock(mu_);
  server_.reset();
  arena_.reset();
  idle_.clear();
  const auto wait = lasting ? std::max<std::chrono::milliseconds>(options_.local_retry, std::chrono::minutes(1))
                            : options_.local_retry;
  retry_at_ = std::chrono::steady_clock::now() + wait;
  reason_ = why.ToString();
}

std::unique_ptr<LocalChannel> LocalPath::Acquire() {
  std::optional<v1::LocalInfoResponse> server;
  std::shared_ptr<SharedMapping> arena;
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      std::unique_ptr<LocalChannel> channel = std::move(idle_.back());
      idle_.pop_back();
      return channel;
    }
    if (std::chrono::steady_clock::now() < retry_at_) return nullptr;
    server = server_;
    arena = arena_;
  }
  if (!server) {
    auto info = info_();
    if (!info.ok()) {
      // A server from before the shared-memory path does not know LocalInfo: that will not change soon.
      Unusable(info.status(), info.status().code() == StatusCode::kUnimplemented);
      return nullptr;
    }
    if (info->socket_path().empty()) {
      Unusable(FailedPrecondition("the server offers no shared-memory path (shared_memory.socket)"), true);
      return nullptr;
    }
    if (boot_id_.empty() || info->boot_id() != boot_id_) {
      Unusable(FailedPrecondition("the server runs on another host"), true);
      return nullptr;
    }
    server = std::move(info).value();
  }
  LocalChannel::Config config;
  config.socket_path = server->socket_path();
  config.instance_id = server->instance_id();
  config.context = context_;
  config.bearer_token = options_.bearer_token;
  config.timeout_ms = static_cast<int>(options_.deadline.count());
  auto channel = LocalChannel::Open(config, std::move(arena));
  if (!channel.ok()) {
    Unusable(channel.status());
    return nullptr;
  }
  std::lock_guard lock(mu_);
  server_ = std::move(server);
  arena_ = (*channel)->arena();
  return std::move(channel).value();
}

void LocalPath::Return(std::unique_ptr<LocalChannel> channel) {
  if (channel->broken()) {
    Unusable(Unavailable("the local connection broke (server stopped or restarted?)"));
    return;
  }
  std::lock_guard lock(mu_);
  if (idle_.size() < kMaxIdleChannels && channel->arena() == arena_) idle_.push_back(std::move(channel));
}

Result<std::optional<std::vector<GetResult>>> LocalPath::GetBatch(std::span<const ChunkKey> keys,
                                                                  std::span<const std::span<std::byte>> dests,
                                                                  std::span<const std::span<const uint32_t>> expected,
                                                                  const codec::DecodeOptions* decode) {
  // One pointer captured: the sink stays within std::function's inline storage (no allocation per get).
  const CopyTarget target{keys, dests, decode};
  return Visit(keys, expected, [&target](const LeasedArena&, std::span<LeasedChunk> chunks,
                                         std::vector<size_t>* corrupt) { return CopyHits(target, chunks, corrupt); });
}

Result<std::optional<std::vector<GetResult>>> LocalPath::Visit(std::span<const ChunkKey> keys,
                                                               std::span<const std::span<const uint32_t>> expected,
                                                               const LeasedChunkSink& sink, bool want_gpu) {
  using Out = std::optional<std::vector<GetResult>>;
  std::unique_ptr<LocalChannel> channel = Acquire();
  if (channel == nullptr) {
    fallbacks_.fetch_add(1, std::memory_order_relaxed);
    return Out();
  }
  v1::LocalRequest request;
  v1::LocalGet* get = request.mutable_get();
  for (const ChunkKey& key : keys) get->add_keys(KeyToWire(key));
  for (size_t i = 0; i < expected.size(); ++i) {
    get->add_expected_tokens()->mutable_ids()->Assign(expected[i].begin(), expected[i].end());
  }
  get->set_lease_ms(static_cast<uint32_t>(options_.local_lease.count()));
  get->set_want_gpu(want_gpu && !channel->gpu_export().handle.empty());
  auto reply = channel->Call(request);
  if (!reply.ok()) {
    if (!channel->broken()) {
      Return(std::move(channel));
      return reply.status();  // the server's answer to the request itself, as gRPC would give it
    }
    Return(std::move(channel));
    fallbacks_.fetch_add(1, std::memory_order_relaxed);
    return Out();
  }
  const v1::LocalGetReply& chunks = (*reply)->get();
  if (static_cast<size_t>(chunks.chunks_size()) != keys.size()) {
    Unusable(Internal("local get answered " + std::to_string(chunks.chunks_size()) + " of " +
                      std::to_string(keys.size()) + " keys"));
    fallbacks_.fetch_add(1, std::memory_order_relaxed);
    return Out();
  }
  // Hand every hit to the sink while its lease holds, then release them all in one message.
  const std::shared_ptr<SharedMapping> mapping = channel->arena();
  const LeasedArena arena{{mapping->data(), mapping->size()}, mapping, channel->gpu_export().handle,
                          channel->gpu_export().pci_bus_id, channel->gpu_arena_bytes()};
  std::vector<LeasedChunk> hits;
  hits.reserve(keys.size());
  v1::LocalRequest release;
  Status read;
  for (size_t i = 0; i < keys.size(); ++i) {
    const v1::LocalChunk& c = chunks.chunks(static_cast<int>(i));
    if (!c.found()) continue;
    release.mutable_release()->add_leases(c.lease());
    if (c.offset() > arena.bytes.size() || c.payload_bytes() > arena.bytes.size() - c.offset()) {
      read = DataLoss("local get pointed outside the shared arena");
      continue;
    }
    LeasedChunk hit;
    hit.index = i;
    hit.payload = arena.bytes.subspan(c.offset(), c.payload_bytes());
    hit.codec = static_cast<uint8_t>(c.codec());
    hit.checksum = c.checksum();
    hit.result.found = true;
    hit.result.bytes = c.payload_bytes();
    hit.result.num_tokens = c.num_tokens();
    hit.result.base_position = c.base_position();
    hit.result.tier = static_cast<uint8_t>(c.tier());
    hit.result.codec = hit.codec;
    if (c.on_gpu() && c.gpu_offset() <= arena.gpu_arena_bytes &&
        c.payload_bytes() <= arena.gpu_arena_bytes - c.gpu_offset()) {
      hit.gpu_offset = c.gpu_offset();
    }
    hits.push_back(std::move(hit));
  }
  std::vector<size_t> corrupt;
  if (read.ok() && !hits.empty()) read = sink(arena, hits, &corrupt);
  std::vector<GetResult> results(keys.size());
  for (const LeasedChunk& hit : hits) results[hit.index] = hit.result;
  for (size_t j : corrupt) {
    // The server leaves the checksum to the reader (SHM.md): a corrupt chunk is a miss, reported back.
    if (j >= hits.size()) continue;
    results[hits[j].index] = GetResult{};
    release.mutable_release()->add_corrupt(chunks.chunks(static_cast<int>(hits[j].index)).lease());
  }
  uint32_t expired = 0;
  if (release.release().leases_size() > 0) {
    auto released = channel->Call(release);
    if (!released.ok()) {
      // A lost connection also ended the leases, possibly before the reads finished: redo over gRPC.
      Return(std::move(channel));
      fallbacks_.fetch_add(1, std::memory_order_relaxed);
      return Out();
    }
    expired = (*released)->release().expired();
  }
  Return(std::move(channel));
  if (!read.ok() && read.code() != StatusCode::kDataLoss) return read;
  if (expired > 0 || !read.ok()) {
    // Bytes read under an ended lease may belong to another chunk by now: never hand them out.
    if (expired > 0) expired_.fetch_add(1, std::memory_order_relaxed);
    fallbacks_.fetch_add(1, std::memory_order_relaxed);
    return Out();
  }
  gets_.fetch_add(1, std::memory_order_relaxed);
  return Out(std::move(results));
}

Result<std::optional<std::vector<PutResult>>> LocalPath::PutBatch(std::span<const ChunkPut> chunks,
                                                                  std::span<const std::span<const std::byte>> payloads,
                                                                  std::span<const uint64_t> checksums,
                                                                  codec::CodecId codec) {
  using Out = std::optional<std::vector<PutResult>>;
  std::unique_ptr<LocalChannel> channel = Acquire();
  if (channel == nullptr || channel->window() == nullptr) {
    if (channel != nullptr) Return(std::move(channel));  // e.g. a read-only token: puts use gRPC
    fallbacks_.fetch_add(1, std::memory_order_relaxed);
    return Out();
  }
  SharedMapping& window = *channel->window();
  std::vector<PutResult> results(chunks.size());
  v1::LocalRequest request;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const ChunkPut& c = chunks[i];
    if (payloads[i].size() > window.size()) {  // larger than the window: this batch goes over gRPC
      Return(std::move(channel));
      fallbacks_.fetch_add(1, std::memory_order_relaxed);
      return Out();
    }
    v1::PutHeader* h = request.mutable_reserve()->mutable_header();
    h->set_key(KeyToWire(c.key));
    h->mutable_token_ids()->Assign(c.token_ids.begin(), c.token_ids.end());
    h->set_codec(static_cast<v1::Codec>(codec));
    h->set_payload_bytes(payloads[i].size());
    h->set_checksum(checksums[i]);
    h->set_base_position(c.options.base_position);
    h->set_pin(c.options.pin);
    h->set_prefer_tier(c.options.prefer_tier);
    auto reserved = channel->Call(request);
    if (reserved.ok() && !(*reserved)->reserve().already_present()) {
      const v1::LocalReserveReply& r = (*reserved)->reserve();
      if (r.window_offset() > window.size() || payloads[i].size() > window.size() - r.window_offset()) {
        Unusable(Internal("local reserve pointed outside the put window"));
        fallbacks_.fetch_add(1, std::memory_order_relaxed);
        return Out();
      }
      std::memcpy(window.data() + r.window_offset(), payloads[i].data(), payloads[i].size());
      v1::LocalRequest commit;
      commit.mutable_commit()->set_reservation(r.reservation());
      auto committed = channel->Call(commit);
      if (committed.ok()) results[i].already_present = (*committed)->commit().already_present();
      else reserved = committed.status();
    } else if (reserved.ok()) {
      results[i].already_present = true;
    }
    if (!reserved.ok()) {
      const bool broken = channel->broken();
      Return(std::move(channel));
      if (!broken) return reserved.status();
      // Chunks committed so far are stored; gRPC redoes the batch and finds them present.
      fallbacks_.fetch_add(1, std::memory_order_relaxed);
      return Out();
    }
  }
  Return(std::move(channel));
  puts_.fetch_add(1, std::memory_order_relaxed);
  return Out(std::move(results));
}

}  // namespace kvtier
