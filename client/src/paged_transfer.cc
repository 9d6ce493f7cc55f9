#include "kvtier/client/paged_transfer.h"

#include <algorithm>
#include <string>
#include <utility>

#include "transfer_backend.h"

namespace kvtier {
namespace {

// One chunk of a round: where its bytes sit in the stagings and where it goes in the sequence.
struct RoundChunk {
  uint64_t offset = 0;  // in both stagings
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
  Status EnqueueUnpacks(std::span<const RoundChunk> chunks, const PagedTarget& t, bool layerwise,
                        gpu::StreamHandle stream);
  Status UnpackChunk(const RoundChunk& c, const PagedTarget& t, int layer, gpu::StreamHandle stream);
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

Status PagedKvTransfer::Impl::CheckTarget(const gpu::PagedKvShape& shape, const PagedTarget& t) const {
  const gpu::PagedKvShape& s = t.cache.shape;
  if (s.num_layers != shape.num_layers || s.num_blocks != shape.num_blocks || s.block_size != shape.block_size ||
      s.num_kv_heads != shape.num_kv_heads || s.head_dim != shape.head_dim || s.dtype != shape.dtype) {
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

// Copies go on the backend's copy stream (so they run ahead of the unpacks); `stream` waits for each layer's
// copies before unpacking it and records that layer as ready.
Status PagedKvTransfer::Impl::EnqueueUnpacks(std::span<const RoundChunk> chunks, const PagedTarget& t, bool layerwise,
                                             gpu::StreamHandle stream) {
  const uint32_t layers = t.cache.shape.num_layers;
  const uint64_t row = t.cache.shape.RowBytes();
  gpu::StreamHandle copy = backend->copy_stream();
  std::span<std::byte> host = backend->host_staging();
  std::span<std::byte> device = backend->device_staging();
  // The device staging is free once the previous round's unpacks ran.
  KVTIER_RETURN_IF_ERROR(backend->StreamWait(internal::TransferBackend::kRoundDone, copy));
  if (!layerwise) {
    for (const RoundChunk& c : chunks) {
      const uint64_t bytes = 2 * uint64_t{c.num_tokens} * row * layers;
      KVTIER_RETURN_IF_ERROR(backend->Copy(device.data() + c.offset, host.data() + c.offset, bytes, copy));
    }
    KVTIER_RETURN_IF_ERROR(backend->Record(internal::TransferBackend::CopiedSlot(0), copy));
    KVTIER_RETURN_IF_ERROR(backend->Record(internal::TransferBackend::kHostFree, copy));
    KVTIER_RETURN_IF_ERROR(backend->StreamWait(internal::TransferBackend::CopiedSlot(0), stream));
    for (const RoundChunk& c : chunks) KVTIER_RETURN_IF_ERROR(UnpackChunk(c, t, -1, stream));
    for (uint32_t l = 0; l < layers; ++l) KVTIER_RETURN_IF_ERROR(backend->Record(backend->LayerReadySlot(l), stream));
    return backend->Record(internal::TransferBackend::kRoundDone, stream);
  }
  for (uint32_t l = 0; l < layers; ++l) {
    for (const RoundChunk& c : chunks) {
      const uint64_t layer_bytes = 2 * uint64_t{c.num_tokens} * row;
      const uint64_t at = c.offset + l * layer_bytes;
      KVTIER_RETURN_IF_ERROR(backend->Copy(device.data() + at, host.data() + at, layer_bytes, copy));
    }
    KVTIER_RETURN_IF_ERROR(backend->Record(internal::TransferBackend::CopiedSlot(l), copy));
  }
  KVTIER_RETURN_IF_ERROR(backend->Record(internal::TransferBackend::kHostFree, copy));
  for (uint32_t l = 0; l < layers; ++l) {
    KVTIER_RETURN_IF_ERROR(backend->StreamWait(internal::TransferBackend::CopiedSlot(l), stream));
    for (const RoundChunk& c : chunks) KVTIER_RETURN_IF_ERROR(UnpackChunk(c, t, static_cast<int>(l), stream));
    KVTIER_RETURN_IF_ERROR(backend->Record(backend->LayerReadySlot(l), stream));
  }
  return backend->Record(internal::TransferBackend::kRoundDone, stream);
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
  std::vector<RoundChunk> round;
  round.reserve(impl_->chunks_per_round);
  uint32_t position = target.first_token;
  bool missed = false;
  for (size_t start = 0; start < keys.size() && !missed; start += impl_->chunks_per_round) {
    const size_t count = std::min<size_t>(impl_->chunks_per_round, keys.size() - start);
    // The host staging is overwritten by this round's get: the previous round's copies out of it must be done.
    KVTIER_RETURN_IF_ERROR(backend.HostWait(internal::TransferBackend::kHostFree));
    auto got = client_->GetBatch(keys.subspan(start, count), std::span(dests).first(count));
    if (!got.ok()) return got.status();
    round.clear();
    for (size_t i = 0; i < count; ++i) {
      const GetResult& r = (*got)[i];
      load.results[start + i] = r;
      if (missed || !r.found) {
        missed = true;
        continue;
      }
      if (r.bytes != shape_.ChunkBytes(r.num_tokens)) {
        return DataLoss("paged transfer: chunk " + std::to_string(start + i) + " has " + std::to_string(r.bytes) +
                        " bytes, not the " + std::to_string(shape_.ChunkBytes(r.num_tokens)) + " of " +
                        std::to_string(r.num_tokens) + " tokens");
      }
      round.push_back(RoundChunk{i * impl_->slot_bytes, r.num_tokens, position,
                                 int64_t{position} - int64_t{r.base_position}});
      position += r.num_tokens;
    }
    if (round.empty()) break;
    KVTIER_RETURN_IF_ERROR(impl_->CheckCoverage(target, position));
    KVTIER_RETURN_IF_ERROR(impl_->EnqueueUnpacks(round, target, options_.layerwise, stream));
    load.placed_chunks += static_cast<uint32_t>(round.size());
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
    KVTIER_RETURN_IF_ERROR(backend.StreamWait(internal::TransferBackend::kRoundDone, stream));
    KVTIER_RETURN_IF_ERROR(backend.StreamWait(internal::TransferBackend::kHostFree, stream));
    for (size_t i = 0; i < count; ++i) {
      const uint32_t n = static_cast<uint32_t>(token_ids[start + i].size());
      const uint64_t offset = i * impl_->slot_bytes;
      const uint64_t bytes = shape_.ChunkBytes(n);
      const gpu::SequenceSlice seq{source.block_table, source.block_table_size, position, n};
      KVTIER_RETURN_IF_ERROR(backend.Pack(source.cache, seq, backend.device_staging().subspan(offset, bytes), stream));
      KVTIER_RETURN_IF_ERROR(backend.Copy(backend.host_staging().data() + offset,
                                          backend.device_staging().data() + offset, bytes, stream));
      PutOptions o = options;
      o.base_position = position;
      puts.push_back(ChunkPut{keys[start + i], token_ids[start + i], backend.host_staging().subspan(offset, bytes), o});
      position += n;
    }
    KVTIER_RETURN_IF_ERROR(backend.Record(internal::TransferBackend::kRoundDone, stream));
    KVTIER_RETURN_IF_ERROR(backend.HostWait(internal::TransferBackend::kRoundDone));
    auto put = client_->PutBatch(puts);
    if (!put.ok()) return put.status();
    results.insert(results.end(), put->begin(), put->end());
  }
  return results;
}

}  // namespace kvtier
