// LocalChannel: one connection of the same-host protocol (kvstore/SHM.md) from the client side: the Unix
// socket bound to the client's namespace, the read-only mapping of the namespace's arena (shared by all
// channels of a client that reach the same server instance) and this connection's put window.
//
// Any failure of the socket or of the framing marks the channel broken(); the owner then drops it and
// falls back to gRPC. Not thread-safe: one request at a time (LocalPath hands channels out exclusively).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "kvtier/api/status.h"
#include "kvtier/api/types.h"
#include "kvtier/gpu/ipc.h"
#include "kvtier/v1/local.pb.h"

namespace kvtier {

// A read-only (or, for a put window, read-write) shared mapping of a memfd received from the server.
class SharedMapping {
 public:
  // Maps all of `fd` (which stays the caller's), pre-faulting the page tables so copies do not fault.
  static Result<std::shared_ptr<SharedMapping>> Map(int fd, uint64_t bytes, bool writable);
  ~SharedMapping();
  SharedMapping(const SharedMapping&) = delete;
  SharedMapping& operator=(const SharedMapping&) = delete;

  std::byte* data() const { return data_; }
  uint64_t size() const { return size_; }
  // Whether `fd` is the file this maps (same device and inode): a new connection to the same server
  // instance reuses the mapping instead of mapping the arena again.
  bool SameFile(int fd) const;

 private:
  SharedMapping() = default;
  std::byte* data_ = nullptr;
  uint64_t size_ = 0;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

class LocalChannel {
 public:
  struct Config {
    std::string socket_path;
    uint64_t instance_id = 0;     // 0: any instance
    v1::RequestContext context;   // namespace + fingerprint
    std::string bearer_token;
    bool want_put_window = true;
    int timeout_ms = 30000;       // per request
  };

  // Connects and says hello. `arena` is reused when the server sends the same arena file.
  static Result<std::unique_ptr<LocalChannel>> Open(const Config& config, std::shared_ptr<SharedMapping> arena);
  ~LocalChannel();
  LocalChannel(const LocalChannel&) = delete;
  LocalChannel& operator=(const LocalChannel&) = delete;

  bool broken() const { return broken_; }
  uint64_t instance_id() const { return instance_id_; }
  const std::shared_ptr<SharedMapping>& arena() const { return arena_; }
  SharedMapping* window() const { return window_.get(); }
  // The server's GPU tier arena as it exported it by CUDA IPC (empty handle: none), and its size.
  const gpu::IpcExport& gpu_export() const { return gpu_export_; }
  uint64_t gpu_arena_bytes() const { return gpu_arena_bytes_; }

  // One request and its reply; the reply's status (code, message) is returned as a Status.
  Result<const v1::LocalResponse*> Call(const v1::LocalRequest& request);

 private:
  LocalChannel() = default;

  int fd_ = -1;
  int timeout_ms_ = 30000;
  bool broken_ = false;
  uint64_t instance_id_ = 0;
  std::shared_ptr<SharedMapping> arena_;
  std::shared_ptr<SharedMapping> window_;
  gpu::IpcExport gpu_export_;
  uint64_t gpu_arena_bytes_ = 0;
  v1::LocalResponse response_;
  std::string scratch_;
};

}  // namespace kvtier
