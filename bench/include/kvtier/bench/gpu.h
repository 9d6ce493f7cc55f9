// The GPU data-path benchmark behind `kvtier bench-gpu`: the limits measured in the same run (pinned
// host-to-device cudaMemcpy, device-to-device cudaMemcpy) and, against them, kvtier's paged-KV pack and unpack
// kernels (plain and with fused RoPE re-rotation), int8 and cachegen decoding on the GPU, the ShadowKV-style direct
// gather from pinned host memory, and a whole chunk load from an in-process server's host tier into a paged
// cache (PagedKvTransfer::GetToDevice). Every kernel row states its limit, the ratio to it and the target.
// After each chunk load the chunks are packed back out of the paged cache and compared with what was put (for
// int8 and cachegen, with the host decoder's output, which the GPU decoder matches exactly): a wrong load fails the
// run with INTERNAL. Needs a GPU: without one it fails with UNAVAILABLE and the probe's reason. Not thread-safe.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "kvtier/api/status.h"

namespace kvtier::bench {

struct GpuBenchOptions {
  uint32_t layers = 32;         // the model: Llama-3-8B-like KV (32 layers, 8 KV heads of 128, fp16)
  uint32_t kv_heads = 8;
  uint32_t head_dim = 128;
  uint32_t chunk_tokens = 256;  // tokens per chunk (128 KiB of KV per token: 32 MiB chunks)
  uint32_t chunks = 8;          // chunks per measured transfer (a 2048-token prefix)
  uint32_t block_size = 16;     // paged-cache tokens per block (vLLM's default)
  uint32_t iterations = 20;     // timed repetitions of each row, after one warm-up
  // The chunk loads' client executor (ClientOptions::encode.executor), on which the transfer verifies and parses
  // encoded chunks: 0 = every core, 1 = none (the calling thread does it all).
  uint32_t host_threads = 0;
  Status Validate() const;
};

struct GpuBenchRow {
  std::string what;        // "h2d pinned memcpy", "unpack", ...
  uint64_t bytes = 0;      // per iteration: the KV bytes moved (output bytes for decoders)
  double seconds = 0;      // per iteration
  double gbps = 0;         // bytes / seconds / 1e9
  std::string limit;       // the row it is compared with ("" for the limits themselves)
  double ratio = 0;        // gbps / the limit's gbps
  double target = 0;       // the ratio the issue asks for (0: none)
};

struct GpuBenchReport {
  std::string device;      // name and memory of the GPU used
  std::vector<GpuBenchRow> rows;
};

Result<GpuBenchReport> RunGpuBench(const GpuBenchOptions& options, std::ostream& progress);
void PrintGpuTable(const GpuBenchReport& report, std::ostream& out);
// {"device":"..","results":[{"what":..,"bytes":..,"seconds":..,"gbps":..,"limit":..,"ratio":..,"target":..},..]}
std::string GpuJsonLine(const GpuBenchReport& report);

}  // namespace kvtier::bench
