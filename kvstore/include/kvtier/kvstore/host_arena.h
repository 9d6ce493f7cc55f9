// HostArena: one large anonymous mapping reserved at start for the host DRAM tier.
//
// It is pre-faulted (first touch of fresh memory is slow; paying it at start keeps it off the data
// path) and backed by huge pages when the system has them: explicit MAP_HUGETLB pages first, then
// transparent huge pages via madvise. The arena owns the mapping and unmaps it on destruction; it is
// move-only. Its bytes are handed out by an ExtentAllocator; the arena itself does no bookkeeping.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "kvtier/api/status.h"

namespace kvtier {

struct HostArenaOptions {
  uint64_t bytes = 0;          // size of the mapping; rounded up to the page size used
  bool try_huge_pages = true;  // try MAP_HUGETLB, then madvise(MADV_HUGEPAGE); fall back silently
  bool prefault = true;        // fault every page in at start
};

class HostArena {
 public:
  static Result<HostArena> Create(const HostArenaOptions& options);

  HostArena() = default;
  HostArena(HostArena&& other) noexcept;
  HostArena& operator=(HostArena&& other) noexcept;
  HostArena(const HostArena&) = delete;
  HostArena& operator=(const HostArena&) = delete;
  ~HostArena();

  std::byte* data() const { return data_; }
  uint64_t size() const { return size_; }
  // "hugetlb", "thp" or "4k": what backs the mapping, for the start-up log.
  const std::string& backing() const { return backing_; }
  double prefault_seconds() const { return prefault_seconds_; }

 private:
  std::byte* data_ = nullptr;
  uint64_t size_ = 0;
  std::string backing_;
  double prefault_seconds_ = 0;
};

}  // namespace kvtier
