// EncodedChunk: how PagedKvTransfer decodes one int8 or cachegen chunk on the device side of its backend
// (PagedTransferOptions::device_decode). The container is parsed and checked on the host (every check
// codec::Decode makes before decoding symbols); only its encoded body, plus the cachegen tables, crosses to the
// device, where the decoder writes the raw chunk into the chunk's slot of the device staging.
//
// Slot layout (the chunk's slot has the same offset in every staging):
//   encoded staging: [body][image, 16-aligned][workspace, 16-aligned]   (image and workspace: cachegen only)
//   host staging:    [container, when a get landed it there][image][decode error codes copied back]
// The image is the stream records and, unless the chunk's tables are resident on the device (a shared
// profile's, uploaded once per transfer: device_tables), the tables. A chunk whose pieces do not fit its slot is
// decoded on the host instead (the client's GetBatch).
//
// Internal to the client library; a value type, not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "kvtier/api/status.h"
#include "kvtier/api/types.h"
#include "kvtier/gpu/cachegen_decode.h"
#include "kvtier/gpu/int8_dequant.h"

namespace kvtier::internal {

struct EncodedChunk {
  uint8_t codec = 0;                // v1::CODEC_INT8 or v1::CODEC_CACHEGEN
  std::span<const std::byte> body;  // the encoded body on the host, inside the container
  gpu::Int8Payload int8;            // int8: the shape (its body: the host view)
  gpu::CachegenPlan cachegen;       // cachegen: the plan (its body: the host view)
  std::vector<std::byte> image;     // cachegen: CachegenImage(plan), staged through the host slot; only the
                                    // records when device_tables is set (ResidentTables::Attach builds it)
  std::span<const std::byte> device_tables;  // cachegen: the resident copy of the chunk's tables, or empty
  // From the slot's start, as laid out above.
  uint64_t image_at = 0;
  uint64_t workspace_at = 0;
  uint64_t host_image_at = 0;
  uint64_t host_errors_at = 0;

  bool is_cachegen() const;
};

// Where a slot lies and what the decoder must produce.
struct EncodedSlot {
  uint64_t at = 0;                 // offset of the slot in every staging
  uint64_t bytes = 0;              // its size
  bool container_in_host = false;  // the container occupies the host slot from its start
};

// Parses `container` (a hit's stored bytes, of codec `codec`); a shared profile's tables come from
// `table_cache`. nullopt: the device does not decode this codec. A container the decoder refuses, or one whose
// shape is not `expected`: the decoder's code (DATA_LOSS for a shape mismatch), with the message prefixed by
// "chunk <key>: ".
Result<std::optional<EncodedChunk>> ParseEncodedChunk(std::span<const std::byte> container, uint8_t codec,
                                                      const gpu::ChunkShape& expected,
                                                      const gpu::CachegenProfileResolver& profiles,
                                                      gpu::CachegenTableCache* table_cache, const ChunkKey& key);

// Sets the offsets of `e` (a chunk whose container has `container_bytes` bytes) in `slot`; false when its
// pieces do not fit (decode it on the host).
bool LayOutEncodedChunk(EncodedChunk& e, const EncodedSlot& slot, uint64_t container_bytes);

// Tables kept on the device for chunks coded with a shared profile: one copy per (profile, level, anchor-delta)
// serves every such chunk, so that only bodies and stream records cross per chunk.
class ResidentTables {
 public:
  // Copies `tables` (host) to memory the transfer's backend keeps until it is destroyed; the span it returns.
  using Upload = std::function<Result<std::span<const std::byte>>(std::span<const std::byte> tables)>;
  explicit ResidentTables(Upload upload) : upload_(std::move(upload)) {}

  // Builds a cachegen chunk's e.image: with a profile, e.device_tables (uploaded the first time) and only the
  // stream records in the image; with inline tables, once kMaxSets sets are resident, or when the upload fails,
  // the records and the tables (which then travel with the chunk). Does nothing for int8.
  void Attach(EncodedChunk& e);
  size_t size() const { return sets_.size(); }

  static constexpr size_t kMaxSets = 8;

 private:
  struct Set {
    uint64_t profile_id;
    int level;
    bool anchor_delta;
    std::span<const std::byte> device;
  };
  bool AttachTables(EncodedChunk& e);  // false: the tables travel in the image

  Upload upload_;
  std::vector<Set> sets_;
};

// A status about chunk `key`: the same code, the message prefixed with "chunk <key>: ".
Status AboutChunk(const ChunkKey& key, const Status& status);

}  // namespace kvtier::internal
