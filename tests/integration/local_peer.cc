// local_peer: a separate process that speaks the same-host protocol (kvstore/SHM.md) and then dies
// holding what it took, for the tests of what a crashed client leaves behind.
//
//   local_peer SOCKET NAMESPACE CHUNK_TOKENS KEY_HI KEY_LO
//
// Says hello (with the integration tests' fingerprint), gets the key with a 10-minute lease, prints
// "leased <offset>" and then waits to be killed.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "integration/test_server.h"
#include "kvtier/api/convert.h"
#include "kvtier/api/local_frame.h"
#include "kvtier/v1/local.pb.h"

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: local_peer SOCKET NAMESPACE CHUNK_TOKENS KEY_HI KEY_LO\n");
    return 2;
  }
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, argv[1], sizeof(addr.sun_path) - 1);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    std::perror("connect");
    return 1;
  }
  std::string scratch;
  std::vector<int> fds;
  kvtier::v1::LocalRequest request;
  kvtier::v1::LocalResponse response;
  request.mutable_hello()->mutable_context()->set_namespace_(argv[2]);
  kvtier::ToProto(kvtier::testing::TestFingerprint(static_cast<uint32_t>(std::atoi(argv[3]))),
                  request.mutable_hello()->mutable_context()->mutable_fingerprint());
  if (!kvtier::SendLocalFrame(fd, request, &scratch).ok() ||
      !kvtier::RecvLocalFrame(fd, &response, &scratch, &fds).ok() || response.code() != 0) {
    std::fprintf(stderr, "hello failed: %s\n", response.message().c_str());
    return 1;
  }
  request.Clear();
  const kvtier::ChunkKey key{std::strtoull(argv[4], nullptr, 0), std::strtoull(argv[5], nullptr, 0)};
  request.mutable_get()->add_keys(kvtier::KeyToWire(key));
  request.mutable_get()->set_lease_ms(600000);
  if (!kvtier::SendLocalFrame(fd, request, &scratch).ok() ||
      !kvtier::RecvLocalFrame(fd, &response, &scratch).ok() || response.code() != 0 ||
      response.get().chunks_size() != 1 || !response.get().chunks(0).found()) {
    std::fprintf(stderr, "get failed: %s\n", response.message().c_str());
    return 1;
  }
  std::printf("leased %llu\n", static_cast<unsigned long long>(response.get().chunks(0).offset()));
  std::fflush(stdout);
  for (;;) pause();
}
