#include "redis_peer.h"

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

extern char** environ;

namespace kvtier::bench {
namespace {

Result<int> FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return Unavailable("socket: " + std::string(std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return Unavailable("cannot find a free loopback port");
  }
  const int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

}  // namespace

Result<std::unique_ptr<RedisPeer>> RedisPeer::Start(const std::string& binary) {
  auto port = FreeLoopbackPort();
  if (!port.ok()) return port.status();
  std::unique_ptr<RedisPeer> peer(new RedisPeer());
  peer->port_ = *port;
  const std::string port_text = std::to_string(*port);
  std::vector<std::string> args = {binary,          "--port",       port_text, "--bind", "127.0.0.1",
                                   "--save",        "",             "--appendonly", "no",
                                   "--daemonize",   "no",           "--protected-mode", "yes",
                                   "--logfile",     "",             "--loglevel", "warning",
                                   "--proto-max-bulk-len", "1gb"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // Redis logs its banner and warnings to stdout; keep them out of the benchmark's output.
  posix_spawn_file_actions_t quiet;
  posix_spawn_file_actions_init(&quiet);
  posix_spawn_file_actions_addopen(&quiet, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&quiet, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, binary.c_str(), &quiet, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&quiet);
  if (rc != 0) return Unavailable("cannot start " + binary + " (install redis-server: scripts/install-deps.sh)");
  peer->pid_ = pid;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      peer->pid_ = -1;
      return Unavailable(binary + " exited at start (status " + std::to_string(status) + ")");
    }
    redisContext* c = redisConnect("127.0.0.1", *port);
    if (c != nullptr && c->err == 0) {
      auto* reply = static_cast<redisReply*>(redisCommand(c, "INFO server"));
      if (reply != nullptr && reply->type == REDIS_REPLY_STRING) {
        const std::string info(reply->str, reply->len);
        const size_t at = info.find("redis_version:");
        if (at != std::string::npos) peer->version_ = info.substr(at + 14, info.find('\r', at) - at - 14);
      }
      if (reply != nullptr) freeReplyObject(reply);
      redisFree(c);
      if (!peer->version_.empty()) return peer;
    } else if (c != nullptr) {
      redisFree(c);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Unavailable(binary + " did not answer on port " + port_text + " within 10 s");
}

RedisPeer::~RedisPeer() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
}

}  // namespace kvtier::bench
