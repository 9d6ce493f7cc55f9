#include "kvtier/client/paged_transfer.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "encoded_chunk.h"
#include "kvtier/client/gpu_channel.h"
#include "kvtier/codec/executor.h"
#include "transfer_backend.h"

namespace kvtier {
namespace {

using internal::TransferBackend;

std::string ShapeString(const gpu::PagedKvShape& s) {
  return "L" + std::to_string(s.num_layers) + " H" + std::to_string(s.num_kv_heads) + " D" +
         std::to_string(s.head_dim) + " " + std::string(DTypeName(s.dtype));
}

// The cache view of layer `layer` alone.
gpu::PagedKvCache LayerView(const gpu::PagedKvCache& cache, uint32_t layer) {
  gpu::PagedKvCache view = cache;
  view.shape.num_layers = 1;
  view.k_layers = cache.k_layers.subspan(layer, 1);
  view.v_layers = cache.v_layers.subspan(layer, 1);
  return view;
}

gpu::ChunkShape ChunkShapeOf(const gpu::PagedKvShape& s, uint32_t num_tokens) {
  return gpu::ChunkShape{s.num_layers, num_tokens, s.num_kv_heads, s.head_dim, s.dtype};
}

}  // namespace

Status PagedTransferOptions::Validate() const {
  if (staging_bytes == 0) return InvalidArgument("PagedTransferOptions.staging_bytes must be > 0");
  return Status::Ok();
}

Status LayerwiseLoad::WaitLayer(uint32_t layer, gpu::StreamHandle stream) const {
  if (layer >= num_layers_) {
    return InvalidArgument("WaitLayer: layer " + std::to_string(layer) + " of a cache with " +
                           std::to_string(num_layers_) + " layers");
  }
  if (layer_events_.empty()) return Status::Ok();
  return layer_events_[layer].MakeStreamWait(stream);
}

Status LayerwiseLoad::Synchronize() const {
  for (const gpu::Event& e : layer_events_) KVTIER_RETURN_IF_ERROR(e.Synchronize());
  return Status::Ok();
}

struct PagedKvTransfer::Impl {
  std::unique_ptr<TransferBackend> backend;
  uint64_t slot_bytes = 0;  // one full chunk of the fingerprint
  uint32_t chunks_per_round = 0;
  gpu::RopeParams rope;
  bool rerotate = false;  // keys are stored after RoPE and the options ask for re-rotation
  gpu::CachegenProfileResolver profiles;    // the client's, for cachegen chunks decoded here
  gpu::CachegenTableCache table_cache;      // shared profiles' tables, flattened once for all their chunks
  codec::InlineExecutor calling_thread;
  // Host work of a round (hashing, parsing) in parallel: the client's (ClientOptions::encode.executor), else
  // calling_thread.
  codec::Executor* executor = &calling_thread;
  std::optional<internal::ResidentTables> resident_tables;  // shared profiles' tables on the device
  std::vector<std::span<std::byte>> slots;  // the host staging's slots, where staged gets land
  std::vector<const std::byte*> slot_sources;  // their first bytes, as PlanRound's sources
  std::vector<std::byte*> device_slots;     // the device staging's slots, where the GPU channel receives
  std::unique_ptr<GpuChannel> channel;      // to the server's GPU tier (options.nccl), opened at first use
  bool nccl_for_good = false;               // with stats.nccl_off: the channel is never tried again
  std::chrono::steady_clock::time_point nccl_retry_at;  // else: tried again from then on
  PagedTransferStats stats;                 // a non-empty zero_copy_off turns the zero-copy path off for good

  // One chunk of a round: where its bytes sit and where it goes in the sequence.
  struct RoundChunk {
    const std::byte* source = nullptr;  // a raw chunk's bytes on the host: a host staging slot or the shared arena
    uint64_t offset = 0;                // its slot, at the same offset in every staging
    uint32_t num_tokens = 0;
    uint32_t position = 0;       // sequence position of its first token
    int64_t rerotate_delta = 0;  // position - stored base position, when keys are re-rotated
    int encoded = -1;            // its decode plan in Round::encoded; -1 for a raw chunk
    bool in_device = false;      // already in its device staging slot (received over the GPU channel)
  };

  // What one round places: the chunks (leading hits), the position after them, whether it stopped at a miss.
  struct Round {
    std::vector<RoundChunk> chunks;
    std::vector<internal::EncodedChunk> encoded;  // decode plans of the encoded chunks
    uint32_t end_position = 0;
    bool missed = false;
    Status refused;  // the decoder refused chunk `chunks.size()`: the round (and call) stopped before it
    bool host_decode = false;  // a hit must be decoded on the host: the round goes through GetBatch
    uint32_t from_server_gpu = 0;  // placed chunks copied out of the server's GPU tier (CUDA IPC)
    bool over_link = false;        // received over the GPU channel

    bool has_cachegen() const {
      return std::any_of(encoded.begin(), encoded.end(), [](const auto& e) { return e.is_cachegen(); });
    }
  };

  bool decoding() const { return !backend->encoded_staging().empty(); }
  Status CheckTarget(const gpu::PagedKvShape& shape, const PagedTarget& t) const;
  Status CheckCoverage(const PagedTarget& t, uint32_t end_position) const;
  // The leading hits of `results` (the round's, keys `keys`) from `position` on; hit i's stored bytes are at
  // sources[i], and `in_host_slots` says they lie in the host staging (a staged get).
  Result<Round> PlanRound(const gpu::PagedKvShape& shape, std::span<const GetResult> results,
                          std::span<const ChunkKey> keys, size_t first_index, uint32_t position,
                          std::span<const std::byte* const> sources, bool in_host_slots);
  // A hit's parsed container: its decode plan, nullopt to decode it on the host, or the decoder's refusal.
  using Parsed = Result<std::optional<internal::EncodedChunk>>;
  // The leading hits' encoded containers parsed (and checked: every stream is hashed), on the executor; nullopt
  // for raw hits and those after the first miss.
  std::vector<std::optional<Parsed>> ParseLeading(const gpu::PagedKvShape& shape, std::span<const GetResult> results,
                                                  std::span<const ChunkKey> keys,
                                                  std::span<const std::byte* const> sources);
  // The decode plan of a parsed hit laid out in `slot`, or nullopt to decode it on the host.
  Parsed PlanEncoded(Parsed parsed, const GetResult& r, const internal::EncodedSlot& slot);
  // Which of `hits` that `check` selects do not hash to their checksum (1: corrupt), on the executor.
  std::vector<char> CorruptHits(std::span<const LeasedChunk> hits, const std::function<bool(size_t)>& check);
  Status EnqueueCopies(const Round& round, std::span<const ChunkKey> keys, const gpu::PagedKvShape& shape,
                       bool layerwise);
  Status EnqueueEncodedCopies(const Round& round, size_t index, const ChunkKey& key, const gpu::PagedKvShape& shape,
                              uint32_t layer, uint32_t layers, std::vector<gpu::CachegenDeviceChunk>* cachegen);
  Status DecodeCachegen(const Round& round, std::span<const gpu::CachegenDeviceChunk> chunks);
  // After the decode ran (kDecoded): cuts the round before the first chunk the decoder refused (its error codes,
  // copied to the host slots), with the decoder's status in round.refused.
  void StopAtRefusal(Round& round, std::span<const ChunkKey> keys);
  Status EnqueueUnpacks(std::span<const RoundChunk> chunks, const PagedTarget& t, bool layerwise,
                        gpu::StreamHandle stream);
  Status EnqueueRound(Round& round, std::span<const ChunkKey> keys, const PagedTarget& t, bool layerwise,
                      gpu::StreamHandle stream);
  Status UnpackChunk(const RoundChunk& c, const PagedTarget& t, int layer, gpu::StreamHandle stream);

  // The round over the shared-memory path, copying straight out of the server's arena; nullopt when that path
  // cannot serve it, or a Round with host_decode and nothing queued when a hit needs the host's decoder (the
  // caller then uses StagedRound).
  Result<std::optional<Round>> LeasedRound(Client* client, const gpu::PagedKvShape& shape,
                                           std::span<const ChunkKey> keys, size_t first_index, const PagedTarget& t,
                                           uint32_t position, const PagedTransferOptions& options,
                                           gpu::StreamHandle stream, std::span<GetResult> results);
  // The round through a get into the host staging: GetBatchEncoded when decoding here, else (or when a chunk is
  // known to need the host's decoder) GetBatch.
  Result<Round> StagedRound(Client* client, const gpu::PagedKvShape& shape, std::span<const ChunkKey> keys,
                            size_t first_index, const PagedTarget& t, uint32_t position, bool layerwise,
                            bool host_decode, gpu::StreamHandle stream, std::span<GetResult> results);
  // The round's leading chunks that the server's GPU tier sends over the GPU channel, received into the device
  // staging; nullopt when the channel is off (it failed to open, or broke: stats.nccl_off). The round may
  // place fewer chunks than keys without a miss: the rest is the next round's, over gRPC.
  Result<std::optional<Round>> LinkRound(Client* client, const gpu::PagedKvShape& shape, std::span<const ChunkKey> keys,
                                         size_t first_index, const PagedTarget& t, uint32_t position,
                                         const PagedTransferOptions& options, gpu::StreamHandle stream,
                                         std::span<GetResult> results);
  bool LinkUsable(const PagedTransferOptions& options) const {
    if (!options.nccl) return false;
    if (stats.nccl_off.empty()) return true;
    return !nccl_for_good && std::chrono::steady_clock::now() >= nccl_retry_at;
  }
  // Turns the channel off after `failure`: for good when it is a refusal that will not change.
  void LinkFailed(const std::string& what, const Status& failure, const PagedTransferOptions& options);
  // The server's GPU tier in this process when some hit has a copy there and it can be opened (CUDA IPC); null
  // otherwise (the first failure turns IPC off for good: stats.ipc_off).
  const std::byte* ServerGpu(const LeasedArena& arena, std::span<const LeasedChunk> hits);
  void Count(const Round& round, bool leased);
};

Result<std::unique_ptr<PagedKvTransfer>> PagedKvTransfer::Create(Client* client, const gpu::PagedKvShape& shape,
                                                                 const PagedTransferOptions& options) {
  if (client == nullptr) return InvalidArgument("PagedKvTransfer: client is null");
  KVTIER_RETURN_IF_ERROR(options.Validate());
  KVTIER_RETURN_IF_ERROR(shape.Validate());
  const ModelFingerprint& fp = client->options().fingerprint;
  if (shape.num_layers != fp.num_layers || shape.num_kv_heads != fp.num_kv_heads || shape.head_dim != fp.head_dim ||
      shape.dtype != fp.dtype) {
    return InvalidArgument("PagedKvTransfer: cache shape " + ShapeString(shape) +
                           " does not match the client's fingerprint " + fp.ShortString());
  }
  auto impl = std::make_unique<Impl>();
  impl->slot_bytes = shape.ChunkBytes(fp.chunk_tokens);
  if (options.staging_bytes < impl->slot_bytes) {
    return InvalidArgument("PagedTransferOptions.staging_bytes " + std::to_string(options.staging_bytes) +
                           " is below one chunk of " + std::to_string(impl->slot_bytes) + " bytes");
  }
  impl->chunks_per_round = static_cast<uint32_t>(options.staging_bytes / impl->slot_bytes);
  impl->rope = gpu::RopeParams::FromFingerprint(fp);
  impl->rerotate = options.rerotate && fp.keys_post_rope && fp.rope_style != RopeStyle::kNone;
  impl->profiles = client->DecodeOptions().profiles;
  if (codec::Executor* shared = client->DecodeOptions().executor; shared != nullptr) impl->executor = shared;
  auto backend = TransferBackend::Create(options.placement, impl->chunks_per_round * impl->slot_bytes,
                                         shape.num_layers, options.device_decode);
  if (!backend.ok()) return backend.status();
  impl->backend = std::move(*backend);
  impl->resident_tables.emplace(
      [backend = impl->backend.get()](std::span<const std::byte> tables) { return backend->KeepResident(tables); });
  for (uint32_t i = 0; i < impl->chunks_per_round; ++i) {
    impl->slots.push_back(impl->backend->host_staging().subspan(i * impl->slot_bytes, impl->slot_bytes));
    impl->slot_sources.push_back(impl->slots.back().data());
    impl->device_slots.push_back(impl->backend->device_staging().data() + i * impl->slot_bytes);
  }
  return std::unique_ptr<PagedKvTransfer>(new PagedKvTransfer(client, shape, options, std::move(impl)));
}

PagedKvTransfer::PagedKvTransfer(Client* client, const gpu::PagedKvShape& shape, const PagedTransferOptions& options,
                                 std::unique_ptr<Impl> impl)
    : client_(client), shape_(shape), options_(options), impl_(std::move(impl)) {}

PagedKvTransfer::~PagedKvTransfer() = default;

PagedTransferStats PagedKvTransfer::stats() const {
  PagedTransferStats stats = impl_->stats;
  stats.resident_table_sets = impl_->resident_tables->size();
  return stats;
}

Status PagedKvTransfer::Impl::CheckTarget(const gpu::PagedKvShape& shape, const PagedTarget& t) const {
  const gpu::PagedKvShape& s = t.cache.shape;
  if (s != shape) {
    return InvalidArgument("paged transfer: the target cache's shape differs from the transfer's (" +
                           ShapeString(shape) + ", " + std::to_string(shape.num_blocks) + " blocks of " +
                           std::to_string(shape.block_size) + ")");
  }
  if (t.cache.k_layers.size() != s.num_layers || t.cache.v_layers.size() != s.num_layers) {
    return InvalidArgument("paged transfer: the target cache needs " + std::to_string(s.num_layers) +
                           " K and V layer pointers");
  }
  if (t.block_table == nullptr) return InvalidArgument("paged transfer: block_table is null");
  return Status::Ok();
}

Status PagedKvTransfer::Impl::CheckCoverage(const PagedTarget& t, uint32_t end_position) const {
  const uint64_t covered = uint64_t{t.block_table_size} * t.cache.shape.block_size;
  if (end_position > covered) {
    return InvalidArgument("paged transfer: the block table covers " + std::to_string(covered) +
                           " positions, the chunks reach position " + std::to_string(end_position));
  }
  return Status::Ok();
}

// layer < 0: all layers of the chunk in one launch.
Status PagedKvTransfer::Impl::UnpackChunk(const RoundChunk& c, const PagedTarget& t, int layer,
                                          gpu::StreamHandle stream) {
  const uint64_t row = t.cache.shape.RowBytes();
  const uint64_t layer_bytes = 2 * uint64_t{c.num_tokens} * row;
  const gpu::SequenceSlice seq{t.block_table, t.block_table_size, c.position, c.num_tokens};
  gpu::UnpackOptions unpack;
  if (rerotate) {
    unpack.rerotate_delta = c.rerotate_delta;
    unpack.rope = rope;
  }
  std::span<std::byte> device = backend->device_staging();
  if (layer < 0) {
    return backend->Unpack(t.cache, seq, device.subspan(c.offset, layer_bytes * t.cache.shape.num_layers), unpack,
                           stream);
  }
  return backend->Unpack(LayerView(t.cache, static_cast<uint32_t>(layer)), seq,
                         device.subspan(c.offset + static_cast<uint32_t>(layer) * layer_bytes, layer_bytes), unpack,
                         stream);
}

// An encoded chunk's share of copy pass `layer` (of `layers` layers each): int8 copies and dequantizes those
// layers' streams; cachegen copies its whole body and image in pass 0 and joins the pass's decode launch.
Status PagedKvTransfer::Impl::EnqueueEncodedCopies(const Round& round, size_t index, const ChunkKey& key,
                                                   const gpu::PagedKvShape& shape, uint32_t layer, uint32_t layers,
                                                   std::vector<gpu::CachegenDeviceChunk>* cachegen) {
  const RoundChunk& c = round.chunks[index];
  const internal::EncodedChunk& e = round.encoded[static_cast<size_t>(c.encoded)];
  gpu::StreamHandle copy = backend->copy_stream();
  std::byte* encoded = backend->encoded_staging().data() + c.offset;
  std::byte* out = backend->device_staging().data() + c.offset;
  if (!e.is_cachegen()) {
    const uint64_t stream_bytes = gpu::Int8StreamBytes(e.int8.shape);
    const uint64_t at = layer * stream_bytes;
    KVTIER_RETURN_IF_ERROR(backend->Copy(encoded + at, e.body.data() + at, layers * stream_bytes, copy));
    gpu::Int8Payload payload = e.int8;
    payload.shape.num_layers = layers;
    payload.body = {encoded + at, layers * stream_bytes};
    const uint64_t layer_bytes = 2 * uint64_t{c.num_tokens} * shape.RowBytes();
    Status s = backend->DequantizeInt8(payload, shape.dtype, {out + layer * layer_bytes, layers * layer_bytes}, copy);
    return s.ok() ? s : internal::AboutChunk(key, s);
  }
  if (layer != 0) return Status::Ok();
  std::byte* host = backend->host_staging().data() + c.offset;
  std::memcpy(host + e.host_image_at, e.image.data(), e.image.size());
  KVTIER_RETURN_IF_ERROR(backend->Copy(encoded, e.body.data(), e.body.size(), copy));
  KVTIER_RETURN_IF_ERROR(backend->Copy(encoded + e.image_at, host + e.host_image_at, e.image.size(), copy));
  cachegen->push_back(gpu::CachegenDeviceChunk{
      &e.cachegen, {encoded, e.body.size()}, {encoded + e.image_at, e.image.size()},
      {encoded + e.workspace_at, gpu::CachegenWorkspaceBytes(e.cachegen)},
      {out, gpu::CachegenOutputBytes(e.cachegen, shape.dtype)}, shape.dtype, e.device_tables});
  return Status::Ok();
}

// One launch for the round's cachegen chunks, then their error codes back to the host slots (StopAtRefusal).
Status PagedKvTransfer::Impl::DecodeCachegen(const Round& round, std::span<const gpu::CachegenDeviceChunk> chunks) {
  if (chunks.empty()) return Status::Ok();
  KVTIER_RETURN_IF_ERROR(backend->DecodeCachegen(chunks, backend->copy_stream()));
  const std::byte* encoded = backend->encoded_staging().data();
  std::byte* host = backend->host_staging().data();
  for (const RoundChunk& c : round.chunks) {
    if (c.encoded < 0) continue;
    const internal::EncodedChunk& e = round.encoded[static_cast<size_t>(c.encoded)];
    if (!e.is_cachegen()) continue;
    KVTIER_RETURN_IF_ERROR(backend->Copy(host + c.offset + e.host_errors_at, encoded + c.offset + e.workspace_at,
                                         gpu::CachegenErrorBytes(e.cachegen), backend->copy_stream()));
  }
  return Status::Ok();
}

void PagedKvTransfer::Impl::StopAtRefusal(Round& round, std::span<const ChunkKey> keys) {
  const std::byte* host = backend->host_staging().data();
  for (size_t i = 0; i < round.chunks.size(); ++i) {
    const RoundChunk& c = round.chunks[i];
    if (c.encoded < 0) continue;
    const internal::EncodedChunk& e = round.encoded[static_cast<size_t>(c.encoded)];
    if (!e.is_cachegen()) continue;
    Status s = gpu::CachegenDeviceStatus(
        e.cachegen, {host + c.offset + e.host_errors_at, gpu::CachegenErrorBytes(e.cachegen)});
    if (s.ok()) continue;
    round.missed = true;
    round.end_position = c.position;
    round.refused = internal::AboutChunk(keys[i], s);
    round.chunks.resize(i);
    return;
  }
}

// Copies (and decodes) go on the backend's copy stream, so they run ahead of the unpacks: layer by layer (one
// event each), or whole chunks (one event). Records kHostFree once everything out of host memory is queued.
Status PagedKvTransfer::Impl::EnqueueCopies(const Round& round, std::span<const ChunkKey> keys,
                                            const gpu::PagedKvShape& shape, bool layerwise) {
  const uint64_t row = shape.RowBytes();
  gpu::StreamHandle copy = backend->copy_stream();
  std::byte* device = backend->device_staging().data();
  // The device stagings are free once the previous round's unpacks (or packs) ran; cachegen images go through
  // the host slots, free once the previous round's copies out of them ran.
  KVTIER_RETURN_IF_ERROR(backend->StreamWait(TransferBackend::kRoundDone, copy));
  if (round.has_cachegen()) KVTIER_RETURN_IF_ERROR(backend->HostWait(TransferBackend::kHostFree));
  const uint32_t passes = layerwise ? shape.num_layers : 1;
  const uint32_t layers_per_pass = layerwise ? 1 : shape.num_layers;
  std::vector<gpu::CachegenDeviceChunk> cachegen;
  for (uint32_t l = 0; l < passes; ++l) {
    for (size_t i = 0; i < round.chunks.size(); ++i) {
      const RoundChunk& c = round.chunks[i];
      if (c.encoded >= 0) {
        KVTIER_RETURN_IF_ERROR(EnqueueEncodedCopies(round, i, keys[i], shape, l, layers_per_pass, &cachegen));
        continue;
      }
      if (c.in_device) continue;
      const uint64_t bytes = 2 * uint64_t{c.num_tokens} * row * layers_per_pass;
      KVTIER_RETURN_IF_ERROR(backend->Copy(device + c.offset + l * bytes, c.source + l * bytes, bytes, copy));
    }
    if (l == 0 && !cachegen.empty()) {
      KVTIER_RETURN_IF_ERROR(DecodeCachegen(round, cachegen));
      KVTIER_RETURN_IF_ERROR(backend->Record(TransferBackend::kDecoded, copy));
    }
    KVTIER_RETURN_IF_ERROR(backend->Record(TransferBackend::CopiedSlot(l), copy));
  }
  return backend->Record(TransferBackend::kHostFree, copy);
}

// `stream` waits for each layer's copies (EnqueueCopies) before unpacking that layer, and records it as ready.
Status PagedKvTransfer::Impl::EnqueueUnpacks(std::span<const RoundChunk> chunks, const PagedTarget& t, bool layerwise,
                                             gpu::StreamHandle stream) {
  const uint32_t layers = t.cache.shape.num_layers;
  if (!layerwise) {
    KVTIER_RETURN_IF_ERROR(backend->StreamWait(TransferBackend::CopiedSlot(0), stream));
    for (const RoundChunk& c : chunks) KVTIER_RETURN_IF_ERROR(UnpackChunk(c, t, -1, stream));
    for (uint32_t l = 0; l < layers; ++l) KVTIER_RETURN_IF_ERROR(backend->Record(backend->LayerReadySlot(l), stream));
    return backend->Record(TransferBackend::kRoundDone, stream);
  }
  for (uint32_t l = 0; l < layers; ++l) {
    KVTIER_RETURN_IF_ERROR(backend->StreamWait(TransferBackend::CopiedSlot(l), stream));
    for (const RoundChunk& c : chunks) KVTIER_RETURN_IF_ERROR(UnpackChunk(c, t, static_cast<int>(l), stream));
    KVTIER_RETURN_IF_ERROR(backend->Record(backend->LayerReadySlot(l), stream));
  }
  return backend->Record(TransferBackend::kRoundDone, stream);
}

// Copies, decodes and unpacks of one round. A round with cachegen chunks waits (on the host) for their decode
// before the unpacks are queued, so that a chunk the decoder refuses never reaches the cache (the round stops
// before it); int8 rounds keep their layer-by-layer overlap. After a failure part of the work may be
// queued and the events not recorded: everything is drained, so no later call reuses a staging that orphaned
// work still touches.
Status PagedKvTransfer::Impl::EnqueueRound(Round& round, std::span<const ChunkKey> keys, const PagedTarget& t,
                                           bool layerwise, gpu::StreamHandle stream) {
  Status s = EnqueueCopies(round, keys, t.cache.shape, layerwise);
  if (s.ok() && round.has_cachegen()) {
    s = backend->HostWait(TransferBackend::kDecoded);
    if (s.ok()) StopAtRefusal(round, keys);
  }
  if (s.ok()) s = EnqueueUnpacks(round.chunks, t, layerwise, stream);
  if (!s.ok()) (void)backend->Drain(stream);
  return s;
}

Result<PagedKvTransfer::Impl::Round> PagedKvTransfer::Impl::PlanRound(const gpu::PagedKvShape& shape,
                                                                      std::span<const GetResult> results,
                                                                      std::span<const ChunkKey> keys,
                                                                      size_t first_index, uint32_t position,
                                                                      std::span<const std::byte* const> sources,
                                                                      bool in_host_slots) {
  Round round;
  std::vector<std::optional<Parsed>> parsed = ParseLeading(shape, results, keys, sources);
  for (size_t i = 0; i < results.size(); ++i) {
    const GetResult& r = results[i];
    if (!r.found) {
      round.missed = true;
      break;
    }
    RoundChunk c{sources[i], i * slot_bytes, r.num_tokens, position, int64_t{position} - int64_t{r.base_position}};
    if (r.codec != v1::CODEC_RAW) {
      const internal::EncodedSlot slot{c.offset, slot_bytes, in_host_slots};
      auto plan = parsed[i] ? PlanEncoded(std::move(*parsed[i]), r, slot) : Parsed(std::nullopt);
      if (!plan.ok()) return plan.status();
      if (!*plan) {
        round.host_decode = true;
        return round;
      }
      c.encoded = static_cast<int>(round.encoded.size());
      round.encoded.push_back(std::move(**plan));
    } else if (r.bytes != shape.ChunkBytes(r.num_tokens)) {
      return DataLoss("paged transfer: chunk " + std::to_string(first_index + i) + " has " + std::to_string(r.bytes) +
                      " bytes, not the " + std::to_string(shape.ChunkBytes(r.num_tokens)) + " of " +
                      std::to_string(r.num_tokens) + " tokens");
    }
    round.chunks.push_back(c);
    position += r.num_tokens;
  }
  round.end_position = position;
  return round;
}

std::vector<std::optional<PagedKvTransfer::Impl::Parsed>> PagedKvTransfer::Impl::ParseLeading(
    const gpu::PagedKvShape& shape, std::span<const GetResult> results, std::span<const ChunkKey> keys,
    std::span<const std::byte* const> sources) {
  std::vector<std::optional<Parsed>> parsed(results.size());
  if (!decoding()) return parsed;  // every encoded hit is decoded on the host
  std::vector<size_t> encoded;
  for (size_t i = 0; i < results.size() && results[i].found; ++i) {
    if (results[i].codec != v1::CODEC_RAW) encoded.push_back(i);
  }
  executor->ParallelFor(encoded.size(), [&](size_t k) {
    const size_t i = encoded[k];
    const GetResult& r = results[i];
    parsed[i] = internal::ParseEncodedChunk({sources[i], r.bytes}, r.codec, ChunkShapeOf(shape, r.num_tokens),
                                            profiles, &table_cache, keys[i]);
  });
  return parsed;
}

std::vector<char> PagedKvTransfer::Impl::CorruptHits(std::span<const LeasedChunk> hits,
                                                     const std::function<bool(size_t)>& check) {
  std::vector<size_t> checked;
  for (size_t j = 0; j < hits.size(); ++j) {
    if (check(j)) checked.push_back(j);
  }
  std::vector<char> corrupt(hits.size(), 0);  // not vector<bool>: each worker writes its own byte
  executor->ParallelFor(checked.size(), [&](size_t k) {
    const LeasedChunk& h = hits[checked[k]];
    corrupt[checked[k]] = Checksum64(h.payload) != h.checksum ? 1 : 0;
  });
  return corrupt;
}

PagedKvTransfer::Impl::Parsed PagedKvTransfer::Impl::PlanEncoded(Parsed parsed, const GetResult& r,
                                                                 const internal::EncodedSlot& slot) {
  using Out = std::optional<internal::EncodedChunk>;
  if (!parsed.ok() || !*parsed) return parsed;
  resident_tables->Attach(**parsed);
  if (!internal::LayOutEncodedChunk(**parsed, slot, r.bytes)) return Out();
  return parsed;
}

Result<std::optional<PagedKvTransfer::Impl::Round>> PagedKvTransfer::Impl::LeasedRound(
    Client* client, const gpu::PagedKvShape& shape, std::span<const ChunkKey> keys, size_t first_index,
    const PagedTarget& t, uint32_t position, const PagedTransferOptions& options, gpu::StreamHandle stream,
    std::span<GetResult> results) {
  std::optional<Round> placed;
  bool unusable = false;  // an arena the GPU cannot read: the staged path serves the round
  const bool want_gpu = options.ipc && options.placement == TransferPlacement::kDevice && stats.ipc_off.empty();
  auto sink = [&](const LeasedArena& arena, std::span<LeasedChunk> hits, std::vector<size_t>* corrupt) -> Status {
    std::vector<GetResult> leading(keys.size());
    std::vector<const std::byte*> sources(keys.size(), nullptr);
    std::vector<bool> from_gpu(keys.size(), false);
    // First the DRAM arena: a new one (a restarted server) also drops the old server's GPU arena mapping.
    if (Status s = backend->PrepareSource(arena); !s.ok()) {
      unusable = true;
      stats.zero_copy_off = "the server's shared arena cannot be registered with the GPU: " + s.ToString();
      return s;
    }
    const std::byte* server_gpu = want_gpu ? ServerGpu(arena, hits) : nullptr;
    // An encoded chunk is parsed on the CPU before any copy: verify its bytes first, so that a corrupt one is
    // reported (and dropped by the server) like a raw one, ending the placement before it.
    const std::vector<char> bad_encoded = CorruptHits(hits, [&](size_t j) { return hits[j].codec != v1::CODEC_RAW; });
    for (size_t j = 0; j < hits.size(); ++j) {
      const LeasedChunk& h = hits[j];
      if (bad_encoded[j]) {
        corrupt->push_back(j);
        continue;
      }
      leading[h.index] = h.result;
      sources[h.index] = h.payload.data();
      if (server_gpu != nullptr && h.codec == v1::CODEC_RAW && h.gpu_offset) {
        sources[h.index] = server_gpu + *h.gpu_offset;  // device-to-device, out of the server's GPU tier
        from_gpu[h.index] = true;
      }
    }
    auto round = PlanRound(shape, leading, keys, first_index, position, sources, /*in_host_slots=*/false);
    if (!round.ok()) return round.status();
    if (round->host_decode || round->chunks.empty()) {  // nothing to copy: placed or handed to the staged path
      placed = std::move(*round);
      return Status::Ok();
    }
    KVTIER_RETURN_IF_ERROR(CheckCoverage(t, round->end_position));
    // Only the copies (and decodes) happen under the leases; the unpacks wait until the release confirmed the
    // leases held (bytes read under an expired lease may be another chunk's and must never reach the cache).
    if (Status s = EnqueueCopies(*round, keys, shape, options.layerwise); !s.ok()) {
      (void)backend->DrainCopies();  // nothing may still read the arena when the leases end
      return s;
    }
    // The shared-memory path leaves verification to the reader: hash raw chunks while the copies run (encoded
    // ones were hashed above; a copy out of the server's GPU tier reads device memory, not these bytes).
    // Placement ends before the first corrupt chunk.
    size_t intact = round->chunks.size();
    if (options.verify_leased) {
      const std::vector<char> bad_raw = CorruptHits(
          hits, [&](size_t j) { return hits[j].codec == v1::CODEC_RAW && !from_gpu[hits[j].index]; });
      for (size_t j = 0; j < hits.size(); ++j) {
        if (!bad_raw[j]) continue;
        corrupt->push_back(j);
        intact = std::min(intact, hits[j].index);
      }
    }
    if (intact < round->chunks.size()) {
      round->missed = true;
      round->end_position = round->chunks[intact].position;
      round->chunks.resize(intact);
    }
    for (size_t i = 0; i < round->chunks.size(); ++i) round->from_server_gpu += from_gpu[i] ? 1 : 0;
    placed = std::move(*round);
    // The leases end when this returns: the copies out of the arena must be finished by then.
    return backend->HostWait(TransferBackend::kHostFree);
  };
  auto got = client->GetLeased(keys, sink, want_gpu);
  if (unusable) return std::optional<Round>();
  if (!got.ok()) return got.status();
  if (!*got) return std::optional<Round>();
  if (placed && placed->host_decode) return placed;  // the leases are released; the staged path decodes
  std::copy((*got)->begin(), (*got)->end(), results.begin());
  if (!placed) {  // nothing found: the sink never ran
    placed.emplace();
    placed->end_position = position;
    placed->missed = true;
  }
  if (!placed->chunks.empty()) {
    StopAtRefusal(*placed, keys);
    Status s = EnqueueUnpacks(placed->chunks, t, options.layerwise, stream);
    if (!s.ok()) {
      (void)backend->Drain(stream);
      return s;
    }
  }
  Count(*placed, /*leased=*/true);
  return placed;
}

Result<PagedKvTransfer::Impl::Round> PagedKvTransfer::Impl::StagedRound(
    Client* client, const gpu::PagedKvShape& shape, std::span<const ChunkKey> keys, size_t first_index,
    const PagedTarget& t, uint32_t position, bool layerwise, bool host_decode, gpu::StreamHandle stream,
    std::span<GetResult> results) {
  // The host staging is overwritten by this get: the previous round's copies out of it must be done.
  KVTIER_RETURN_IF_ERROR(backend->HostWait(TransferBackend::kHostFree));
  const std::span<const std::span<std::byte>> dests = std::span(slots).first(keys.size());
  const std::span<const std::byte* const> sources = std::span(slot_sources).first(keys.size());
  const bool encoded = decoding() && !host_decode;
  auto got = encoded ? client->GetBatchEncoded(keys, dests) : client->GetBatch(keys, dests);
  // INVALID_ARGUMENT from GetBatchEncoded: a container larger than its slot. GetBatch decodes it on the host.
  if (encoded && !got.ok() && got.status().code() == StatusCode::kInvalidArgument) {
    got = client->GetBatch(keys, dests);
  }
  if (!got.ok()) return got.status();
  auto round = PlanRound(shape, *got, keys, first_index, position, sources, /*in_host_slots=*/true);
  if (round.ok() && round->host_decode) {
    got = client->GetBatch(keys, dests);
    if (!got.ok()) return got.status();
    round = PlanRound(shape, *got, keys, first_index, position, sources, /*in_host_slots=*/true);
  }
  if (!round.ok()) return round.status();
  std::copy(got->begin(), got->end(), results.begin());
  if (!round->chunks.empty()) {
    KVTIER_RETURN_IF_ERROR(CheckCoverage(t, round->end_position));
    KVTIER_RETURN_IF_ERROR(EnqueueRound(*round, keys, t, layerwise, stream));
  }
  Count(*round, /*leased=*/false);
  return round;
}

const std::byte* PagedKvTransfer::Impl::ServerGpu(const LeasedArena& arena, std::span<const LeasedChunk> hits) {
  if (arena.gpu_ipc_handle.empty()) return nullptr;
  if (std::none_of(hits.begin(), hits.end(), [](const LeasedChunk& h) { return h.gpu_offset.has_value(); })) {
    return nullptr;
  }
  auto base = backend->PrepareGpuSource(arena);
  if (base.ok()) return *base;
  stats.ipc_off = "the server's GPU tier cannot be opened by CUDA IPC (" + arena.gpu_pci_bus_id +
                  "): " + base.status().ToString();
  return nullptr;
}

Result<std::optional<PagedKvTransfer::Impl::Round>> PagedKvTransfer::Impl::LinkRound(
    Client* client, const gpu::PagedKvShape& shape, std::span<const ChunkKey> keys, size_t first_index,
    const PagedTarget& t, uint32_t position, const PagedTransferOptions& options, gpu::StreamHandle stream,
    std::span<GetResult> results) {
  if (channel == nullptr) {
    const auto kind =
        options.placement == TransferPlacement::kDevice ? gpu::PeerLinkKind::kNccl : gpu::PeerLinkKind::kLoopback;
    auto opened = client->OpenGpuChannel(kind, options.nccl_timeout);
    if (!opened.ok()) {
      LinkFailed("the server's GPU channel cannot be opened: ", opened.status(), options);
      return std::optional<Round>();
    }
    channel = std::move(opened).value();
    stats.nccl_off.clear();
  }
  // The receives overwrite the device staging: they wait for the previous round's unpacks (kRoundDone).
  KVTIER_RETURN_IF_ERROR(backend->StreamWait(TransferBackend::kRoundDone, backend->copy_stream()));
  auto got = channel->Get(keys, std::span(device_slots).first(keys.size()), slot_bytes, backend->copy_stream());
  if (!got.ok()) {
    LinkFailed("the GPU channel broke: ", got.status(), options);
    channel.reset();
    return std::optional<Round>();
  }
  const std::vector<const std::byte*> sources(got->received.size(), nullptr);  // in the device staging already
  auto round = PlanRound(shape, got->received, keys, first_index, position, sources, /*in_host_slots=*/false);
  if (!round.ok()) return round.status();
  round->missed = got->stopped_at_miss;
  round->over_link = true;
  for (RoundChunk& c : round->chunks) c.in_device = true;
  std::copy(got->received.begin(), got->received.end(), results.begin());
  if (!round->chunks.empty()) {
    KVTIER_RETURN_IF_ERROR(CheckCoverage(t, round->end_position));
    KVTIER_RETURN_IF_ERROR(EnqueueRound(*round, keys, t, options.layerwise, stream));
  }
  Count(*round, /*leased=*/false);
  return std::optional<Round>(std::move(round).value());
}

void PagedKvTransfer::Impl::LinkFailed(const std::string& what, const Status& failure,
                                       const PagedTransferOptions& options) {
  stats.nccl_off = what + failure.ToString();
  // Busy, unreachable or slow may pass; a server without a GPU tier, a process without NCCL, or a request the
  // server refuses will not.
  const StatusCode code = failure.code();
  nccl_for_good = code != StatusCode::kResourceExhausted && code != StatusCode::kUnavailable &&
                  code != StatusCode::kDeadlineExceeded;
  nccl_retry_at = std::chrono::steady_clock::now() + options.nccl_retry;
}

void PagedKvTransfer::Impl::Count(const Round& round, bool leased) {
  if (round.over_link) {
    stats.nccl_chunks += round.chunks.size();
    return;
  }
  (leased ? stats.leased_chunks : stats.staged_chunks) += round.chunks.size();
  stats.ipc_chunks += round.from_server_gpu;
  for (const RoundChunk& c : round.chunks) stats.decoded_chunks += c.encoded >= 0 ? 1 : 0;
}

Result<LayerwiseLoad> PagedKvTransfer::GetToDevice(std::span<const ChunkKey> keys, const PagedTarget& target,
                                                   gpu::StreamHandle stream) {
  KVTIER_RETURN_IF_ERROR(impl_->CheckTarget(shape_, target));
  LayerwiseLoad load;
  load.results.resize(keys.size());
  load.num_layers_ = shape_.num_layers;
  load.layer_events_ = impl_->backend->layer_events();
  uint32_t position = target.first_token;
  // A failure once chunks were placed ends the call with them (load.error; the worker recomputes from there).
  // Before that it is the call's error.
  auto stop = [&](Status failure) -> Result<LayerwiseLoad> {
    if (load.placed_chunks == 0) return failure;
    load.error = std::move(failure);
    load.placed_tokens = position - target.first_token;
    return std::move(load);
  };
  bool link_next = true;  // a GPU channel round that stopped short of its keys sends the next round to gRPC
  for (size_t start = 0; start < keys.size();) {
    const size_t count = std::min<size_t>(impl_->chunks_per_round, keys.size() - start);
    const std::span<const ChunkKey> round_keys = keys.subspan(start, count);
    const std::span<GetResult> round_results = std::span(load.results).subspan(start, count);
    std::optional<Impl::Round> round;
    bool host_decode = false;  // the leased attempt found a chunk only the host decodes
    if (options_.zero_copy && impl_->stats.zero_copy_off.empty()) {
      auto leased = impl_->LeasedRound(client_, shape_, round_keys, start, target, position, options_, stream,
                                       round_results);
      if (!leased.ok()) return stop(leased.status());
      round = std::move(*leased);
      if (round && round->host_decode) {
        host_decode = true;
        round.reset();
      }
    }
    if (!round && !host_decode && link_next && impl_->LinkUsable(options_)) {
      auto linked = impl_->LinkRound(client_, shape_, round_keys, start, target, position, options_, stream,
                                     round_results);
      if (!linked.ok()) return stop(linked.status());
      round = std::move(*linked);
    }
    if (!round) {
      auto staged = impl_->StagedRound(client_, shape_, round_keys, start, target, position, options_.layerwise,
                                       host_decode, stream, round_results);
      if (!staged.ok()) return stop(staged.status());
      round = std::move(*staged);
    }
    load.placed_chunks += static_cast<uint32_t>(round->chunks.size());
    position = round->end_position;
    if (!round->refused.ok()) return stop(std::move(round->refused));
    if (round->missed) break;
    // Only a GPU channel round places fewer chunks than keys without a miss: its rest goes over gRPC next.
    if (!round->over_link && round->chunks.size() != count) break;
    link_next = !round->over_link || round->chunks.size() == count;
    start += round->chunks.size();
  }
  load.placed_tokens = position - target.first_token;
  return load;
}

Result<std::vector<PutResult>> PagedKvTransfer::PutFromDevice(std::span<const ChunkKey> keys,
                                                              std::span<const std::span<const uint32_t>> token_ids,
                                                              const PagedTarget& source, gpu::StreamHandle stream,
                                                              const PutOptions& options) {
  KVTIER_RETURN_IF_ERROR(impl_->CheckTarget(shape_, source));
  if (token_ids.size() != keys.size()) {
    return InvalidArgument("PutFromDevice: " + std::to_string(keys.size()) + " keys but " +
                           std::to_string(token_ids.size()) + " token id lists");
  }
  const uint32_t chunk_tokens = client_->options().fingerprint.chunk_tokens;
  uint64_t end = source.first_token;
  for (size_t i = 0; i < token_ids.size(); ++i) {
    if (token_ids[i].empty() || token_ids[i].size() > chunk_tokens) {
      return InvalidArgument("PutFromDevice: chunk " + std::to_string(i) + " has " +
                             std::to_string(token_ids[i].size()) + " tokens; 1.." + std::to_string(chunk_tokens) +
                             " allowed");
    }
    end += token_ids[i].size();
  }
  if (end > UINT32_MAX) return InvalidArgument("PutFromDevice: the chunks reach past position 2^32");
  KVTIER_RETURN_IF_ERROR(impl_->CheckCoverage(source, static_cast<uint32_t>(end)));

  TransferBackend& backend = *impl_->backend;
  std::vector<PutResult> results;
  results.reserve(keys.size());
  std::vector<ChunkPut> puts;
  uint32_t position = source.first_token;
  for (size_t start = 0; start < keys.size(); start += impl_->chunks_per_round) {
    const size_t count = std::min<size_t>(impl_->chunks_per_round, keys.size() - start);
    puts.clear();
    // The pack writes into the device staging and its copy into the host staging: whatever a previous call
    // queued on either must be done.
    Status packed = backend.StreamWait(TransferBackend::kRoundDone, stream);
    if (packed.ok()) packed = backend.StreamWait(TransferBackend::kHostFree, stream);
    for (size_t i = 0; i < count && packed.ok(); ++i) {
      const uint32_t n = static_cast<uint32_t>(token_ids[start + i].size());
      const uint64_t offset = i * impl_->slot_bytes;
      const uint64_t bytes = shape_.ChunkBytes(n);
      const gpu::SequenceSlice seq{source.block_table, source.block_table_size, position, n};
      packed = backend.Pack(source.cache, seq, backend.device_staging().subspan(offset, bytes), stream);
      if (packed.ok()) {
        packed = backend.Copy(backend.host_staging().data() + offset, backend.device_staging().data() + offset, bytes,
                              stream);
      }
      PutOptions o = options;
      o.base_position = position;
      puts.push_back(ChunkPut{keys[start + i], token_ids[start + i], backend.host_staging().subspan(offset, bytes), o});
      position += n;
    }
    if (packed.ok()) packed = backend.Record(TransferBackend::kRoundDone, stream);
    if (!packed.ok()) {
      (void)backend.Drain(stream);  // part of the round may be queued: nothing may touch the stagings later
      return packed;
    }
    KVTIER_RETURN_IF_ERROR(backend.HostWait(TransferBackend::kRoundDone));
    auto put = client_->PutBatch(puts);
    if (!put.ok()) return put.status();
    results.insert(results.end(), put->begin(), put->end());
  }
  return results;
}

}  // namespace kvtier
