// HostArena: one large anonymous mapping reserved at start for the host DRAM tier.
//
// It is pre-faulted (first touch of fresh memory is slow; paying it at start keeps it off the data
// path) and backed by huge pages when the system has them: explicit MAP_HUGETLB pages first, then
// transparent huge pages via madvise. The arena owns the mapping and unmaps it on destruction; it is
// move-only. Its bytes are handed out by an ExtentAllocator; the arena itself does no bookkeeping.
//
// A shareable arena is a memfd mapped MAP_SHARED instead of anonymous memory, so same-host clients can
// map it (kvstore/SHM.md). Its size is sealed (F_SEAL_GROW/SHRINK), so no holder of the file can
// truncate it under the server's mapping; ReadOnlyFd() hands out a descriptor that cannot be mapped
// writable.
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
  bool shareable = false;      // back it by a sealed memfd that other processes can map
  std::string name = "kvtier-arena";  // memfd name (shows in /proc/<pid>/fd and maps)
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
  // The memfd of a shareable arena, -1 otherwise. Owned by the arena.
  int fd() const { return fd_; }
  // A new read-only descriptor for the shareable arena's file (the caller closes it): a process given
  // it can map the arena PROT_READ only. FAILED_PRECONDITION for an arena that is not shareable.
  Result<int> ReadOnlyFd() const;

 private:
  std::byte* data_ = nullptr;
  uint64_t size_ = 0;
  std::string backing_;
  double prefault_seconds_ = 0;
  int fd_ = -1;
};

}  // namespace kvtier
