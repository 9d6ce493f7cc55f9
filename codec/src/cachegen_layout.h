// What cachegen decoding establishes before it reads a data stream's entropy-coded words: the checked
// container parameters, the geometry of slices and sub-chunks, the tables of every slice, and each data
// stream's row scales and coder states. Shared by the codec's decoder (cachegen.cc) and the GPU decoder's
// host parse (gpu/src/cachegen_parse.cc), so that both refuse the same containers with the same codes and
// messages (CACHEGEN.md "Hostile input").
//
// Plain values and functions; thread-safe. A layout may point into a ModelProfile the caller keeps alive.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "cachegen_tables.h"
#include "container.h"
#include "kvtier/codec/codec.h"
#include "range_coder.h"

namespace kvtier::codec::internal {

// The part of the chunk's shape every cachegen function needs.
struct Geometry {
  uint32_t layers = 0;
  uint32_t width = 0;   // kv_heads * head_dim: channels of one row
  uint32_t tokens = 0;
  uint32_t tokens_per_stream = 0;
  uint32_t sub_chunks = 0;
  size_t dtype_bytes = 0;

  Geometry(const KvShape& shape, uint32_t tps)
      : layers(shape.num_layers),
        width(shape.num_kv_heads * shape.head_dim),
        tokens(shape.num_tokens),
        tokens_per_stream(tps),
        sub_chunks((shape.num_tokens + tps - 1) / tps),
        dtype_bytes(DTypeBytes(shape.dtype)) {}
  uint32_t slices() const { return 2 * layers; }
  // Byte offset of row t of slice lk (= layer * 2 + kv) in the canonical layout.
  size_t RowOffset(uint32_t lk, uint32_t t) const { return (size_t{lk} * tokens + t) * width * dtype_bytes; }
};

// A container that passed every check before the data streams, with the tables to decode them.
struct CacheGenLayout {
  explicit CacheGenLayout(const Geometry& g) : geometry(g) {}

  Geometry geometry;
  int level = 0;
  bool anchor_delta = false;
  bool inline_tables = false;
  size_t first_data = 0;                    // container index of data stream 0 (2L with inline tables)
  std::vector<SliceTables> inline_slices;   // parsed table streams, [lk]; empty with a profile
  const std::vector<SliceTables>* profile_slices = nullptr;  // the profile's level, [lk]; else null

  const SliceTables& slice(uint32_t lk) const {
    return inline_tables ? inline_slices[lk] : (*profile_slices)[lk];
  }
  // Data stream i (0-based after the table streams) covers tokens [first, end) of slice i / sub_chunks.
  uint32_t StreamSlice(size_t i) const { return static_cast<uint32_t>(i / geometry.sub_chunks); }
  uint32_t StreamFirstToken(size_t i) const {
    return static_cast<uint32_t>(i % geometry.sub_chunks) * geometry.tokens_per_stream;
  }
  uint32_t StreamEndToken(size_t i) const;
  size_t num_data_streams() const { return size_t{geometry.slices()} * geometry.sub_chunks; }
};

// Every check DecodeCacheGen makes before the data streams, in its order (parameters, output size,
// stream count, table streams with their checksums, or the profile), and the tables. `out_bytes`: the
// caller's output size, checked against the shape.
Result<CacheGenLayout> PrepareCacheGenDecode(const ParsedContainer& in, uint64_t out_bytes,
                                             const DecodeOptions& options);

// Reads the `rows` bf16 row scales of data stream `index` into `scales` and sets `dec` up on its coder
// states. INVALID_ARGUMENT naming the stream (CorruptStream) when the stream is shorter than them, a scale
// is negative, NaN or infinite, or the states are malformed.
Status OpenDataStream(std::span<const std::byte> bytes, uint32_t index, uint32_t rows, float* scales,
                      RansDecoder& dec);

// The decoder's refusal of data stream `index` for `what`: OpenDataStream's three reasons, then the two
// only decoding finds.
Status CorruptStream(uint32_t index, const char* what);
inline constexpr char kStreamTooShort[] = "shorter than its scales and coder states";
inline constexpr char kBadRowScale[] = "row scale is negative, NaN or infinite";
inline constexpr char kBadCoderStates[] = "malformed coder states";
inline constexpr char kCorruptEntropy[] = "entropy-coded data is truncated or corrupt";
inline constexpr char kUnfinishedEntropy[] = "entropy-coded data does not end where the stream ends";

}  // namespace kvtier::codec::internal
