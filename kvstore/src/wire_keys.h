// Chunk keys as requests carry them (16-byte strings), parsed with the index of a bad one in the message.
#pragma once

#include <string>
#include <vector>

#include <google/protobuf/repeated_ptr_field.h>

#include "kvtier/api/status.h"
#include "kvtier/api/types.h"

namespace kvtier {

inline Result<std::vector<ChunkKey>> KeysOf(const google::protobuf::RepeatedPtrField<std::string>& wire) {
  std::vector<ChunkKey> keys;
  keys.reserve(wire.size());
  for (int i = 0; i < wire.size(); ++i) {
    auto key = ChunkKey::FromBytes(wire[i]);
    if (!key.ok()) return InvalidArgument("keys[" + std::to_string(i) + "]: " + key.status().message());
    keys.push_back(*key);
  }
  return keys;
}

}  // namespace kvtier
