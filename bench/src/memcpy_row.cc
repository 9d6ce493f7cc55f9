// The memcpy row: this machine's single-core copy bandwidth at the cell's chunk size, the ceiling of
// any path that moves a chunk into a worker's buffer with one copy (kvtier-shm's gets).
#include <cstring>
#include <optional>

#include "bench_common.h"

namespace kvtier::bench {
namespace {

// Reads one byte of every page right before timing: on some VMs memory left idle for seconds is slow to
// read again (reclaimed by the host), even though it was touched when it was allocated.
void TouchPages(const std::vector<std::byte>& bytes) {
  const volatile std::byte* p = bytes.data();
  for (size_t i = 0; i < bytes.size(); i += 4096) (void)p[i];
}

}  // namespace

Status BenchMemcpy(const std::vector<std::byte>& source, uint64_t chunk, std::vector<BenchRow>* rows) {
  const uint64_t copies = source.size() / chunk;  // as many as one get pass of the working set
  std::vector<std::byte> dest(chunk, std::byte{0});
  // The fastest of a few passes: the ceiling is what the copy costs once the source is resident, and
  // a VM may have reclaimed idle memory between the allocation and the first pass.
  constexpr int kPasses = 3;
  std::optional<CellResult> best;
  for (int pass = 0; pass < kPasses; ++pass) {
    TouchPages(source);
    auto copy = RunParallel(1, copies, [&](int, uint64_t i) -> Status {
      std::memcpy(dest.data(), source.data() + i * chunk, chunk);
      asm volatile("" : : "r"(dest.data()) : "memory");  // the copy must happen
      return Status::Ok();
    });
    if (!copy.ok()) return copy.status();
    if (!best || copy->seconds < best->seconds) best = std::move(copy).value();
  }
  if (std::memcmp(dest.data(), source.data() + (copies - 1) * chunk, chunk) != 0) {
    return Internal("memcpy row: the destination does not hold the last block");
  }
  rows->push_back(MakeRow("memcpy", "get", chunk, 1, std::move(*best)));
  return Status::Ok();
}

}  // namespace kvtier::bench
