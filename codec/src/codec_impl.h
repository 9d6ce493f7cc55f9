// The contract between the dispatcher (codec.cc) and each codec's implementation file. A codec fills
// EncodedStreams from a validated view and decodes a verified container into a buffer of exactly
// info.shape.RawBytes() bytes. Inputs are validated by the dispatcher before these are called:
// kv.data.size() == kv.shape.RawBytes(), shape valid, options in range; container header checks done.
// Each decoder must still bounds-check everything inside its streams.
#pragma once

#include <span>

#include "container.h"
#include "kvtier/codec/codec.h"

namespace kvtier::codec::internal {

Status EncodeRaw(const KvView& kv, const EncodeOptions& options, EncodedStreams& out);
Status DecodeRaw(const ParsedContainer& in, std::span<std::byte> out, const DecodeOptions& options);

Status EncodeLossless(const KvView& kv, const EncodeOptions& options, EncodedStreams& out);
Status DecodeLossless(const ParsedContainer& in, std::span<std::byte> out, const DecodeOptions& options);

Status EncodeInt8(const KvView& kv, const EncodeOptions& options, EncodedStreams& out);
Status DecodeInt8(const ParsedContainer& in, std::span<std::byte> out, const DecodeOptions& options);

Status EncodeCacheGen(const KvView& kv, const EncodeOptions& options, EncodedStreams& out);
Status DecodeCacheGen(const ParsedContainer& in, std::span<std::byte> out, const DecodeOptions& options);

Status EncodeKivi2(const KvView& kv, const EncodeOptions& options, EncodedStreams& out);
Status DecodeKivi2(const ParsedContainer& in, std::span<std::byte> out, const DecodeOptions& options);

Status EncodeMixed(const KvView& kv, const EncodeOptions& options, EncodedStreams& out);
Status DecodeMixed(const ParsedContainer& in, std::span<std::byte> out, const DecodeOptions& options);

}  // namespace kvtier::codec::internal
