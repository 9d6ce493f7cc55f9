// MetaStore: the NVMe tier's persistent index in RocksDB, so a restart is warm.
//
// It holds the namespace and fingerprint tables (their ids appear in records and index entries), each
// region's current generation, and one index entry per chunk on disk. Writes use the WAL without fsync:
// they survive a killed process (the crash the tier promises to survive); after a power loss the tier
// may come back colder, never wrong, because every read re-verifies the record on disk.
// It also keeps one record per indexed variant (its reuse metadata), so the variant index survives a
// restart. Keys and values are little-endian layouts with a version byte (DISK_FORMAT.md, "Index").
// Thread-safe (RocksDB is).
#pragma once

#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kvtier/api/types.h"
#include "kvtier/kvstore/variant_index.h"

namespace rocksdb {
class DB;
}

namespace kvtier {

struct DiskIndexEntry {
  uint32_t ns_id = 0;
  ChunkKey key;
  uint32_t region = 0;
  uint64_t generation = 0;
  uint64_t offset = 0;        // file offset of the record header
  uint64_t record_bytes = 0;  // header block + body, block-aligned
  uint32_t fp_id = 0;
  uint32_t num_tokens = 0;
  uint32_t base_position = 0;
  uint8_t codec = 0;
  uint64_t payload_bytes = 0;
  uint64_t payload_checksum = 0;
};

// The persisted form of one indexed variant (VariantIndex), key 'v'.
struct DiskVariantRecord {
  uint32_t ns_id = 0;
  ChunkKey variant_key;
  uint32_t fp_id = 0;
  uint64_t put_seq = 0;
  VariantMeta meta;
};

class MetaStore {
 public:
  static Result<std::unique_ptr<MetaStore>> Open(const std::string& dir);
  ~MetaStore();

  Status PutNamespace(uint32_t id, const std::string& name);
  Status PutFingerprint(uint32_t id, const ModelFingerprint& fp);
  Status PutRegionGeneration(uint32_t region, uint64_t generation);
  Status PutChunks(std::span<const DiskIndexEntry> entries);
  Status DeleteChunks(std::span<const std::pair<uint32_t, ChunkKey>> keys);
  // A shared cachegen profile (ProfileRegistry); `sequence` orders puts so names resolve as before.
  Status PutProfile(uint32_t ns_id, uint64_t id, const std::string& name, uint64_t sequence,
                    std::span<const std::byte> bytes);

  // The record of an indexed variant (written when it is admitted, replacing any earlier one).
  Status PutVariant(uint32_t ns_id, const ChunkKey& variant_key, uint32_t fp_id, uint64_t put_seq,
                    const VariantMeta& meta);
  Status DeleteVariants(uint32_t ns_id, std::span<const ChunkKey> variant_keys);
  Status DeleteVariant(uint32_t ns_id, const ChunkKey& variant_key) { return DeleteVariants(ns_id, {&variant_key, 1}); }
  // Test hook: flips the bits of byte `offset` of a variant record's value (NOT_FOUND without the record).
  Status CorruptVariantForTest(uint32_t ns_id, const ChunkKey& variant_key, size_t offset);

  struct ProfileRecord {
    uint32_t ns_id = 0;
    uint64_t id = 0;
    std::string name;
    uint64_t sequence = 0;
    std::string bytes;
  };

  struct Snapshot {
    std::map<uint32_t, std::string> namespaces;
    std::map<uint32_t, ModelFingerprint> fingerprints;
    std::map<uint32_t, uint64_t> region_generations;
    std::vector<DiskIndexEntry> chunks;
    std::vector<ProfileRecord> profiles;
    std::vector<DiskVariantRecord> variants;
    uint64_t unreadable = 0;           // entries that did not parse (skipped and deleted)
    uint64_t variants_unreadable = 0;  // of which variant records (bad version, length or checksum)
  };
  Result<Snapshot> Load();

 private:
  explicit MetaStore(std::unique_ptr<rocksdb::DB> db);
  std::unique_ptr<rocksdb::DB> db_;
};

}  // namespace kvtier
