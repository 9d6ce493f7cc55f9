#include "kvtier/api/local_frame.h"

#include <google/protobuf/message_lite.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kvtier {
namespace {

bool PeerGone(int err) { return err == EPIPE || err == ECONNRESET || err == ENOTCONN; }

Status SendAll(int socket, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = send(socket, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      if (PeerGone(errno)) return Unavailable("local socket closed by the peer");
      return Internal(std::string("local socket send: ") + std::strerror(errno));
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status RecvAll(int socket, char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = recv(socket, data, size, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) return Unavailable("local socket closed by the peer in the middle of a frame");
    if (n < 0) {
      if (PeerGone(errno)) return Unavailable("local socket closed by the peer");
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Status(StatusCode::kDeadlineExceeded, "local frame timed out");
      return Internal(std::string("local socket recv: ") + std::strerror(errno));
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

void CloseAll(std::vector<int>* fds, size_t from) {
  for (size_t i = from; i < fds->size(); ++i) close((*fds)[i]);
  fds->resize(from);
}

}  // namespace

Status SendLocalFrame(int socket, const google::protobuf::MessageLite& message, std::string* scratch,
                      std::span<const int> fds) {
  if (fds.size() > static_cast<size_t>(kLocalFrameMaxFds)) return InvalidArgument("too many descriptors for a frame");
  const size_t body = message.ByteSizeLong();
  if (body > kLocalFrameMaxBody) return InvalidArgument("local frame body of " + std::to_string(body) + " bytes is too large");
  scratch->resize(sizeof(LocalFrameHeader) + body);
  const LocalFrameHeader header{kLocalFrameMagic, kLocalFrameVersion, static_cast<uint16_t>(fds.size()),
                                static_cast<uint32_t>(body)};
  std::memcpy(scratch->data(), &header, sizeof(header));
  if (!message.SerializeToArray(scratch->data() + sizeof(header), static_cast<int>(body))) {
    return Internal("cannot serialize a local frame");
  }
  if (fds.empty()) return SendAll(socket, scratch->data(), scratch->size());

  // Descriptors ride on the first byte of the frame.
  char control[CMSG_SPACE(sizeof(int) * kLocalFrameMaxFds)] = {};
  iovec iov{scratch->data(), 1};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
  cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
  std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
  ssize_t n;
  do {
    n = sendmsg(socket, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (PeerGone(errno)) return Unavailable("local socket closed by the peer");
    return Internal(std::string("local socket sendmsg: ") + std::strerror(errno));
  }
  return SendAll(socket, scratch->data() + 1, scratch->size() - 1);
}

Status RecvLocalFrame(int socket, google::protobuf::MessageLite* message, std::string* scratch, std::vector<int>* fds,
                      int timeout_ms) {
  if (timeout_ms >= 0) {
    pollfd p{socket, POLLIN, 0};
    int ready;
    do {
      ready = poll(&p, 1, timeout_ms);
    } while (ready < 0 && errno == EINTR);
    if (ready == 0) return Status(StatusCode::kDeadlineExceeded, "no reply on the local socket in time");
  }
  // The first byte comes with any descriptors attached to the frame.
  LocalFrameHeader header{};
  char control[CMSG_SPACE(sizeof(int) * kLocalFrameMaxFds)] = {};
  iovec iov{&header, 1};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = recvmsg(socket, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n == 0) return Unavailable("local socket closed by the peer");
  if (n < 0) {
    if (PeerGone(errno)) return Unavailable("local socket closed by the peer");
    return Internal(std::string("local socket recvmsg: ") + std::strerror(errno));
  }
  std::vector<int> received;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      received.push_back(fd);
    }
  }
  const bool truncated = (msg.msg_flags & MSG_CTRUNC) != 0;
  Status s = RecvAll(socket, reinterpret_cast<char*>(&header) + 1, sizeof(header) - 1);
  if (s.ok() && (header.magic != kLocalFrameMagic || header.version != kLocalFrameVersion)) {
    s = InvalidArgument("not a kvtier local frame (magic or version " + std::to_string(header.version) + ")");
  }
  if (s.ok() && (truncated || received.size() != header.fd_count)) {
    s = InvalidArgument("local frame announced " + std::to_string(header.fd_count) + " descriptors, " +
                        std::to_string(received.size()) + " arrived");
  }
  if (s.ok() && header.body_bytes > kLocalFrameMaxBody) {
    s = InvalidArgument("local frame body of " + std::to_string(header.body_bytes) + " bytes is too large");
  }
  if (s.ok()) {
    scratch->resize(header.body_bytes);
    s = RecvAll(socket, scratch->data(), header.body_bytes);
  }
  if (s.ok() && !message->ParseFromArray(scratch->data(), static_cast<int>(header.body_bytes))) {
    s = InvalidArgument("local frame body does not parse");
  }
  const size_t before = fds != nullptr ? fds->size() : 0;
  if (fds != nullptr) fds->insert(fds->end(), received.begin(), received.end());
  else for (int fd : received) close(fd);
  if (!s.ok() && fds != nullptr) CloseAll(fds, before);
  return s;
}

}  // namespace kvtier
