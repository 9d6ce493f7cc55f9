// Decoding of cachegen-coded chunks (codec/CACHEGEN.md, CodecId 4) on the GPU, with a CPU twin of identical
// semantics.
//
// ParseCachegenContainer runs on the host every check codec::Decode makes before it reads a data stream's
// entropy-coded words, with the codec's own code (container header and table, codec parameters, stream
// count, the inline table streams or the referenced profile, every stream checksum, each data stream's
// length, row scales and coder states), and refuses with the decoder's code and message. What it returns, a
// CachegenPlan, is what decoding needs besides the data streams' bytes: one record per data stream (where
// it lies in the body, which rows it writes, which tables and bin count it uses) and every table the chunk
// uses, flattened into one array. Copy the body and CachegenImage(plan) (records, then tables) to the device
// once each.
//
// A data stream decodes on its own (one slice, one run of tokens), so streams are the unit of work: the twin
// decodes them one after another, the kernel runs one thread per stream, over every stream of a batch of
// chunks in one launch. Both run the same per-stream code: the rANS pass with every read bounds-checked,
// dequantization in fp32 with one rounding per operation (no FMA), the clamp to the chunk dtype's largest
// finite value and the rounding to the output dtype, written at the stream's rows of the canonical layout
// [layer][K|V][token][kv_head][head_dim]. With the chunk's dtype as output dtype the result equals
// codec::Decode bit for bit; fp32 output gives the values before the codec's final rounding.
//
// Errors only decoding can find (a read past a stream's end, an escaped symbol outside the alphabet, words
// left over or states not back at 2^16 at the end) are codec::Decode's: INVALID_ARGUMENT
// "cachegen stream N: ..." for the lowest such stream. The twin returns it; the kernel writes one code per
// stream into its workspace, and CachegenDeviceStatus turns the codes into the same Status. codec::Decode
// names the lowest failing stream whatever its fault, so when the parse refuses a stream it first decodes the
// streams before it (on the CPU) and names an earlier one that fails: its answer is always the decoder's.
//
// Ownership: the caller owns every buffer; a plan's body is a view into the encoded container, which must
// outlive it. Stateless functions, thread-safe on distinct outputs; the device entry point only enqueues on
// `stream` (nullptr: the default stream).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "kvtier/api/status.h"
#include "kvtier/api/types.h"
#include "kvtier/gpu/cachegen_layout.h"
#include "kvtier/gpu/rope.h"
#include "kvtier/gpu/stream.h"

namespace kvtier::codec {
class ModelProfile;
}  // namespace kvtier::codec

namespace kvtier::gpu {

// codec::ProfileResolver, spelled out so that this header does not need the codec's include path.
using CachegenProfileResolver = std::function<const codec::ModelProfile*(uint64_t profile_id)>;

struct CachegenPlan {
  ChunkShape shape;                      // the chunk's shape and dtype
  int level = 0;                         // quality level, 1..3
  bool anchor_delta = false;             // rows grouped by 10 from each stream's start, deltas to the first
  uint32_t tokens_per_stream = 0;        // the container's codec_param, 1..256
  uint64_t profile_id = 0;               // the shared profile whose tables were used; 0: inline tables
  std::vector<CachegenStream> streams;   // data streams in container order: slice-major, then sub-chunks
  std::vector<CachegenTable> tables;     // per slice: `width` plain tables, then (anchor-delta) `width` delta
  // A shared profile's tables when the parse was given a CachegenTableCache: held here, shared with every plan
  // of that profile, level and anchor-delta setting, and `tables` is left empty.
  std::shared_ptr<const std::vector<CachegenTable>> profile_tables;
  std::span<const std::byte> body;       // the data streams back to back, a view into the container

  // The tables the chunk decodes with: *profile_tables when set, else `tables`.
  std::span<const CachegenTable> Tables() const {
    return profile_tables ? std::span<const CachegenTable>(*profile_tables) : std::span<const CachegenTable>(tables);
  }
};

// Shared profiles' tables flattened once and kept between parses, so that the chunks of one profile share one
// copy instead of each flattening its own (4.25 MiB for 32 layers x 8 KV heads x 128 dims, twice that with
// anchor-delta rows). A profile id is the hash of the profile's bytes: one id, one set of tables. Holds at most
// `max_sets` sets (profile, level, anchor-delta), dropping the least recently used; plans keep theirs alive.
// Thread-safe.
class CachegenTableCache {
 public:
  using Tables = std::shared_ptr<const std::vector<CachegenTable>>;
  struct Key {
    uint64_t profile_id = 0;
    int level = 0;
    bool anchor_delta = false;
    bool operator==(const Key&) const = default;
  };

  explicit CachegenTableCache(size_t max_sets = 8) : max_sets_(max_sets) {}
  // The set under `key`, built by `build` (into an empty vector) when absent.
  Result<Tables> Get(const Key& key, const std::function<Status(std::vector<CachegenTable>&)>& build);
  size_t size() const;

 private:
  mutable std::mutex mu_;
  size_t max_sets_;
  std::vector<std::pair<Key, Tables>> sets_;  // guarded by mu_; most recently used last
};

// The plan of a cachegen container in host memory. `profiles` resolves the profile a chunk without inline
// tables references, as DecodeOptions::profiles does for codec::Decode; with `table_cache`, such a chunk's
// tables come from the cache (plan.profile_tables). INVALID_ARGUMENT, DATA_LOSS or NOT_FOUND where
// codec::Decode refuses the container before decoding symbols (with its message); also INVALID_ARGUMENT for
// another codec.
Result<CachegenPlan> ParseCachegenContainer(std::span<const std::byte> encoded,
                                            const CachegenProfileResolver& profiles = {},
                                            CachegenTableCache* table_cache = nullptr);

// Output size in `out_dtype`: shape.Bytes() with that element size.
uint64_t CachegenOutputBytes(const CachegenPlan& plan, DType out_dtype);
// The device image: the stream records, then the tables from byte CachegenTablesOffset(plan) on.
uint64_t CachegenTablesOffset(const CachegenPlan& plan);
uint64_t CachegenImageBytes(const CachegenPlan& plan);
std::vector<std::byte> CachegenImage(const CachegenPlan& plan);
// The device workspace: one uint32 code per stream (CachegenErrorBytes), then, for anchor-delta chunks, one
// fp32 anchor row per stream (16-byte aligned).
uint64_t CachegenErrorBytes(const CachegenPlan& plan);
uint64_t CachegenWorkspaceBytes(const CachegenPlan& plan);

// CPU twin: decodes plan.body into `out` (host memory, exactly CachegenOutputBytes(plan, out_dtype) bytes,
// aligned to the element). INVALID_ARGUMENT for an inconsistent plan or a bad output, or the first stream
// that does not decode (codec::Decode's message).
Status DecodeCachegenCpu(const CachegenPlan& plan, DType out_dtype, std::span<std::byte> out);

// One chunk of a device decode. The spans are device memory (host values of device pointers).
struct CachegenDeviceChunk {
  const CachegenPlan* plan = nullptr;   // host memory
  std::span<const std::byte> body;      // plan->body, copied as is
  std::span<const std::byte> image;     // CachegenImage(*plan), copied as is; 16-byte aligned
  std::span<std::byte> workspace;       // at least CachegenWorkspaceBytes(*plan) bytes; 16-byte aligned
  std::span<std::byte> out;             // CachegenOutputBytes(*plan, out_dtype) bytes, aligned to the element
  DType out_dtype = DType::kUnspecified;
  // Optional: the tables part of the image (its bytes from CachegenTablesOffset on), kept apart, 16-byte
  // aligned; `image` is then only the records (CachegenTablesOffset(*plan) bytes). Chunks coded with one shared
  // profile at one level and anchor-delta setting have the same tables: one device copy serves them all.
  std::span<const std::byte> tables;
};

// DecodeCachegen's argument checks alone (INVALID_ARGUMENT naming the chunk), for code that stands in for the
// device, such as a transfer's CPU twin reading the same buffers in host memory.
Status CheckCachegenDeviceChunks(std::span<const CachegenDeviceChunk> chunks);

// CPU twin of DecodeCachegen below: the same chunks with their buffers in host memory, the same checks, every
// stream of every chunk decoded by the kernel's per-stream code, reading the records and tables where the
// chunk's image (or its tables kept apart) puts them and writing each stream's code into the workspace, as the
// kernel does. Decode errors are then in the workspaces (CachegenDeviceStatus), not in the returned Status.
Status DecodeCachegenCpu(std::span<const CachegenDeviceChunk> chunks);

// Enqueues the decode of every chunk in one launch per 32 chunks. Arguments are checked first as the twin
// checks them (INVALID_ARGUMENT naming the chunk), then UNAVAILABLE without CUDA or a GPU; INTERNAL for a
// launch error. Decode errors are in each chunk's workspace once the stream has run: see below.
Status DecodeCachegen(std::span<const CachegenDeviceChunk> chunks, StreamHandle stream = nullptr);

// After a device decode finished: `errors` is the first CachegenErrorBytes(plan) bytes of the chunk's
// workspace, copied to the host. OK, or the Status the twin returns for the same plan.
Status CachegenDeviceStatus(const CachegenPlan& plan, std::span<const std::byte> errors);

}  // namespace kvtier::gpu
