// The debug model used by `kvtier put` / `kvtier get`: arbitrary files stored as chunks.
//
// Fingerprint "kvtier-debug": 1 layer, 1 KV head, head_dim 1024, fp16, no RoPE, 65536 tokens per
// chunk, so one token is 4096 bytes of "KV". A file is framed as [u64 little-endian file length]
// [file bytes][zero padding to a whole token]; its token ids are 0..n-1. NAME is a key given as 32 hex
// digits, or any other text, which becomes the content key (docs/keys.md) of its bytes as token ids.
#pragma once

#include <string>
#include <string_view>

#include "kvtier/api/types.h"

namespace kvtier::cli {

inline constexpr std::string_view kDebugNamespace = "kvtier-debug";

ModelFingerprint DebugFingerprint();
ChunkKey DebugKey(std::string_view name);

}  // namespace kvtier::cli
