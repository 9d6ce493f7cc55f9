// PagedKvTransfer: moves chunks between kvtier and an inference worker's paged KV cache (vLLM layout, see
// kvtier/gpu/paged_kv.h): GetToDevice fetches chunks and unpacks them into the worker's GPU cache
// asynchronously on the worker's stream, layer by layer, so the worker may start computing layer i while
// layers i+1.. are still loading; PutFromDevice packs a sequence's tokens out of the GPU cache and stores them.
//
// The same object runs as its own CPU twin (PagedTransferOptions::placement = kHost): the cache, block table
// and results live in host memory, every copy is a memcpy and every kernel its CPU twin, with byte-identical
// results. Tests use the twin where there is no GPU; the control flow (staging, rounds, positions,
// re-rotation, misses) is the same code.
//
// Chunks of one call are consecutive pieces of one sequence: chunk i is placed right after chunk i-1, the first
// at target.first_token. A get places the leading hits and stops at the first miss (the worker recomputes from
// there). A chunk whose stored base position differs from where it is placed gets its keys re-rotated on the
// way in (fused into the unpack kernel) when the fingerprint says keys are stored after RoPE.
//
// Staging: one host buffer (pinned when a GPU is used, so copies are real DMA) and one device buffer of
// staging_bytes each (plus a second device buffer for encoded chunks with device_decode), allocated and touched
// once at Create; calls never allocate large memory. Calls needing more than the staging hold run in rounds. On
// the server's own host the host staging is skipped: chunks are copied to the GPU straight from the server's
// shared arena while the client holds leases on them (Client::GetLeased); the call returns once those copies
// are done and verified, with the unpacks queued layer by layer. From another node, chunks in the server's GPU
// tier come over a GPU channel (NCCL) into the device staging; the call returns once they landed. Nothing is
// written past placed_tokens.
//
// Encoded chunks (int8, cachegen) are decoded on the GPU by default: the host parses and checks each container
// (the codec's own checks), only the encoded body crosses PCIe, and the decoder writes the raw chunk into the
// device staging, layer by layer for int8 and in one launch per round for cachegen. A shared cachegen
// profile's tables are copied to the device once per transfer and level; inline tables travel with their
// chunk. A round holding cachegen chunks waits for their decode before it returns, so that a chunk whose stream
// the decoder refuses never reaches the cache: placement stops before it, like at a miss, with codec::Decode's
// message in LayerwiseLoad::error.
//
// Host work: the shared-memory path leaves verification to the reader, so the transfer hashes every chunk it
// copies out of the arena, and parsing an encoded chunk hashes each of its streams (the codec's checks). With an
// executor on the client (ClientOptions::encode.executor) a round's chunks are hashed and parsed on it in parallel;
// without one the calling thread does it all, which can cap a same-host load below the PCIe rate.
//
// Failures: a failure after some chunks were placed (a refused stream, a server or network error in a later
// round, a block table too short for a later chunk) ends the call with those chunks placed and counted and the
// failure in LayerwiseLoad::error; the worker recomputes from placed_tokens as after a miss. A failure before
// any chunk was placed is the call's error.
//
// Ownership: the Client must outlive the transfer; caches, block tables and token ids are the caller's.
// Not thread-safe: one PagedKvTransfer per worker thread (it owns its staging). A LayerwiseLoad is valid until
// the next call on the same transfer.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kvtier/api/status.h"
#include "kvtier/api/types.h"
#include "kvtier/client/client.h"
#include "kvtier/gpu/paged_kv.h"
#include "kvtier/gpu/stream.h"

namespace kvtier {

enum class TransferPlacement {
  kDevice,  // the paged cache and block table are GPU memory; needs CUDA and a GPU
  kHost,    // the CPU twin: everything is host memory
};

struct PagedTransferOptions {
  TransferPlacement placement = TransferPlacement::kDevice;
  // Host and device staging, each. At least one full chunk of the fingerprint; a call moving more runs in
  // rounds of what fits (a round waits for the previous round's copies out of the host staging).
  uint64_t staging_bytes = 256ull << 20;
  // Copy and unpack layer by layer, with one event per layer (LayerwiseLoad::WaitLayer). false: one copy and
  // one all-layer unpack per chunk (fewer launches; every layer is ready only at the end).
  bool layerwise = true;
  // Re-rotate keys of chunks placed at a position other than their stored base position (keys stored after
  // RoPE only; with pre-RoPE keys the position does not matter).
  bool rerotate = true;
  // On the server's host (the client's shared-memory path, kvstore/SHM.md): copy raw chunks straight out of the
  // server's shared arena, registered once with the GPU (read-only), instead of through this process's staging.
  // Encoded chunks, and any round the path cannot serve, go through Client::GetBatch and the staging.
  bool zero_copy = true;
  // With zero_copy: hash each chunk on the CPU while the GPU copies it (the shared-memory path leaves
  // verification to the reader). false saves that CPU time and no longer detects corrupted host memory.
  // Encoded chunks are always hashed, before they are parsed.
  bool verify_leased = true;
  // With zero_copy, on the GPU: raw chunks the server also holds in its GPU tier are copied device-to-device out
  // of it (its arena opened by CUDA IPC, kvstore/GPU_TIER.md) instead of from DRAM. Needs peer access between
  // the two devices when the server's is another; without it, IPC is turned off for good (stats.ipc_off).
  bool ipc = true;
  // Where the shared-memory path does not serve (another node): raw chunks the server holds in its GPU tier
  // are received device to device into the device staging over a GPU channel (client/gpu_channel.h, NCCL;
  // the twin: its loopback link, which only an in-process server with an emulated GPU tier offers), opened at
  // the first get. The rest of a round goes through a gRPC get as before. A channel that cannot be opened,
  // or breaks, is turned off (stats.nccl_off) and the round is fetched over gRPC: for good when the server
  // or this process cannot have one (FAILED_PRECONDITION and other refusals), else until nccl_retry passed.
  bool nccl = true;
  std::chrono::milliseconds nccl_retry{30000};
  // How long the channel waits for the server to join the link, and for a round's receives to land (which
  // follow the previous round's unpacks on the caller's stream).
  std::chrono::milliseconds nccl_timeout{10000};
  // Decode int8 and cachegen chunks here, on the GPU (the twin: with the decoders' CPU twins): only the encoded
  // body and the cachegen tables cross PCIe, and the host only parses and checks the container. Costs a second
  // device staging of staging_bytes. Other codecs, and a chunk whose container does not fit one chunk's slot,
  // are decoded on the host by the client (GetBatch). false: every encoded chunk is decoded on the host.
  bool device_decode = true;

  Status Validate() const;
};

// Where in a paged cache a sequence's chunks go (or come from).
struct PagedTarget {
  gpu::PagedKvCache cache;               // layer pointers: device memory for kDevice, host for kHost
  const int32_t* block_table = nullptr;  // the sequence's block ids from position 0 (same memory as the cache)
  uint32_t block_table_size = 0;
  uint32_t first_token = 0;              // sequence position of the first chunk's first token
};

// What GetToDevice / GetToHost did. The per-layer events belong to the transfer and are re-recorded by its
// next call.
class LayerwiseLoad {
 public:
  std::vector<GetResult> results;  // one per key, as the server answered: found, bytes, num_tokens, base_position,
                                   // tier (placed_chunks, not found, says what reached the cache)
  uint32_t placed_chunks = 0;      // leading hits written into the cache
  uint32_t placed_tokens = 0;      // their tokens, from target.first_token
  Status error;                    // Ok, or why the call stopped before the first miss (see the top comment)

  // Makes work queued later on `stream` wait until layer `layer` of every placed chunk is in the cache,
  // without blocking the host (cudaStreamWaitEvent). The twin has finished before the call returns: Ok.
  Status WaitLayer(uint32_t layer, gpu::StreamHandle stream) const;
  // Blocks the host until every layer is in place.
  Status Synchronize() const;

 private:
  friend class PagedKvTransfer;
  std::span<const gpu::Event> layer_events_;  // the transfer's, one per layer; empty for the twin
  uint32_t num_layers_ = 0;
};

// How a transfer's chunks went (PagedKvTransfer::stats).
struct PagedTransferStats {
  uint64_t leased_chunks = 0;  // placed straight from the server's shared arena (zero_copy)
  uint64_t staged_chunks = 0;  // placed through a get into the host staging (GetBatchEncoded or GetBatch)
  uint64_t decoded_chunks = 0; // of those placed, encoded chunks decoded by the transfer (device_decode)
  uint64_t resident_table_sets = 0;  // shared cachegen profiles' tables kept on the device (one per level)
  std::string zero_copy_off;   // why zero_copy was turned off for good (the arena could not be registered)
  uint64_t ipc_chunks = 0;     // of the leased ones, copied device-to-device out of the server's GPU tier
  std::string ipc_off;         // why ipc was turned off for good (the server's GPU arena could not be opened)
  uint64_t nccl_chunks = 0;    // placed from the server's GPU tier over the GPU channel (nccl)
  std::string nccl_off;        // why the GPU channel is off (for good, or until PagedTransferOptions::nccl_retry)
};

class PagedKvTransfer {
 public:
  // The shape of the paged cache (layers, heads, head_dim and dtype must match the client's fingerprint;
  // num_blocks and block_size are the cache's own). UNAVAILABLE for kDevice without CUDA or a GPU.
  static Result<std::unique_ptr<PagedKvTransfer>> Create(Client* client, const gpu::PagedKvShape& shape,
                                                         const PagedTransferOptions& options = {});
  ~PagedKvTransfer();
  PagedKvTransfer(const PagedKvTransfer&) = delete;
  PagedKvTransfer& operator=(const PagedKvTransfer&) = delete;

  // Fetches `keys` (consecutive chunks of one sequence) and writes the leading hits into target's cache. The
  // network part runs on the calling thread; copies and unpacks are enqueued on `stream` and the call returns
  // once they are enqueued (kDevice) or done (kHost). INVALID_ARGUMENT for a target that does not match the
  // shape or whose block table does not cover the chunks.
  Result<LayerwiseLoad> GetToDevice(std::span<const ChunkKey> keys, const PagedTarget& target,
                                    gpu::StreamHandle stream);

  // Packs consecutive chunks of one sequence out of target's cache (chunk i has token_ids[i].size() tokens,
  // placed after chunk i-1) and puts them under `keys` with `options` (base_position is taken from where each
  // chunk sits). Waits for the packing that `stream` enqueued before the put; returns when the puts finished.
  Result<std::vector<PutResult>> PutFromDevice(std::span<const ChunkKey> keys,
                                               std::span<const std::span<const uint32_t>> token_ids,
                                               const PagedTarget& source, gpu::StreamHandle stream,
                                               const PutOptions& options = {});

  const PagedTransferOptions& options() const { return options_; }
  PagedTransferStats stats() const;

 private:
  struct Impl;
  PagedKvTransfer(Client* client, const gpu::PagedKvShape& shape, const PagedTransferOptions& options,
                  std::unique_ptr<Impl> impl);

  Client* client_;
  gpu::PagedKvShape shape_;
  PagedTransferOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvtier
