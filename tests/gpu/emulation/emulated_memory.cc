// Device memory of the emulated device and CUDA IPC between processes (emulated_memory.h). Shared memory mode: each
// allocation is a memfd mapped shared; its IPC handle names the exporting process, the descriptor and the size,
// and another process maps it through /proc/<pid>/fd/<fd> while the exporter holds it.
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

struct Allocation {
  size_t bytes = 0;
  int fd = -1;  // the memfd in shared memory mode; -1 for heap memory
};
std::map<uintptr_t, Allocation> allocations;  // by start
std::map<uintptr_t, size_t> opened;           // other processes' memory mapped by IPC handle, by start

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

template <typename Value>
bool Within(const std::map<uintptr_t, Value>& ranges, const void* p, size_t (*bytes)(const Value&)) {
  const uintptr_t at = reinterpret_cast<uintptr_t>(p);
  auto it = ranges.upper_bound(at);
  return it != ranges.begin() && at < std::prev(it)->first + bytes(std::prev(it)->second);
}

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

}  // namespace

namespace emu {

void* AllocateLocked(size_t bytes) {
  Allocation a{bytes, -1};
  void* p = nullptr;
  if (SharedMemoryMode()) {
    p = AllocateShared(bytes, a.fd);
  } else if (posix_memalign(&p, 256, bytes) != 0) {
    p = nullptr;
  }
  if (p == nullptr) return nullptr;
  std::memset(p, 0xa5, bytes);
  allocations[reinterpret_cast<uintptr_t>(p)] = a;
  return p;
}

void FreeLocked(void* data) {
  auto it = allocations.find(reinterpret_cast<uintptr_t>(data));
  if (it == allocations.end()) return;
  if (it->second.fd < 0) {
    std::free(data);
  } else {
    munmap(data, it->second.bytes);
    close(it->second.fd);
  }
  allocations.erase(it);
}

bool IsDeviceMemoryLocked(const void* p) {
  return Within<Allocation>(allocations, p, [](const Allocation& a) { return a.bytes; }) ||
         Within<size_t>(opened, p, [](const size_t& bytes) { return bytes; });
}

}  // namespace emu

cudaError_t cudaIpcGetMemHandle(cudaIpcMemHandle_t* handle, void* ptr) {
  auto lock = emu::LockDevice();
  if (!SharedMemoryMode()) return emu::RecordError(cudaErrorNotSupported);
  auto it = allocations.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == allocations.end()) return emu::RecordError(cudaErrorInvalidValue);  // not an allocation's start
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
  opened[reinterpret_cast<uintptr_t>(p)] = image.bytes;
  *ptr = p;
  return cudaSuccess;
}

// Does not wait for queued work: a copy still queued from the mapping then faults, so the caller must drain first.
cudaError_t cudaIpcCloseMemHandle(void* ptr) {
  auto lock = emu::LockDevice();
  auto it = opened.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == opened.end()) return emu::RecordError(cudaErrorInvalidValue);
  munmap(ptr, it->second);
  opened.erase(it);
  return cudaSuccess;
}
