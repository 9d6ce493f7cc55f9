// Dequantization of int8-coded chunks (codec/FORMAT.md, "int8") on the GPU, with a CPU twin of identical
// semantics.
//
// An int8 container holds exactly one stream per layer, back to back with no padding; layer l's stream is
// [K scales: T x f32][V scales: T x f32][K codes: T x R x i8][V codes: T x R x i8], R = kv_heads * head_dim.
// The container's body (everything after the header and the stream table) is therefore one buffer of L such
// streams: that buffer, unchanged, is the kernel's input (Int8Payload), so a host chunk goes to the device in
// one copy. ParseInt8Container makes on the host every check codec::Decode makes before it dequantizes
// (header, table, codec, stream count and lengths, stream checksums, scales), using the codec's public
// Inspect for the container; a payload it returns dequantizes without error.
//
// Output: the canonical layout [layer][K|V][token][kv_head][head_dim] in fp16, bf16 or fp32. Each value is
// q * (scale / 127) in fp32, one rounding per division and product (q = -128 reads as -127), then rounded to
// the output dtype to nearest even: the codec's DequantizeInt8 and FromFloat. With the container's dtype as
// output dtype the result equals codec::Decode bit for bit; fp32 output from an fp16/bf16 container gives the
// fp32 values before the codec's final rounding. Kernel and twin are bit-identical (the same correctly
// rounded operations on both sides).
//
// Ownership: the caller owns every buffer; Int8Payload is a view. Validation: the twin checks the scales (it
// can read them) as the codec does; the device variant cannot read its device-memory payload on the host
// and trusts it (pass what ParseInt8Container accepted): a negative or non-finite scale there gives
// meaningless values, never an out-of-bounds access. Stateless, thread-safe on distinct buffers; the device
// variant only enqueues on `stream` (nullptr: the default stream).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "kvtier/api/status.h"
#include "kvtier/api/types.h"
#include "kvtier/gpu/rope.h"
#include "kvtier/gpu/stream.h"

namespace kvtier::gpu {

struct Int8Payload {
  ChunkShape shape;                  // the encoded chunk's shape and dtype
  std::span<const std::byte> body;   // shape.num_layers streams of Int8StreamBytes(shape) bytes each
};

// Bytes of one layer's int8 stream: 8T + 2TR.
uint64_t Int8StreamBytes(const ChunkShape& shape);
// Bytes of the output in `out_dtype`: L * 2 * T * R * element size.
uint64_t Int8OutputBytes(const ChunkShape& shape, DType out_dtype);

// The payload of an int8 container in host memory (a view into `encoded`). INVALID_ARGUMENT or DATA_LOSS
// where codec::Decode would refuse the container; also INVALID_ARGUMENT for another codec.
Result<Int8Payload> ParseInt8Container(std::span<const std::byte> encoded);

// CPU twin: payload and `out` in host memory; `out` is exactly Int8OutputBytes(shape, out_dtype) bytes.
Status DequantizeInt8Cpu(const Int8Payload& payload, DType out_dtype, std::span<std::byte> out);

// The same on the GPU: payload body and `out` in device memory (the spans are host values). Arguments are
// checked first (INVALID_ARGUMENT), then UNAVAILABLE without CUDA or a GPU; INTERNAL for a launch error.
Status DequantizeInt8(const Int8Payload& payload, DType out_dtype, std::span<std::byte> out,
                      StreamHandle stream = nullptr);

}  // namespace kvtier::gpu
