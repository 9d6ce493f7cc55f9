// RedisPeer: a private redis-server child process on a free loopback port, persistence off, killed
// and reaped on destruction. Not thread-safe (owned by the benchmark's main thread).
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "kvtier/api/status.h"

namespace kvtier::bench {

class RedisPeer {
 public:
  static Result<std::unique_ptr<RedisPeer>> Start(const std::string& binary);
  ~RedisPeer();
  int port() const { return port_; }
  std::string version() const { return version_; }

 private:
  RedisPeer() = default;
  pid_t pid_ = -1;
  int port_ = 0;
  std::string version_;
};

}  // namespace kvtier::bench
