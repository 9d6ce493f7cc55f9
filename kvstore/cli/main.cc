// `kvtier`: the server and the operator's tool. Thin dispatch over the libraries.
#include <malloc.h>

#include <cstdio>
#include <cstring>
#include <string_view>

#include "commands.h"

namespace {

constexpr const char* kUsage =
    "kvtier " KVTIER_VERSION " - KV-cache storage and transfer for LLM inference\n"
    "\n"
    "usage: kvtier <command> [flags]\n"
    "\n"
    "commands:\n"
    "  serve   run a kvtier server (gRPC + Prometheus metrics)\n"
    "  stat    print a server's tiers, counters and limits\n"
    "  put     store a file as a chunk of the debug model (for debugging)\n"
    "  get     fetch a chunk stored by `put` back into a file\n"
    "  bench   measure put/get throughput and latency against kvtier and Redis side by side\n"
    "  bench-disk  measure the NVMe tier against fio side by side, and its restart time\n"
    "  bench-codec  evaluate every codec profile: size, model quality on real KV, speed\n"
    "  bench-cluster  measure a sharded client over 1-3 in-process servers, and the keys a node change moves\n"
    "  bench-reuse  evaluate chunk reuse beyond prefixes (CacheBlend, Cache-Craft) on the real model\n"
    "  bench-gpu  measure the GPU data path (pack/unpack, decode, gather, chunk loads) against cudaMemcpy\n"
    "  profile build|put|get|show  shared cachegen profiles: build from sample chunks, store, fetch\n"
    "\n"
    "`kvtier <command> --help` describes each command's flags.\n";

}  // namespace

int main(int argc, char** argv) {
  // Chunk-sized buffers (gRPC messages of 256 KiB - 2 MiB) would otherwise be mmapped and unmapped on
  // every call, paying fresh page faults each time, and freed heap would be trimmed back to the OS only to
  // be faulted in again: keep such buffers in the heap. Measured: 2x put/get throughput (bench/RESULTS.md).
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  mallopt(M_TOP_PAD, 64 << 20);
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0 ||
      std::strcmp(argv[1], "help") == 0) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string_view command = argv[1];
  if (command == "--version" || command == "version") {
    std::puts("kvtier " KVTIER_VERSION);
    return 0;
  }
  if (command == "serve") return kvtier::cli::ServeCommand(argc, argv);
  if (command == "stat") return kvtier::cli::StatCommand(argc, argv);
  if (command == "put") return kvtier::cli::PutCommand(argc, argv);
  if (command == "get") return kvtier::cli::GetCommand(argc, argv);
  if (command == "bench") return kvtier::cli::BenchCommand(argc, argv);
  if (command == "bench-disk") return kvtier::cli::BenchDiskCommand(argc, argv);
  if (command == "profile") return kvtier::cli::ProfileCommand(argc, argv);
  if (command == "bench-codec") return kvtier::cli::BenchCodecCommand(argc, argv);
  if (command == "bench-cluster") return kvtier::cli::BenchClusterCommand(argc, argv);
  if (command == "bench-reuse") return kvtier::cli::BenchReuseCommand(argc, argv);
  if (command == "bench-gpu") return kvtier::cli::BenchGpuCommand(argc, argv);
  std::fprintf(stderr, "kvtier: unknown command '%s'\n\n%s", argv[1], kUsage);
  return 2;
}
