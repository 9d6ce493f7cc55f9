#include "kvtier/kvstore/local_server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "kvtier/api/local_frame.h"
#include "kvtier/kvstore/log.h"
#include "kvtier/v1/local.pb.h"
#include "local_session.h"

namespace kvtier {
namespace {

Result<sockaddr_un> SocketAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return InvalidArgument("shared_memory.socket path is longer than " + std::to_string(sizeof(addr.sun_path) - 1) +
                           " bytes: " + path);
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

// A socket file left by a server that died is removed; one that a live server answers on is not.
Status ClaimSocketPath(const std::string& path, const sockaddr_un& addr) {
  struct stat st{};
  if (lstat(path.c_str(), &st) != 0) return Status::Ok();
  if (!S_ISSOCK(st.st_mode)) return FailedPrecondition("shared_memory.socket " + path + " exists and is not a socket");
  const int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe < 0) return Internal(std::string("socket: ") + std::strerror(errno));
  const bool live = connect(probe, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
  close(probe);
  if (live) return Unavailable("shared_memory.socket " + path + " is in use by another running server");
  if (unlink(path.c_str()) != 0) {
    return Internal("cannot remove the stale socket " + path + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

}  // namespace

Status LocalServerOptions::Validate() const {
  if (!enabled()) return Status::Ok();
  if (socket_path.front() != '/') return InvalidArgument("shared_memory.socket must be an absolute path");
  if (socket_mode > 0777) return InvalidArgument("shared_memory.socket_mode must be an octal mode <= 0777");
  if (max_connections == 0) return InvalidArgument("shared_memory.max_connections must be > 0");
  if (default_lease_ms == 0) return InvalidArgument("shared_memory.default_lease_ms must be > 0");
  if (max_leases_per_connection == 0) return InvalidArgument("shared_memory.max_leases_per_connection must be > 0");
  if (put_window_bytes != 0 && put_window_bytes < (1ull << 20)) {
    return InvalidArgument("shared_memory.put_window must be 0 (off) or at least 1 MiB");
  }
  return Status::Ok();
}

// The socket is closed only after the thread is joined, so Stop() never shuts down a descriptor number
// that was closed and reused meanwhile.
struct LocalServer::Connection {
  int fd = -1;
  std::thread thread;
  std::atomic<bool> done{false};
};

LocalServer::LocalServer(Store* store, Metrics* metrics, const Authorizer* auth, LocalServerOptions options,
                         uint64_t instance_id, uint32_t max_lease_ms)
    : store_(store),
      metrics_(metrics),
      auth_(auth),
      options_(std::move(options)),
      instance_id_(instance_id),
      max_lease_ms_(max_lease_ms) {}

Result<std::unique_ptr<LocalServer>> LocalServer::Start(Store* store, Metrics* metrics, const Authorizer* auth,
                                                        const LocalServerOptions& options, uint64_t instance_id,
                                                        uint32_t max_lease_ms) {
  KVTIER_RETURN_IF_ERROR(options.Validate());
  auto addr = SocketAddress(options.socket_path);
  if (!addr.ok()) return addr.status();
  KVTIER_RETURN_IF_ERROR(ClaimSocketPath(options.socket_path, *addr));
  std::unique_ptr<LocalServer> server(new LocalServer(store, metrics, auth, options, instance_id, max_lease_ms));
  server->listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  server->wake_fd_ = eventfd(0, EFD_CLOEXEC);
  if (server->listen_fd_ < 0 || server->wake_fd_ < 0) return Internal(std::string("socket: ") + std::strerror(errno));
  // Bind with the final mode already in place: no window in which the socket is more open than asked.
  const mode_t old_mask = umask(static_cast<mode_t>(~options.socket_mode & 0777));
  const int bound = bind(server->listen_fd_, reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr));
  const int bind_errno = errno;
  umask(old_mask);
  if (bound != 0) {
    return Unavailable("cannot bind shared_memory.socket " + options.socket_path + ": " + std::strerror(bind_errno));
  }
  if (chmod(options.socket_path.c_str(), static_cast<mode_t>(options.socket_mode)) != 0 ||
      listen(server->listen_fd_, 64) != 0) {
    unlink(options.socket_path.c_str());
    return Internal("cannot listen on " + options.socket_path + ": " + std::strerror(errno));
  }
  server->acceptor_ = std::thread([s = server.get()] { s->AcceptLoop(); });
  return server;
}

LocalServer::~LocalServer() {
  Stop();
  if (listen_fd_ >= 0) close(listen_fd_);
  if (wake_fd_ >= 0) close(wake_fd_);
}

void LocalServer::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    // Wakes every connection thread: its poll sees the hang-up, it drops its leases and exits.
    for (auto& c : live_) shutdown(c->fd, SHUT_RDWR);
  }
  const uint64_t one = 1;
  if (wake_fd_ >= 0) (void)!write(wake_fd_, &one, sizeof(one));
  if (acceptor_.joinable()) acceptor_.join();
  std::list<std::unique_ptr<Connection>> connections;
  {
    std::lock_guard lock(mu_);
    connections.swap(live_);
  }
  for (auto& c : connections) {
    if (c->thread.joinable()) c->thread.join();
    close(c->fd);
  }
  if (listen_fd_ >= 0) unlink(options_.socket_path.c_str());
}

void LocalServer::ReapFinished() {
  std::list<std::unique_ptr<Connection>> finished;
  {
    std::lock_guard lock(mu_);
    for (auto it = live_.begin(); it != live_.end();) {
      if ((*it)->done.load(std::memory_order_acquire)) finished.splice(finished.end(), live_, it++);
      else ++it;
    }
  }
  for (auto& c : finished) {
    c->thread.join();
    close(c->fd);
  }
}

void LocalServer::AcceptLoop() {
  pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
  for (;;) {
    const int ready = poll(fds, 2, 1000);
    if (ready < 0 && errno != EINTR) {
      KVTIER_LOG(kError) << "shared memory: poll on " << options_.socket_path << ": " << std::strerror(errno);
      return;
    }
    ReapFinished();
    if (fds[1].revents != 0) return;
    if (ready <= 0 || (fds[0].revents & POLLIN) == 0) continue;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::lock_guard lock(mu_);
    if (stopped_ || live_.size() >= options_.max_connections) {
      KVTIER_LOG(kWarning) << "shared memory: refusing a connection (" << live_.size() << " of max_connections "
                           << options_.max_connections << " open)";
      close(fd);
      continue;
    }
    auto connection = std::make_unique<Connection>();
    connection->fd = fd;
    Connection* c = connection.get();
    live_.push_back(std::move(connection));
    connections_.fetch_add(1, std::memory_order_relaxed);
    c->thread = std::thread([this, c] { Serve(c); });
  }
}

void LocalServer::Serve(Connection* connection) {
  // A peer that starts a frame and stalls must not hold this thread forever.
  const timeval io_timeout{10, 0};
  setsockopt(connection->fd, SOL_SOCKET, SO_RCVTIMEO, &io_timeout, sizeof(io_timeout));
  setsockopt(connection->fd, SOL_SOCKET, SO_SNDTIMEO, &io_timeout, sizeof(io_timeout));
  {
    LocalSession session({store_, metrics_, auth_, &options_, instance_id_, max_lease_ms_, &leases_});
    v1::LocalRequest request;
    v1::LocalResponse response;
    std::string scratch;
    std::vector<int> send_fds;
    for (;;) {
      pollfd p{connection->fd, POLLIN, 0};
      const int ready = poll(&p, 1, session.MillisUntilNextExpiry());
      session.ExpireLeases();
      if (ready < 0 && errno == EINTR) continue;
      if (ready < 0) break;
      if (ready == 0) continue;
      Status received = RecvLocalFrame(connection->fd, &request, &scratch, nullptr, 0);
      if (!received.ok()) {
        if (received.code() == StatusCode::kInvalidArgument) {
          // Say why before hanging up: a client on another protocol version learns what went wrong.
          response.Clear();
          response.set_code(static_cast<int>(received.code()));
          response.set_message(received.message());
          (void)SendLocalFrame(connection->fd, response, &scratch);
        }
        break;
      }
      response.Clear();
      send_fds.clear();
      session.Handle(request, &response, &send_fds);
      const Status sent = SendLocalFrame(connection->fd, response, &scratch, send_fds);
      session.AfterSend();
      if (!sent.ok()) break;
    }
  }  // the session's leases and reservations end here; the fd is closed after the join (see Connection)
  shutdown(connection->fd, SHUT_RDWR);  // the peer sees the end now, not when the thread is reaped
  connections_.fetch_sub(1, std::memory_order_relaxed);
  connection->done.store(true, std::memory_order_release);
}

}  // namespace kvtier
