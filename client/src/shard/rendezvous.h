// Rendezvous (highest-random-weight) placement of chunk keys on nodes.
//
// Each (node, key) pair gets a weight from a deterministic 64-bit hash of the node's name and the key; a
// key lives on the nodes with the highest weights. Every client computes the same placement from the same
// node names, with no coordination, and adding or removing one of N nodes moves only the keys whose top
// choices change: about 1/N of them. Stateless functions; thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kvtier/api/types.h"

namespace kvtier {

// Weight of `key` on the node named `node` (its endpoint): the same on every machine and process.
uint64_t RendezvousWeight(std::string_view node, const ChunkKey& key);

// Indices of `nodes` from the key's first choice to its last (all of them, highest weight first). Ties,
// which need a 64-bit collision, are broken by the lower index.
void RankNodes(std::span<const std::string> nodes, const ChunkKey& key, std::vector<uint32_t>* order);

}  // namespace kvtier
