// Framing of the same-host protocol (kvstore/SHM.md): one protobuf message per frame on a Unix stream
// socket, optionally with file descriptors attached (SCM_RIGHTS).
//
// A frame is a 12-byte little-endian header {magic "KVTL", version, descriptor count, body length}
// followed by the serialized body. There is no checksum: the bytes never leave the kernel, and the magic,
// version and length bound catch a reader that lost its place. Free functions; the socket is the caller's,
// and one frame must be sent or received at a time per socket.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kvtier/api/status.h"

namespace google::protobuf {
class MessageLite;
}

namespace kvtier {

struct LocalFrameHeader {
  uint32_t magic;       // kLocalFrameMagic
  uint16_t version;     // kLocalFrameVersion
  uint16_t fd_count;    // descriptors sent with the header's first byte
  uint32_t body_bytes;  // <= kLocalFrameMaxBody
};
static_assert(sizeof(LocalFrameHeader) == 12, "the frame header is 12 bytes on the wire");

constexpr uint32_t kLocalFrameMagic = 0x4c54564b;  // "KVTL" in little-endian byte order
constexpr uint16_t kLocalFrameVersion = 1;
constexpr uint32_t kLocalFrameMaxBody = 16u << 20;
constexpr int kLocalFrameMaxFds = 4;

// Sends `message` (and `fds`, which stay owned by the caller). `scratch` is reused between calls.
// UNAVAILABLE when the peer is gone.
Status SendLocalFrame(int socket, const google::protobuf::MessageLite& message, std::string* scratch,
                      std::span<const int> fds = {});

// Receives one frame into `message`. Descriptors that came with it are appended to `fds` (the caller
// closes them) or closed when `fds` is null. Waits at most `timeout_ms` for the frame to start (< 0:
// forever): DEADLINE_EXCEEDED. UNAVAILABLE when the peer closed the socket; INVALID_ARGUMENT for a
// frame that breaks the format (the connection is then unusable).
Status RecvLocalFrame(int socket, google::protobuf::MessageLite* message, std::string* scratch,
                      std::vector<int>* fds = nullptr, int timeout_ms = -1);

}  // namespace kvtier
