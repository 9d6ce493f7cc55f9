// TransferBackend: where PagedKvTransfer's bytes go, on the GPU or in its CPU twin. The transfer's control flow
// (rounds, positions, layers) is written once against this interface; the device backend enqueues copies and
// kernels on CUDA streams and orders them with events, the host backend does the same work at once with
// memcpy and the kernels' CPU twins (every ordering call is then a no-op).
//
// Events are addressed by slot: kRoundDone (the last round's kernels and copies finished: both stagings are
// free), kHostFree (the last round's copies out of the host staging finished), kDecoded (the round's cachegen
// decode ran and its error codes are back in the host slots), CopiedSlot(layer) (the copy stream put that
// layer of the round into the device staging) and LayerReadySlot(layer) (that layer is in the cache). Owned
// by one PagedKvTransfer; not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "kvtier/api/status.h"
#include "kvtier/client/client.h"
#include "kvtier/client/paged_transfer.h"
#include "kvtier/gpu/cachegen_decode.h"
#include "kvtier/gpu/int8_dequant.h"
#include "kvtier/gpu/paged_kv.h"
#include "kvtier/gpu/stream.h"

namespace kvtier::internal {

class TransferBackend {
 public:
  enum SlotBase : uint32_t { kRoundDone = 0, kHostFree = 1, kDecoded = 2, kCopied = 3 };

  // Staging of `staging_bytes` on each side (and an encoded staging of as much on the device side with
  // `decode`) and 2 * num_layers + kCopied events, allocated and touched here.
  static Result<std::unique_ptr<TransferBackend>> Create(TransferPlacement placement, uint64_t staging_bytes,
                                                         uint32_t num_layers, bool decode);
  virtual ~TransferBackend() = default;

  // Gets land here and puts leave from here (pinned for the device backend).
  virtual std::span<std::byte> host_staging() = 0;
  // What the kernels read and write; same size and offsets as host_staging().
  virtual std::span<std::byte> device_staging() = 0;
  // Device-side input of the decoders (encoded bodies, cachegen images and workspaces), same size and slot
  // offsets; empty when the backend was created without `decode`.
  virtual std::span<std::byte> encoded_staging() = 0;
  // The backend's own stream for host-to-device copies (nullptr for the twin).
  virtual gpu::StreamHandle copy_stream() const = 0;
  // Makes `arena` (a server's shared arena, mapped read-only) a valid copy source: the device backend registers
  // it with the GPU once (and again when a server restart brought a new mapping), keeping it mapped meanwhile.
  virtual Status PrepareSource(const LeasedArena& arena) = 0;
  // The device address, in this process, of the server's GPU tier arena (arena.gpu_ipc_handle opened by CUDA
  // IPC once, and again when the server brought a new one). The twin reads no GPU memory: UNAVAILABLE.
  virtual Result<const std::byte*> PrepareGpuSource(const LeasedArena& arena) = 0;

  virtual Status Copy(void* dst, const void* src, size_t bytes, gpu::StreamHandle stream) = 0;
  virtual Status Unpack(const gpu::PagedKvCache& cache, const gpu::SequenceSlice& seq,
                        std::span<const std::byte> chunk, const gpu::UnpackOptions& options,
                        gpu::StreamHandle stream) = 0;
  virtual Status Pack(const gpu::PagedKvCache& cache, const gpu::SequenceSlice& seq, std::span<std::byte> chunk,
                      gpu::StreamHandle stream) = 0;
  // A copy of `bytes` on the device side (16-byte aligned), kept until the backend is destroyed; copied before
  // the call returns. For data every round reads, such as a shared profile's cachegen tables.
  virtual Result<std::span<const std::byte>> KeepResident(std::span<const std::byte> bytes) = 0;
  // int8 dequantization of a payload in the encoded staging into `out` (device staging).
  virtual Status DequantizeInt8(const gpu::Int8Payload& payload, DType out_dtype, std::span<std::byte> out,
                                gpu::StreamHandle stream) = 0;
  // Cachegen decoding of `chunks` (their buffers in the stagings): the device enqueues it, the twin decodes at
  // once. Either way the chunks' decode errors are in their workspaces afterwards (gpu::CachegenDeviceStatus).
  virtual Status DecodeCachegen(std::span<const gpu::CachegenDeviceChunk> chunks, gpu::StreamHandle stream) = 0;

  // Captures the work queued so far on `stream` in event `slot`.
  virtual Status Record(uint32_t slot, gpu::StreamHandle stream) = 0;
  // Later work on `stream` waits for event `slot` (no host blocking).
  virtual Status StreamWait(uint32_t slot, gpu::StreamHandle stream) = 0;
  // The host blocks until event `slot` has completed (an event never recorded is complete).
  virtual Status HostWait(uint32_t slot) = 0;
  // The host blocks until everything queued on the copy stream has finished (after a failed enqueue, when the
  // events may not have been recorded).
  virtual Status DrainCopies() = 0;
  // The same for the copy stream and `stream`.
  virtual Status Drain(gpu::StreamHandle stream) = 0;
  // The per-layer "in the cache" events, from slot LayerReadySlot(0) on; empty for the twin.
  virtual std::span<const gpu::Event> layer_events() const = 0;

  static uint32_t CopiedSlot(uint32_t layer) { return kCopied + layer; }
  uint32_t LayerReadySlot(uint32_t layer) const { return kCopied + num_layers_ + layer; }

 protected:
  explicit TransferBackend(uint32_t num_layers) : num_layers_(num_layers) {}
  uint32_t num_layers_;
};

}  // namespace kvtier::internal
