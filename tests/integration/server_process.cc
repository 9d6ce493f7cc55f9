#include "integration/server_process.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <random>
#include <thread>
#include <vector>

extern char** environ;

namespace kvtier::testing {
namespace {

// The server binary: $KVTIER_BINARY where set (test binaries run away from their build tree, as
// scripts/gpu-bundle.sh packs them), else the one this build made.
const char* KvtierBinary() {
  const char* env = std::getenv("KVTIER_BINARY");
  return env != nullptr && *env != '\0' ? env : KVTIER_BINARY;
}

}  // namespace

ServerProcess::ServerProcess(const std::filesystem::path& dir, const std::filesystem::path& config) {
  int out[2];
  EXPECT_EQ(pipe(out), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, out[0]);
  const std::string log = (dir / "server.log").string();
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  std::vector<std::string> args = {KvtierBinary(), "serve", "--config", config.string()};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  EXPECT_EQ(posix_spawn(&pid_, KvtierBinary(), &actions, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  std::string line;
  char c;
  while (read(out[0], &c, 1) == 1 && c != '\n') line.push_back(c);
  close(out[0]);
  const std::string prefix = "kvtier serving gRPC on ";
  EXPECT_EQ(line.rfind(prefix, 0), 0u) << "server said: " << line;
  address_ = line.substr(prefix.size());
}

ServerProcess::~ServerProcess() { Kill(SIGKILL); }

void ServerProcess::Signal(int sig) { kill(pid_, sig); }

std::optional<int> ServerProcess::WaitExit(std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  do {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return status;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  } while (std::chrono::steady_clock::now() < until);
  return std::nullopt;
}

int ServerProcess::Kill(int sig) {
  if (pid_ <= 0) return 0;
  kill(pid_, sig);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return status;
}

namespace {

// The first port the kernel hands out for bind(0) and outgoing connections (ip_local_port_range).
int EphemeralLow() {
  std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 0;
  return range >> low && low > 2048 ? low : 32768;
}

bool LoopbackPortFree(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool free = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return free;
}

}  // namespace

// Below the ephemeral range: a port-0 bind or an outgoing connection elsewhere on the machine never takes
// it between this check and the server's bind (a port from bind(0) could be, while the server starts).
int FreeLoopbackPort() {
  static std::mt19937 random(std::random_device{}());
  const int low = EphemeralLow();
  const int from = std::max(1024, low - 12000);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const int port = std::uniform_int_distribution<int>(from, low - 1)(random);
    if (LoopbackPortFree(port)) return port;
  }
  return 0;
}

}  // namespace kvtier::testing
