#include "kvtier/kvstore/host_arena.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>

namespace kvtier {
namespace {

constexpr uint64_t kHugePage = 2ull << 20;
#ifndef MADV_POPULATE_WRITE
constexpr int MADV_POPULATE_WRITE = 23;  // Linux 5.14; older kernels answer EINVAL and we touch pages
#endif

uint64_t RoundUp(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }

void Prefault(std::byte* data, uint64_t size) {
  if (madvise(data, size, MADV_POPULATE_WRITE) == 0) return;
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  volatile std::byte* p = data;
  for (uint64_t off = 0; off < size; off += page) p[off] = std::byte{0};
}

// Whether the kernel backs shared memory (memfd, tmpfs) with transparent huge pages when asked: the
// bracketed choice of /sys/kernel/mm/transparent_hugepage/shmem_enabled is not [never] or [deny].
bool ShmemHugePagesOn() {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/shmem_enabled");
  std::string line;
  std::getline(in, line);
  return !line.empty() && line.find("[never]") == std::string::npos && line.find("[deny]") == std::string::npos;
}

// A sealed memfd of `size` bytes mapped shared, or MAP_FAILED (fd stays -1).
void* MapSharedMemfd(const std::string& name, uint64_t size, unsigned extra_flags, int* fd) {
  *fd = memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING | extra_flags);
  if (*fd < 0) return MAP_FAILED;
  void* mem = MAP_FAILED;
  if (ftruncate(*fd, static_cast<off_t>(size)) == 0 &&
      fcntl(*fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) == 0) {
    mem = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
  }
  if (mem == MAP_FAILED) {
    close(*fd);
    *fd = -1;
  }
  return mem;
}

}  // namespace

Result<HostArena> HostArena::Create(const HostArenaOptions& options) {
  if (options.bytes == 0) return InvalidArgument("host arena size must be > 0");
  HostArena arena;
  void* mem = MAP_FAILED;
  if (options.shareable) {
    if (options.try_huge_pages) {
      const uint64_t size = RoundUp(options.bytes, kHugePage);
      mem = MapSharedMemfd(options.name, size, MFD_HUGETLB, &arena.fd_);
      if (mem != MAP_FAILED) {
        arena.size_ = size;
        arena.backing_ = "memfd-hugetlb";
      }
    }
    if (mem == MAP_FAILED) {
      const uint64_t size = RoundUp(options.bytes, options.try_huge_pages ? kHugePage : 4096);
      mem = MapSharedMemfd(options.name, size, 0, &arena.fd_);
      if (mem == MAP_FAILED) {
        return ResourceExhausted("cannot create shared arena '" + options.name + "' of " + std::to_string(size) +
                                 " bytes: " + std::strerror(errno));
      }
      arena.size_ = size;
      arena.backing_ = "memfd";
      if (options.try_huge_pages && madvise(mem, size, MADV_HUGEPAGE) == 0 && ShmemHugePagesOn()) {
        arena.backing_ = "memfd-thp";
      }
    }
  }
  if (mem == MAP_FAILED && options.try_huge_pages) {
    // Without MAP_NORESERVE the kernel refuses the mapping unless enough huge pages are reserved,
    // instead of answering a later page fault with SIGBUS.
    const uint64_t size = RoundUp(options.bytes, kHugePage);
    mem = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB,
               -1, 0);
    if (mem != MAP_FAILED) {
      arena.size_ = size;
      arena.backing_ = "hugetlb";
    }
  }
  if (mem == MAP_FAILED) {
    const uint64_t size = RoundUp(options.bytes, options.try_huge_pages ? kHugePage : 4096);
    mem = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
      return ResourceExhausted("cannot map host arena of " + std::to_string(size) + " bytes: " + std::strerror(errno));
    }
    arena.size_ = size;
    arena.backing_ = "4k";
    if (options.try_huge_pages && madvise(mem, size, MADV_HUGEPAGE) == 0) arena.backing_ = "thp";
  }
  arena.data_ = static_cast<std::byte*>(mem);
  if (options.prefault) {
    const auto start = std::chrono::steady_clock::now();
    Prefault(arena.data_, arena.size_);
    arena.prefault_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  return arena;
}

Result<int> HostArena::ReadOnlyFd() const {
  if (fd_ < 0) return FailedPrecondition("the host arena is not shareable");
  // Reopening through /proc gives a new open file description with its own (read-only) access mode.
  const std::string path = "/proc/self/fd/" + std::to_string(fd_);
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Internal("cannot reopen the shared arena read-only: " + std::string(std::strerror(errno)));
  return fd;
}

HostArena::HostArena(HostArena&& other) noexcept { *this = std::move(other); }

HostArena& HostArena::operator=(HostArena&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) munmap(data_, size_);
    if (fd_ >= 0) close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    backing_ = std::move(other.backing_);
    prefault_seconds_ = other.prefault_seconds_;
  }
  return *this;
}

HostArena::~HostArena() {
  if (data_ != nullptr) munmap(data_, size_);
  if (fd_ >= 0) close(fd_);
}

}  // namespace kvtier
