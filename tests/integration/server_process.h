// ServerProcess: a `kvtier serve` child process for tests that kill, restart or run several servers. The
// constructor starts it with a config file and waits for the line that gives its gRPC address; the
// destructor kills it (SIGKILL). Stderr goes to <dir>/server.log. Not thread-safe.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>

namespace kvtier::testing {

class ServerProcess {
 public:
  // Starts `kvtier serve --config config` and waits until it prints its address.
  ServerProcess(const std::filesystem::path& dir, const std::filesystem::path& config);
  ~ServerProcess();

  const std::string& address() const { return address_; }
  void Signal(int sig);
  // The exit status once the process ended within `timeout`; nullopt while it still runs.
  std::optional<int> WaitExit(std::chrono::milliseconds timeout);
  // Sends `sig` and waits for the exit; the wait status (0 when it was not running).
  int Kill(int sig);
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  std::string address_;
};

// A loopback port that was free a moment ago (bound to port 0, then released), for servers that must
// come back on the same address after a restart.
int FreeLoopbackPort();

}  // namespace kvtier::testing
