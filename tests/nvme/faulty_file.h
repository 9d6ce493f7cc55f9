// FaultInjectingFile: wraps a BlockFile and injects the faults the NVMe tier must survive: EIO on
// reads or writes, ENOSPC, short transfers (part of the data moves, then an error), and flipped bytes
// in data read back. Knobs are atomics so a test can change them while the server runs.
#pragma once

#include <atomic>
#include <cstring>
#include <memory>

#include "kvtier/kvstore/block_file.h"
#include "fault_budget.h"

namespace kvtier::testing {

struct FaultKnobs {
  std::atomic<int> fail_reads{0};        // next N read submissions fail with EIO (-1: all)
  std::atomic<int> fail_writes{0};       // next N write submissions fail with EIO (-1: all)
  std::atomic<bool> no_space{false};     // writes fail with ENOSPC
  std::atomic<bool> short_writes{false}; // writes move half their bytes, then fail
  std::atomic<int> flip_reads{0};        // next N reads return data with one byte flipped
  std::atomic<uint64_t> reads{0}, writes{0};
};

class FaultInjectingFile final : public BlockFile {
 public:
  FaultInjectingFile(std::unique_ptr<BlockFile> inner, std::shared_ptr<FaultKnobs> knobs)
      : inner_(std::move(inner)), knobs_(std::move(knobs)) {}

  uint64_t size() const override { return inner_->size(); }
  bool direct_io() const override { return inner_->direct_io(); }
  Status Sync() override { return inner_->Sync(); }

  Status Submit(std::span<const DiskOp> ops) override {
    const bool write = !ops.empty() && ops[0].kind == DiskOp::kWrite;
    (write ? knobs_->writes : knobs_->reads).fetch_add(1);
    if (write) {
      if (knobs_->no_space) return ResourceExhausted("write: ENOSPC: no space left on device (injected)");
      if (TakeFault(knobs_->fail_writes)) return Internal("write: EIO: Input/output error (injected)");
      if (knobs_->short_writes) {
        DiskOp half = ops[0];
        half.length = half.length / 2 / kDiskAlign * kDiskAlign;
        if (half.length > 0) (void)inner_->Submit({&half, 1});
        return Internal("write: short write (injected)");
      }
      return inner_->Submit(ops);
    }
    if (TakeFault(knobs_->fail_reads)) return Internal("read: EIO: Input/output error (injected)");
    KVTIER_RETURN_IF_ERROR(inner_->Submit(ops));
    if (TakeFault(knobs_->flip_reads)) {
      const DiskOp& last = ops.back();  // the record body
      last.buffer[last.length / 2] ^= std::byte{0x10};
    }
    return Status::Ok();
  }

 private:
  std::unique_ptr<BlockFile> inner_;
  std::shared_ptr<FaultKnobs> knobs_;
};

}  // namespace kvtier::testing
