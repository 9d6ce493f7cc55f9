#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "commands.h"
#include "flags.h"
#include "kvtier/gpu/device.h"
#include "kvtier/kvstore/config.h"
#include "kvtier/kvstore/host_tier.h"
#include "kvtier/kvstore/log.h"
#include "kvtier/kvstore/server.h"

namespace kvtier::cli {
namespace {

Status CheckAgainstMemory(const ServerConfig& config) {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return Status::Ok();
  const uint64_t physical = static_cast<uint64_t>(pages) * static_cast<uint64_t>(page);
  if (config.store.host_capacity_bytes > physical / 10 * 8) {
    return InvalidArgument("host_tier.capacity " + FormatByteSize(config.store.host_capacity_bytes) +
                           " exceeds 80% of this machine's " + FormatByteSize(physical / (1 << 20) * (1 << 20)) +
                           " of memory");
  }
  return Status::Ok();
}

constexpr int kExitOnSecondSignal = 2;

int Fail(const Status& status) {
  std::cerr << "kvtier serve: " << status.ToString() << "\n";
  return 1;
}

}  // namespace

int ServeCommand(int argc, char** argv) {
  ServerConfig config;
  std::string config_file;
  std::string log_level;
  FlagSet flags("kvtier serve [--config FILE] [flags]",
                "Runs a kvtier server: the gRPC API (kvtier.v1.KvTier, grpc.health.v1, reflection) and a\n"
                "Prometheus /metrics endpoint. Defaults are embedded; a YAML config file (docs/config.md)\n"
                "overrides them, and flags override the file. SIGINT/SIGTERM drain in-flight calls (up to\n"
                "shutdown_grace_ms), write DRAM chunks to the NVMe tier, and exit 0; a second signal exits at\n"
                "once with code 2.");
  flags.AddString("config", "FILE", &config_file, "YAML config file (keys: docs/config.md)");
  flags.AddString("listen", "ADDR", &config.listen, "gRPC address host:port (default 127.0.0.1:7070; port 0 = any)");
  flags.AddString("metrics-listen", "ADDR", &config.metrics_listen,
                  "Prometheus address host:port (default 127.0.0.1:9090; empty = off)");
  flags.AddBytes("host-capacity", &config.store.host_capacity_bytes,
                 "host DRAM tier size, e.g. 4GiB (default 4GiB)");
  flags.AddString("disk-path", "DIR", &config.store.disk.path,
                  "enable the NVMe tier in DIR (data file + index; default: no NVMe tier)");
  flags.AddBytes("disk-capacity", &config.store.disk.capacity_bytes, "NVMe tier data file size (default 16GiB)");
  flags.AddBytes("gpu-capacity", &config.store.gpu.capacity_bytes,
                 "GPU tier device arena, e.g. 8GiB (default 0 = no GPU tier; without a GPU it stays off)");
  flags.AddInt("gpu-device", &config.store.gpu.device, "CUDA device ordinal of the GPU tier (default 0)");
  flags.AddString("gpu-placement", "POLICY", &config.store.gpu.placement,
                  "which puts get a GPU copy: on-request (puts asking for TIER_GPU) or all (default on-request)");
  flags.AddString("log-level", "LEVEL", &log_level, "debug, info, warning or error (default info)");
  int grace_ms = -1;
  flags.AddInt("shutdown-grace-ms", &grace_ms, "on SIGTERM, let in-flight calls run this long (default 10000)");
  Status s = flags.Parse(argc, argv, 2);
  if (!s.ok()) return Fail(s);
  if (flags.help_requested()) {
    std::cout << flags.Usage();
    return 0;
  }
  // Flags are applied twice: first to learn --config, then again over the file so they win.
  s = flags.Apply();
  if (!s.ok()) return Fail(s);
  if (!config_file.empty()) {
    s = LoadServerConfigFile(config_file, &config);
    if (!s.ok()) return Fail(s);
    s = flags.Apply();
    if (!s.ok()) return Fail(s);
  }
  if (grace_ms >= 0) config.shutdown_grace_ms = static_cast<uint32_t>(grace_ms);
  if (!log_level.empty() && !ParseLogLevel(log_level, &config.log_level)) {
    return Fail(InvalidArgument("--log-level: expected debug, info, warning or error"));
  }
  s = config.Validate();
  if (s.ok()) s = CheckAgainstMemory(config);
  if (!s.ok()) return Fail(s);
  SetLogLevel(config.log_level);
  KVTIER_LOG(kInfo) << "kvtier " << KVTIER_VERSION << " starting; effective config:\n" << config.ToYaml();

  const gpu::GpuProbe& probe = gpu::CachedProbe();
  if (probe.devices.empty()) {
    // The store says the same about a configured GPU tier (a warning) when it opens.
    KVTIER_LOG(kInfo) << "no GPU: " << probe.reason << "; no GPU tier, host arenas not pinned";
  } else {
    KVTIER_LOG(kInfo) << probe.devices.size() << " GPU(s) found (" << probe.devices[0].name << ")";
  }

  // Block the stop signals before gRPC starts its threads, so only the watcher below receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  if (config.store.host_prefault) {
    KVTIER_LOG(kInfo) << "reserving and pre-faulting the " << FormatByteSize(config.store.host_capacity_bytes)
                      << " host arena (seconds per GiB on some machines; host_tier.prefault: false skips it)";
  }
  auto server = Server::Start(config);
  if (!server.ok()) return Fail(server.status());
  const auto& arena = static_cast<const HostTier&>((*server)->store().host_tier()).arena();
  KVTIER_LOG(kInfo) << "host tier: " << FormatByteSize(arena.size()) << " arena (" << arena.backing()
                    << " pages), pre-faulted in " << arena.prefault_seconds() << " s";
  std::printf("kvtier serving gRPC on %s", (*server)->address().c_str());
  if ((*server)->metrics_port() != 0) {
    const std::string& m = config.metrics_listen;
    std::printf(", metrics on http://%s:%d/metrics", m.substr(0, m.rfind(':')).c_str(), (*server)->metrics_port());
  }
  std::printf("\n");
  std::fflush(stdout);

  std::thread watcher([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    KVTIER_LOG(kInfo) << "signal " << sig << ": draining in-flight calls (up to " << config.shutdown_grace_ms
                      << " ms); a second signal exits at once";
    // An operator who signals again wants out now: nothing left to do is worth more than that.
    std::thread([signals = stop_signals] {
      int again = 0;
      sigwait(&signals, &again);
      KVTIER_LOG(kWarning) << "signal " << again << " again: exiting without finishing the drain or the flush";
      std::_Exit(kExitOnSecondSignal);
    }).detach();
    (*server)->Shutdown(std::chrono::milliseconds(config.shutdown_grace_ms));
  });
  (*server)->Wait();
  watcher.join();
  if (config.store.disk.enabled() && config.store.disk.flush_on_shutdown) {
    const uint64_t demoted = (*server)->store().DemoteAll();
    KVTIER_LOG(kInfo) << "wrote " << demoted << " DRAM chunks to the NVMe tier before exit";
  }
  KVTIER_LOG(kInfo) << "stopped";
  return 0;
}

}  // namespace kvtier::cli
