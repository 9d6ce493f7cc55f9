// The emulated device's memory map (emulated_memory.h): device allocations, other processes' device memory opened
// by IPC handle, and registered (pinned) host ranges, in one map of regions by start. Shared memory mode: each
// allocation is a memfd mapped shared; its IPC handle names the exporting process, the descriptor and the size, and
// another process maps it through /proc/<pid>/fd/<fd> while the exporter holds it.
#include "emulated_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <string>

#include "emulated_streams.h"

namespace {

enum class RegionKind {
  kHeap,        // a device allocation on the heap, whose bounds the sanitizers watch
  kMemfd,       // a device allocation in a memfd (shared memory mode), exportable by IPC handle
  kOpened,      // another process's device memory, mapped by its IPC handle
  kPinnedHost,  // host memory registered with cudaHostRegister
};
struct Region {
  size_t bytes = 0;
  RegionKind kind = RegionKind::kHeap;
  int fd = -1;  // kMemfd: the memfd
};
std::map<uintptr_t, Region> regions;  // by start; regions never overlap

uintptr_t Address(const void* p) { return reinterpret_cast<uintptr_t>(p); }

const Region* RegionOf(const void* p) {
  auto it = regions.upper_bound(Address(p));
  if (it == regions.begin()) return nullptr;
  --it;
  return Address(p) < it->first + it->second.bytes ? &it->second : nullptr;
}

// The region starting exactly at `p` and of that kind, or regions.end().
std::map<uintptr_t, Region>::iterator StartOf(const void* p, RegionKind kind) {
  auto it = regions.find(Address(p));
  return it != regions.end() && it->second.kind == kind ? it : regions.end();
}

bool SharedMemoryMode() {
  static const bool on = std::getenv("KVTIER_EMULATE_CUDA_IPC") != nullptr;
  return on;
}

// The 64 bytes of a handle.
struct HandleImage {
  char tag[16];
  int32_t pid;
  int32_t fd;
  uint64_t bytes;
  char unused[32];
};
static_assert(sizeof(HandleImage) == sizeof(cudaIpcMemHandle_t), "an emulated handle fills a CUDA one");
constexpr char kTag[16] = "kvtier-emu-ipc";

void* AllocateShared(size_t bytes, int& fd) {
  fd = memfd_create("kvtier-emulated-gpu", MFD_CLOEXEC);
  if (fd < 0) return nullptr;
  void* p = ftruncate(fd, static_cast<off_t>(bytes)) == 0
                ? mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                : MAP_FAILED;
  if (p == MAP_FAILED) {
    close(fd);
    return nullptr;
  }
  return p;
}

uintptr_t PageDown(uintptr_t p) { return p & ~uintptr_t{4095}; }
uintptr_t PageUp(uintptr_t p) { return PageDown(p + 4095); }

}  // namespace

namespace emu {

void* AllocateLocked(size_t bytes) {
  Region r{bytes, RegionKind::kHeap, -1};
  void* p = nullptr;
  if (SharedMemoryMode()) {
    r.kind = RegionKind::kMemfd;
    p = AllocateShared(bytes, r.fd);
  } else if (posix_memalign(&p, 256, bytes) != 0) {
    p = nullptr;
  }
  if (p == nullptr) return nullptr;
  std::memset(p, 0xa5, bytes);
  regions[Address(p)] = r;
  return p;
}

void FreeLocked(void* data) {
  auto it = regions.find(Address(data));
  if (it == regions.end()) return;
  if (it->second.kind == RegionKind::kHeap) {
    std::free(data);
  } else if (it->second.kind == RegionKind::kMemfd) {
    munmap(data, it->second.bytes);
    close(it->second.fd);
  } else {
    return;  // not an allocation
  }
  regions.erase(it);
}

bool PageableLocked(const void* p) { return RegionOf(p) == nullptr; }

}  // namespace emu

// Refuses a range that shares a page with another region, as CUDA refuses a second registration of a page.
cudaError_t cudaHostRegister(void* ptr, size_t bytes, unsigned flags) {
  auto lock = emu::LockDevice();
  if ((flags & cudaHostRegisterMapped) == 0 || ptr == nullptr || bytes == 0) {
    return emu::RecordError(cudaErrorInvalidValue);
  }
  const uintptr_t begin = PageDown(Address(ptr));
  const uintptr_t end = PageUp(Address(ptr) + bytes);
  for (const auto& [start, region] : regions) {
    if (begin < PageUp(start + region.bytes) && PageDown(start) < end) {
      return emu::RecordError(cudaErrorHostMemoryAlreadyRegistered);
    }
  }
  regions[Address(ptr)] = Region{bytes, RegionKind::kPinnedHost, -1};
  return cudaSuccess;
}

// Waits for the device first: queued work may still read the range.
cudaError_t cudaHostUnregister(void* ptr) {
  auto lock = emu::LockDevice();
  emu::SynchronizeDeviceLocked();
  auto it = StartOf(ptr, RegionKind::kPinnedHost);
  if (it == regions.end()) return emu::RecordError(cudaErrorInvalidValue);
  regions.erase(it);
  return cudaSuccess;
}

cudaError_t cudaHostGetDevicePointer(void** device, void* host, unsigned /*flags*/) {
  *device = host;  // unified addressing: the device reads the host pointer
  return cudaSuccess;
}

cudaError_t cudaIpcGetMemHandle(cudaIpcMemHandle_t* handle, void* ptr) {
  auto lock = emu::LockDevice();
  if (!SharedMemoryMode()) return emu::RecordError(cudaErrorNotSupported);
  auto it = StartOf(ptr, RegionKind::kMemfd);
  if (it == regions.end()) return emu::RecordError(cudaErrorInvalidValue);  // not an allocation's start
  HandleImage image{};
  std::memcpy(image.tag, kTag, sizeof(kTag));
  image.pid = getpid();
  image.fd = it->second.fd;
  image.bytes = it->second.bytes;
  std::memcpy(handle, &image, sizeof(image));
  return cudaSuccess;
}

cudaError_t cudaIpcOpenMemHandle(void** ptr, cudaIpcMemHandle_t handle, unsigned /*flags*/) {
  auto lock = emu::LockDevice();
  if (!SharedMemoryMode()) return emu::RecordError(cudaErrorNotSupported);
  HandleImage image;
  std::memcpy(&image, &handle, sizeof(image));
  if (std::memcmp(image.tag, kTag, sizeof(kTag)) != 0) return emu::RecordError(cudaErrorInvalidResourceHandle);
  if (image.pid == getpid()) return emu::RecordError(cudaErrorInvalidContext);  // as CUDA: not one's own handle
  const std::string path = "/proc/" + std::to_string(image.pid) + "/fd/" + std::to_string(image.fd);
  const int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return emu::RecordError(cudaErrorMapBufferObjectFailed);
  void* p = mmap(nullptr, image.bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return emu::RecordError(cudaErrorMapBufferObjectFailed);
  regions[Address(p)] = Region{image.bytes, RegionKind::kOpened, -1};
  *ptr = p;
  return cudaSuccess;
}

// Does not wait for queued work: a copy still queued from the mapping then faults, so the caller must drain first.
cudaError_t cudaIpcCloseMemHandle(void* ptr) {
  auto lock = emu::LockDevice();
  auto it = StartOf(ptr, RegionKind::kOpened);
  if (it == regions.end()) return emu::RecordError(cudaErrorInvalidValue);
  munmap(ptr, it->second.bytes);
  regions.erase(it);
  return cudaSuccess;
}
