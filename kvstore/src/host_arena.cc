#include "kvtier/kvstore/host_arena.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
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

}  // namespace

Result<HostArena> HostArena::Create(const HostArenaOptions& options) {
  if (options.bytes == 0) return InvalidArgument("host arena size must be > 0");
  HostArena arena;
  void* mem = MAP_FAILED;
  if (options.try_huge_pages) {
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

HostArena::HostArena(HostArena&& other) noexcept { *this = std::move(other); }

HostArena& HostArena::operator=(HostArena&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) munmap(data_, size_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    backing_ = std::move(other.backing_);
    prefault_seconds_ = other.prefault_seconds_;
  }
  return *this;
}

HostArena::~HostArena() {
  if (data_ != nullptr) munmap(data_, size_);
}

}  // namespace kvtier
