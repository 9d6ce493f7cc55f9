#include "shard/rendezvous.h"

#include <algorithm>
#include <array>
#include <cstring>

namespace kvtier {

uint64_t RendezvousWeight(std::string_view node, const ChunkKey& key) {
  // Hash of the node name, then mixed with the key: XXH3 (Checksum64) is stable across machines.
  const uint64_t node_hash = Checksum64(AsBytes(node));
  const auto key_bytes = key.ToBytes();
  std::array<std::byte, 8 + 16> buf;
  for (int i = 0; i < 8; ++i) buf[i] = static_cast<std::byte>(node_hash >> (8 * i));  // little-endian everywhere
  std::memcpy(buf.data() + 8, key_bytes.data(), key_bytes.size());
  return Checksum64(buf);
}

void RankNodes(std::span<const std::string> nodes, const ChunkKey& key, std::vector<uint32_t>* order) {
  struct Scored {
    uint64_t weight;
    uint32_t index;
  };
  std::vector<Scored> scored(nodes.size());
  for (uint32_t i = 0; i < nodes.size(); ++i) scored[i] = {RendezvousWeight(nodes[i], key), i};
  std::sort(scored.begin(), scored.end(), [](const Scored& a, const Scored& b) {
    return a.weight != b.weight ? a.weight > b.weight : a.index < b.index;
  });
  order->resize(nodes.size());
  for (size_t i = 0; i < scored.size(); ++i) (*order)[i] = scored[i].index;
}

}  // namespace kvtier
