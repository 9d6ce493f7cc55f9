// BlockFile: positional I/O on the NVMe tier's preallocated file (or block device).
//
// The contract is all-or-error: a call transfers the whole span or returns an error, continuing short
// transfers itself. With direct_io(), offsets, lengths and memory must be aligned to kDiskAlign. Many
// operations can be submitted at once (Submit), which is how the tier keeps a queue depth > 1.
// Implementations are thread-safe. The production implementation uses io_uring; tests wrap it in a
// FaultInjectingFile to inject EIO, ENOSPC, short transfers and flipped bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "kvtier/api/status.h"

namespace kvtier {

inline constexpr uint64_t kDiskAlign = 4096;

struct DiskOp {
  enum Kind : uint8_t { kRead, kWrite } kind = kRead;
  uint64_t offset = 0;
  std::byte* buffer = nullptr;
  size_t length = 0;
};

class BlockFile {
 public:
  virtual ~BlockFile() = default;
  virtual uint64_t size() const = 0;
  virtual bool direct_io() const = 0;
  // Runs every op; returns the first error (the ops are independent, others may have completed).
  // Errors are kInternal with the errno text ("EIO: ..."), kResourceExhausted for ENOSPC.
  virtual Status Submit(std::span<const DiskOp> ops) = 0;
  // Makes completed writes durable across power loss (fdatasync).
  virtual Status Sync() = 0;

  Status Write(uint64_t offset, std::span<const std::byte> data) {
    const DiskOp op{DiskOp::kWrite, offset, const_cast<std::byte*>(data.data()), data.size()};
    return Submit({&op, 1});
  }
  Status Read(uint64_t offset, std::span<std::byte> out) {
    const DiskOp op{DiskOp::kRead, offset, out.data(), out.size()};
    return Submit({&op, 1});
  }
};

struct UringFileOptions {
  uint64_t size = 0;            // the file is created and preallocated (fallocate) to this size
  uint32_t queue_depth = 32;    // most I/Os in flight per submission; large ops are split to fill it
  uint32_t max_io_bytes = 1 << 20;  // split size for large transfers
  uint32_t rings = 4;           // rings in the pool: concurrent submitters before one waits
  bool try_direct = true;       // O_DIRECT; refused (EINVAL) -> buffered I/O and direct_io() false
};

// Opens (creating if needed) and preallocates `path`. UNAVAILABLE if io_uring cannot be set up;
// RESOURCE_EXHAUSTED if the space cannot be preallocated.
Result<std::unique_ptr<BlockFile>> OpenUringFile(const std::string& path, const UringFileOptions& options);

// Registers memory (e.g. the host arena) with every ring so reads into and writes from it use fixed
// buffers (no per-I/O page pinning). Only valid for files from OpenUringFile; a no-op otherwise.
Status RegisterUringBuffers(BlockFile* file, std::span<std::byte> memory);

}  // namespace kvtier
