#include "local_channel.h"

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "kvtier/api/local_frame.h"

namespace kvtier {

Result<std::shared_ptr<SharedMapping>> SharedMapping::Map(int fd, uint64_t bytes, bool writable) {
  struct stat st{};
  if (fstat(fd, &st) != 0) return Internal(std::string("fstat of a shared arena: ") + std::strerror(errno));
  if (static_cast<uint64_t>(st.st_size) < bytes) {
    return DataLoss("the server's shared file is smaller (" + std::to_string(st.st_size) + " bytes) than announced (" +
                    std::to_string(bytes) + ")");
  }
  const int prot = PROT_READ | (writable ? PROT_WRITE : 0);
  void* mem = mmap(nullptr, bytes, prot, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (mem == MAP_FAILED) return Internal(std::string("cannot map the server's shared memory: ") + std::strerror(errno));
  std::shared_ptr<SharedMapping> mapping(new SharedMapping());
  mapping->data_ = static_cast<std::byte*>(mem);
  mapping->size_ = bytes;
  mapping->dev_ = st.st_dev;
  mapping->ino_ = st.st_ino;
  return mapping;
}

SharedMapping::~SharedMapping() {
  if (data_ != nullptr) munmap(data_, size_);
}

bool SharedMapping::SameFile(int fd) const {
  struct stat st{};
  return fstat(fd, &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_;
}

Result<std::unique_ptr<LocalChannel>> LocalChannel::Open(const Config& config, std::shared_ptr<SharedMapping> arena) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (config.socket_path.empty() || config.socket_path.size() >= sizeof(addr.sun_path)) {
    return InvalidArgument("bad local socket path '" + config.socket_path + "'");
  }
  std::memcpy(addr.sun_path, config.socket_path.c_str(), config.socket_path.size() + 1);
  std::unique_ptr<LocalChannel> channel(new LocalChannel());
  channel->timeout_ms_ = config.timeout_ms;
  channel->fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (channel->fd_ < 0) return Internal(std::string("socket: ") + std::strerror(errno));
  if (connect(channel->fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Unavailable("cannot connect to " + config.socket_path + ": " + std::strerror(errno));
  }
  v1::LocalRequest request;
  v1::LocalHello* hello = request.mutable_hello();
  *hello->mutable_context() = config.context;
  hello->set_bearer_token(config.bearer_token);
  hello->set_instance_id(config.instance_id);
  hello->set_want_put_window(config.want_put_window);
  KVTIER_RETURN_IF_ERROR(SendLocalFrame(channel->fd_, request, &channel->scratch_));
  std::vector<int> fds;
  KVTIER_RETURN_IF_ERROR(RecvLocalFrame(channel->fd_, &channel->response_, &channel->scratch_, &fds, config.timeout_ms));
  struct Closer {
    std::vector<int>& fds;
    ~Closer() {
      for (int fd : fds) close(fd);
    }
  } closer{fds};
  const v1::LocalResponse& r = channel->response_;
  if (r.code() != 0) return Status(static_cast<StatusCode>(r.code()), r.message());
  const v1::LocalHelloReply& reply = r.hello();
  const size_t want_fds = reply.window_bytes() > 0 ? 2 : 1;
  if (fds.size() != want_fds || reply.arena_bytes() == 0) {
    return Internal("hello reply came with " + std::to_string(fds.size()) + " descriptors, expected " +
                    std::to_string(want_fds));
  }
  if (arena == nullptr || !arena->SameFile(fds[0]) || arena->size() != reply.arena_bytes()) {
    auto mapped = SharedMapping::Map(fds[0], reply.arena_bytes(), /*writable=*/false);
    if (!mapped.ok()) return mapped.status();
    arena = std::move(mapped).value();
  }
  channel->arena_ = std::move(arena);
  if (want_fds == 2) {
    auto window = SharedMapping::Map(fds[1], reply.window_bytes(), /*writable=*/true);
    if (!window.ok()) return window.status();
    channel->window_ = std::move(window).value();
  }
  channel->instance_id_ = reply.instance_id();
  channel->gpu_export_ = gpu::IpcExport{reply.gpu_ipc_handle(), reply.gpu_pci_bus_id()};
  channel->gpu_arena_bytes_ = reply.gpu_arena_bytes();
  return channel;
}

LocalChannel::~LocalChannel() {
  if (fd_ >= 0) close(fd_);
}

Result<const v1::LocalResponse*> LocalChannel::Call(const v1::LocalRequest& request) {
  if (broken_) return Unavailable("local channel is broken");
  Status s = SendLocalFrame(fd_, request, &scratch_);
  if (s.ok()) s = RecvLocalFrame(fd_, &response_, &scratch_, nullptr, timeout_ms_);
  if (!s.ok()) {
    broken_ = true;
    return s;
  }
  if (response_.code() < 0 || response_.code() > static_cast<int>(StatusCode::kUnauthenticated)) {
    broken_ = true;
    return Internal("local reply carries an unknown status code " + std::to_string(response_.code()));
  }
  if (response_.code() != 0) return Status(static_cast<StatusCode>(response_.code()), response_.message());
  return &response_;
}

}  // namespace kvtier
