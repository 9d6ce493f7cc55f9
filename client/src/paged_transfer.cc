#include "kvtier/client/paged_transfer.h"

#include <algorithm>
#include <functional>
#include <optional>
#include <string>
#include <utility>

#include "transfer_backend.h"

namespace kvtier {
namespace {

// One chunk of a round: where its bytes sit in the stagings and where it goes in the sequence.
struct RoundChunk {
  const std::byte* source = nullptr;  // its bytes on the host: a host staging slot, or the server's shared arena
  uint64_t offset = 0;                // in the device staging
  uint32_t num_tokens = 0;
  uint32_t position = 0;       // sequence position of its first token
  int64_t rerotate_delta = 0;  // position - stored base position, when keys are re-rotated
};

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
  std::unique_ptr<internal::TransferBackend> backend;
  uint64_t slot_bytes = 0;      // one full chunk of the fingerprint
  uint32_t chunks_per_round = 0;
  gpu::RopeParams rope;
  bool rerotate = false;        // keys are stored after RoPE and the options ask for re-rotation

  Status CheckTarget(const gpu::PagedKvShape& shape, const PagedTarget& t) const;
  Status CheckCoverage(const PagedTarget& t, uint32_t end_position) const;
  Status EnqueueCopies(std::span<const RoundChunk> chunks, const gpu::PagedKvShape& shape, bool layerwise);
  Status EnqueueUnpacks(std::span<const RoundChunk> chunks, const PagedTarget& t, bool layerwise,
                        gpu::StreamHandle stream);
  Status EnqueueRound(std::span<const RoundChunk> chunks, const PagedTarget& t, bool layerwise,
                      gpu::StreamHandle stream);
  Status UnpackChunk(const RoundChunk& c, const PagedTarget& t, int layer, gpu::StreamHandle stream);

  // What one round placed: the chunks (leading hits), the position after them, whether it stopped at a miss.
  struct Round {
    std::vector<RoundChunk> chunks;
    uint32_t end_position = 0;
    bool missed = false;
  };
  // The leading hits of `results` from `position` on, with `source(i)` the host bytes of hit i.
  Result<Round> PlanRound(const gpu::PagedKvShape& shape, std::span<const GetResult> results, size_t first_index,
                          uint32_t position, const std::function<const std::byte*(size_t)>& source) const;
  // The round over the shared-memory path, copying straight out of the server's arena; nullopt when that path
  // cannot serve it (the caller then uses GetBatch).
  Result<std::optional<Round>> LeasedRound(Client* client, const gpu::PagedKvShape& shape,
                                           std::span<const ChunkKey> keys, size_t first_index, const PagedTarget& t,
                                           uint32_t position, const PagedTransferOptions& options,
                                           gpu::StreamHandle stream, std::span<GetResult> results);
  PagedTransferStats stats;  // a non-empty zero_copy_off turns the zero-copy path off for good
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
  auto backend = internal::TransferBackend::Create(options.placement, impl->chunks_per_round * impl->slot_bytes,
                                                   shape.num_layers);
  if (!backend.ok()) return backend.status();
  impl->backend = std::move(*backend);
  return std::unique_ptr<PagedKvTransfer>(new PagedKvTransfer(client, shape, options, std::move(impl)));
}

PagedKvTransfer::PagedKvTransfer(Client* client, const gpu::PagedKvShape& shape, const PagedTransferOptions& options,
                                 std::unique_ptr<Impl> impl)
    : client_(client), shape_(shape), options_(options), impl_(std::move(impl)) {}

PagedKvTransfer::~PagedKvTransfer() = default;

PagedTransferStats PagedKvTransfer::stats() const { return impl_->stats; }

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

// Copies go on the backend's copy stream, so they run ahead of the unpacks: layer by layer (one event each), or
// whole chunks (one event). Records kHostFree once every copy out of host memory is queued.
Status PagedKvTransfer::Impl::EnqueueCopies(std::span<const RoundChunk> chunks, const gpu::PagedKvShape& shape,
                                            bool layerwise) {
  const uint64_t row = shape.RowBytes();
  gpu::StreamHandle copy = backend->copy_stream();
  std::byte* device = backend->device_staging().data();
  // The device staging is free once the previous round's unpacks (or packs) ran.
  KVTIER_RETURN_IF_ERROR(backend->StreamWait(internal::TransferBackend::kRoundDone, copy));
  const uint32_t passes = layerwise ? shape.num_layers : 1;
  for (uint32_t l = 0; l < passes; ++l) {
    for (const RoundChunk& c : chunks) {
      const uint64_t bytes = 2 * uint64_t{c.num_tokens} * row * (layerwise ? 1 : shape.num_layers);
      KVTIER_RETURN_IF_ERROR(backend->Copy(device + c.offset + l * bytes, c.source + l * bytes, bytes, copy));
    }
    KVTIER_RETURN_IF_ERROR(backend->Record(internal::TransferBackend::CopiedSlot(l), copy));
  }
  return backend->Record(internal::TransferBackend::kHostFree, copy);
}

// `stream` waits for each layer's copies (EnqueueCopies) before unpacking that layer, and records it as ready.
Status PagedKvTransfer::Impl::EnqueueUnpacks(std::span<const RoundChunk> chunks, const PagedTarget& t, bool layerwise,
                                             gpu::StreamHandle stream) {
  const uint32_t layers = t.cache.shape.num_layers;
  if (!layerwise) {
    KVTIER_RETURN_IF_ERROR(backend->StreamWait(internal::TransferBackend::CopiedSlot(0), stream));
    for (const RoundChunk& c : chunks) KVTIER_RETURN_IF_ERROR(UnpackChunk(c, t, -1, stream));
    for (uint32_t l = 0; l < layers; ++l) KVTIER_RETURN_IF_ERROR(backend->Record(backend->LayerReadySlot(l), stream));
    return backend->Record(internal::TransferBackend::kRoundDone, stream);
  }
  for (uint32_t l = 0; l < layers; ++l) {
    KVTIER_RETURN_IF_ERROR(backend->StreamWait(internal::TransferBackend::CopiedSlot(l), stream));
    for (const RoundChunk& c : chunks) KVTIER_RETURN_IF_ERROR(UnpackChunk(c, t, static_cast<int>(l), stream));
    KVTIER_RETURN_IF_ERROR(backend->Record(backend->LayerReadySlot(l), stream));
  }
  return backend->Record(internal::TransferBackend::kRoundDone, stream);
}

// Copies and unpacks of one round. After a failure part of the work may be queued and the events not recorded:
// everything is drained, so no later call reuses a staging that orphaned work still touches.
Status PagedKvTransfer::Impl::EnqueueRound(std::span<const RoundChunk> chunks, const PagedTarget& t, bool layerwise,
                                           gpu::StreamHandle stream) {
  Status s = EnqueueCopies(chunks, t.cache.shape, layerwise);
  if (s.ok()) s = EnqueueUnpacks(chunks, t, layerwise, stream);
  if (!s.ok()) (void)backend->Drain(stream);
  return s;
}

Result<PagedKvTransfer::Impl::Round> PagedKvTransfer::Impl::PlanRound(
    const gpu::PagedKvShape& shape, std::span<const GetResult> results, size_t first_index, uint32_t position,
    const std::function<const std::byte*(size_t)>& source) const {
  Round round;
  for (size_t i = 0; i < results.size(); ++i) {
    const GetResult& r = results[i];
    if (!r.found) {
      round.missed = true;
      break;
    }
    if (r.bytes != shape.ChunkBytes(r.num_tokens)) {
      return DataLoss("paged transfer: chunk " + std::to_string(first_index + i) + " has " + std::to_string(r.bytes) +
                      " bytes, not the " + std::to_string(shape.ChunkBytes(r.num_tokens)) + " of " +
                      std::to_string(r.num_tokens) + " tokens");
    }
    round.chunks.push_back(RoundChunk{source(i), i * slot_bytes, r.num_tokens, position,
                                      int64_t{position} - int64_t{r.base_position}});
    position += r.num_tokens;
  }
  round.end_position = position;
  return round;
}

Result<std::optional<PagedKvTransfer::Impl::Round>> PagedKvTransfer::Impl::LeasedRound(
    Client* client, const gpu::PagedKvShape& shape, std::span<const ChunkKey> keys, size_t first_index,
    const PagedTarget& t, uint32_t position, const PagedTransferOptions& options, gpu::StreamHandle stream,
    std::span<GetResult> results) {
  std::optional<Round> placed;
  bool unusable = false;  // an encoded chunk, or an arena the GPU cannot read: this round goes through GetBatch
  auto sink = [&](const LeasedArena& arena, std::span<LeasedChunk> hits, std::vector<size_t>* corrupt) -> Status {
    std::vector<GetResult> leading(keys.size());
    std::vector<const std::byte*> sources(keys.size(), nullptr);
    for (const LeasedChunk& h : hits) {
      if (h.codec != v1::CODEC_RAW) {
        unusable = true;
        return Cancelled("an encoded chunk: decoded through GetBatch");
      }
      leading[h.index] = h.result;
      sources[h.index] = h.payload.data();
    }
    if (Status s = backend->PrepareSource(arena); !s.ok()) {
      unusable = true;
      stats.zero_copy_off = "the server's shared arena cannot be registered with the GPU: " + s.ToString();
      return s;
    }
    auto round = PlanRound(shape, leading, first_index, position, [&](size_t i) { return sources[i]; });
    if (!round.ok()) return round.status();
    if (round->chunks.empty()) {
      placed = std::move(*round);
      return Status::Ok();
    }
    KVTIER_RETURN_IF_ERROR(CheckCoverage(t, round->end_position));
    // Only the copies happen under the leases; the unpacks wait until the release confirmed the leases held
    // (bytes read under an expired lease may be another chunk's and must never reach the cache).
    if (Status s = EnqueueCopies(round->chunks, shape, options.layerwise); !s.ok()) {
      (void)backend->DrainCopies();  // nothing may still read the arena when the leases end
      return s;
    }
    // The shared-memory path leaves verification to the reader: hash while the copies run. Placement ends before
    // the first corrupt chunk.
    size_t intact = round->chunks.size();
    if (options.verify_leased) {
      for (size_t j = 0; j < hits.size(); ++j) {
        if (Checksum64(hits[j].payload) == hits[j].checksum) continue;
        corrupt->push_back(j);
        intact = std::min(intact, hits[j].index);
      }
    }
    if (intact < round->chunks.size()) {
      round->missed = true;
      round->end_position = round->chunks[intact].position;
      round->chunks.resize(intact);
    }
    placed = std::move(*round);
    // The leases end when this returns: the copies out of the arena must be finished by then.
    return backend->HostWait(internal::TransferBackend::kHostFree);
  };
  auto got = client->GetLeased(keys, sink);
  if (unusable) return std::optional<Round>();
  if (!got.ok()) return got.status();
  if (!*got) return std::optional<Round>();
  std::copy((*got)->begin(), (*got)->end(), results.begin());
  if (!placed) placed = Round{{}, position, true};  // nothing found: the sink never ran
  if (!placed->chunks.empty()) {
    if (Status s = EnqueueUnpacks(placed->chunks, t, options.layerwise, stream); !s.ok()) {
      (void)backend->Drain(stream);
      return s;
    }
  }
  stats.leased_chunks += placed->chunks.size();
  return placed;
}

Result<LayerwiseLoad> PagedKvTransfer::GetToDevice(std::span<const ChunkKey> keys, const PagedTarget& target,
                                                   gpu::StreamHandle stream) {
  KVTIER_RETURN_IF_ERROR(impl_->CheckTarget(shape_, target));
  internal::TransferBackend& backend = *impl_->backend;
  LayerwiseLoad load;
  load.results.resize(keys.size());
  load.num_layers_ = shape_.num_layers;
  load.layer_events_ = backend.layer_events();
  std::vector<std::span<std::byte>> dests(impl_->chunks_per_round);
  for (uint32_t i = 0; i < impl_->chunks_per_round; ++i) {
    dests[i] = backend.host_staging().subspan(i * impl_->slot_bytes, impl_->slot_bytes);
  }
  uint32_t position = target.first_token;
  for (size_t start = 0; start < keys.size(); start += impl_->chunks_per_round) {
    const size_t count = std::min<size_t>(impl_->chunks_per_round, keys.size() - start);
    const std::span<const ChunkKey> round_keys = keys.subspan(start, count);
    const std::span<GetResult> round_results = std::span(load.results).subspan(start, count);
    std::optional<Impl::Round> round;
    if (options_.zero_copy && impl_->stats.zero_copy_off.empty()) {
      auto leased = impl_->LeasedRound(client_, shape_, round_keys, start, target, position, options_, stream,
                                       round_results);
      if (!leased.ok()) return leased.status();
      round = std::move(*leased);
    }
    if (!round) {
      // The host staging is overwritten by this get: the previous round's copies out of it must be done.
      KVTIER_RETURN_IF_ERROR(backend.HostWait(internal::TransferBackend::kHostFree));
      auto got = client_->GetBatch(round_keys, std::span(dests).first(count));
      if (!got.ok()) return got.status();
      std::copy(got->begin(), got->end(), round_results.begin());
      const std::byte* staging = backend.host_staging().data();
      auto planned = impl_->PlanRound(shape_, *got, start, position,
                                      [&](size_t i) { return staging + i * impl_->slot_bytes; });
      if (!planned.ok()) return planned.status();
      if (!planned->chunks.empty()) {
        KVTIER_RETURN_IF_ERROR(impl_->CheckCoverage(target, planned->end_position));
        KVTIER_RETURN_IF_ERROR(impl_->EnqueueRound(planned->chunks, target, options_.layerwise, stream));
      }
      impl_->stats.staged_chunks += planned->chunks.size();
      round = std::move(*planned);
    }
    load.placed_chunks += static_cast<uint32_t>(round->chunks.size());
    position = round->end_position;
    if (round->missed) break;
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

  internal::TransferBackend& backend = *impl_->backend;
  std::vector<PutResult> results;
  results.reserve(keys.size());
  std::vector<ChunkPut> puts;
  uint32_t position = source.first_token;
  for (size_t start = 0; start < keys.size(); start += impl_->chunks_per_round) {
    const size_t count = std::min<size_t>(impl_->chunks_per_round, keys.size() - start);
    puts.clear();
    // The pack writes into the device staging and its copy into the host staging: whatever a previous call
    // queued on either must be done.
    Status packed = backend.StreamWait(internal::TransferBackend::kRoundDone, stream);
    if (packed.ok()) packed = backend.StreamWait(internal::TransferBackend::kHostFree, stream);
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
    if (packed.ok()) packed = backend.Record(internal::TransferBackend::kRoundDone, stream);
    if (!packed.ok()) {
      (void)backend.Drain(stream);  // part of the round may be queued: nothing may touch the stagings later
      return packed;
    }
    KVTIER_RETURN_IF_ERROR(backend.HostWait(internal::TransferBackend::kRoundDone));
    auto put = client_->PutBatch(puts);
    if (!put.ok()) return put.status();
    results.insert(results.end(), put->begin(), put->end());
  }
  return results;
}

}  // namespace kvtier
