// The same-host shared-memory path (kvstore/SHM.md) against a real server: real Unix sockets, real memfds
// passed with SCM_RIGHTS, real mappings. Covers the client choosing the path by itself, the fallback to
// gRPC, what the mappings allow, leases (expiry while mapped, a client killed while holding one), a server
// restart under a mapped client, and malformed requests.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "integration/test_server.h"
#include "kvtier/api/convert.h"
#include "kvtier/api/local_frame.h"
#include "kvtier/kvstore/local_server.h"
#include "kvtier/v1/local.pb.h"

extern char** environ;

namespace kvtier::testing {
namespace {

constexpr uint32_t kTokens = 256;              // 256 KiB chunks with TestFingerprint
constexpr uint64_t kChunkBytes = kTokens * 1024;
constexpr const char* kShared = "workers";     // the namespace allowed to map its arena

// Waits (bounded) until `done` holds; the bound only guards against a hang.
template <typename Fn>
bool Eventually(Fn done) {
  for (int i = 0; i < 500; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

// Speaks the protocol directly, to do what the Client never does.
class RawLocal {
 public:
  explicit RawLocal(const std::string& path) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~RawLocal() {
    for (int fd : fds_) close(fd);
    close(fd_);
  }
  bool connected() const { return connected_; }
  int fd() const { return fd_; }
  const std::vector<int>& fds() const { return fds_; }

  v1::LocalResponse Call(const v1::LocalRequest& request) {
    v1::LocalResponse response;
    EXPECT_TRUE(SendLocalFrame(fd_, request, &scratch_).ok());
    const Status s = RecvLocalFrame(fd_, &response, &scratch_, &fds_, 10000);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return response;
  }
  v1::LocalResponse Hello(const std::string& name_space, bool window = true, const std::string& token = "") {
    v1::LocalRequest request;
    request.mutable_hello()->mutable_context()->set_namespace_(name_space);
    ToProto(TestFingerprint(kTokens), request.mutable_hello()->mutable_context()->mutable_fingerprint());
    request.mutable_hello()->set_want_put_window(window);
    request.mutable_hello()->set_bearer_token(token);
    return Call(request);
  }
  v1::LocalResponse Get(const ChunkKey& key, uint32_t lease_ms) {
    v1::LocalRequest request;
    request.mutable_get()->add_keys(KeyToWire(key));
    request.mutable_get()->set_lease_ms(lease_ms);
    return Call(request);
  }
  v1::LocalResponse Release(uint64_t lease) {
    v1::LocalRequest request;
    request.mutable_release()->add_leases(lease);
    return Call(request);
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::vector<int> fds_;
  std::string scratch_;
};

class LocalPathTest : public ServerFixture {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("kvtier-local-" + std::to_string(getpid()) + "-" +
                                                     std::to_string(reinterpret_cast<uintptr_t>(this)));
    std::filesystem::create_directories(dir_);
    socket_ = (dir_ / "kvtier.sock").string();
    Start();
  }
  void TearDown() override {
    ServerFixture::TearDown();
    std::filesystem::remove_all(dir_);
  }
  void Start(int port = 0) {
    StartServer(4ull << 20, [&](ServerConfig& c) {
      if (port != 0) c.listen = "127.0.0.1:" + std::to_string(port);
      c.store.host_prefault = false;
      c.store.shared_arena_bytes[kShared] = 2ull << 20;  // room for 7 chunks
      c.shared_memory.socket_path = socket_;
      c.shared_memory.put_window_bytes = 1ull << 20;
      tweak_(c);
    });
  }
  std::unique_ptr<Client> LocalClient(const std::string& name_space = kShared,
                                      LocalPathMode mode = LocalPathMode::kRequire) {
    ClientOptions options;
    options.endpoint = server_->address();
    options.name_space = name_space;
    options.fingerprint = TestFingerprint(kTokens);
    options.local_path = mode;
    options.local_retry = std::chrono::milliseconds(0);
    options.max_attempts = 5;
    auto client = Client::Connect(options);
    EXPECT_TRUE(client.ok()) << client.status().ToString();
    return std::move(client).value();
  }
  void PutChunk(Client& client, const ChunkKey& key) {
    auto put = client.Put(key, TokensFor(key, kTokens), PayloadFor(key, kChunkBytes));
    ASSERT_TRUE(put.ok()) << put.status().ToString();
  }
  void ExpectChunk(Client& client, const ChunkKey& key) {
    std::vector<std::byte> dest(kChunkBytes);
    auto got = client.Get(key, dest);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ASSERT_TRUE(got->found);
    EXPECT_EQ(got->bytes, kChunkBytes);
    EXPECT_EQ(got->num_tokens, kTokens);
    EXPECT_TRUE(dest == PayloadFor(key, kChunkBytes)) << "bytes differ for " << key.ToHex();
  }

  std::filesystem::path dir_;
  std::string socket_;
  std::function<void(ServerConfig&)> tweak_ = [](ServerConfig&) {};
};

TEST_F(LocalPathTest, ClientUsesSharedMemoryByItselfAndBytesRoundTrip) {
  auto client = LocalClient(kShared, LocalPathMode::kAuto);
  for (uint64_t i = 0; i < 4; ++i) PutChunk(*client, {0x5a, i});
  for (uint64_t i = 0; i < 4; ++i) ExpectChunk(*client, {0x5a, i});
  // A batch with a miss in the middle.
  std::vector<ChunkKey> keys = {{0x5a, 0}, {0x5a, 99}, {0x5a, 3}};
  std::vector<std::vector<std::byte>> bufs(3, std::vector<std::byte>(kChunkBytes));
  std::vector<std::span<std::byte>> dests(bufs.begin(), bufs.end());
  auto batch = client->GetBatch(keys, dests);
  ASSERT_TRUE(batch.ok()) << batch.status().ToString();
  EXPECT_TRUE((*batch)[0].found);
  EXPECT_FALSE((*batch)[1].found);
  EXPECT_TRUE((*batch)[2].found);
  EXPECT_TRUE(bufs[2] == PayloadFor({0x5a, 3}, kChunkBytes));

  const LocalPathStats stats = client->local_stats();
  EXPECT_EQ(stats.local_puts, 4u);
  EXPECT_EQ(stats.local_gets, 5u);
  EXPECT_EQ(stats.fallbacks, 0u) << client->local_fallback_reason();
  // What went through shared memory is visible over gRPC too, and the other way round.
  auto grpc_only = LocalClient(kShared, LocalPathMode::kOff);
  ExpectChunk(*grpc_only, {0x5a, 2});
  PutChunk(*grpc_only, {0x5a, 7});
  ExpectChunk(*client, {0x5a, 7});
  EXPECT_EQ(client->local_stats().local_gets, 6u);
  EXPECT_EQ(server_->local()->leases(), 0u);  // every lease was released
}

// A connection opened before anything of its namespace was stored sees what is stored later.
TEST_F(LocalPathTest, ConnectionOpenedOnAnEmptyNamespaceSeesLaterPuts) {
  RawLocal raw(socket_);
  ASSERT_EQ(raw.Hello(kShared).code(), 0);
  const ChunkKey key{0xf1, 1};
  EXPECT_FALSE(raw.Get(key, 1000).get().chunks(0).found());
  PutChunk(*LocalClient(kShared, LocalPathMode::kOff), key);
  const v1::LocalResponse later = raw.Get(key, 1000);
  ASSERT_EQ(later.code(), 0) << later.message();
  EXPECT_TRUE(later.get().chunks(0).found());
}

TEST_F(LocalPathTest, EncodedChunksDecodeStraightFromTheArena) {
  ClientOptions options;
  options.endpoint = server_->address();
  options.name_space = kShared;
  options.fingerprint = TestFingerprint(kTokens);
  options.local_path = LocalPathMode::kRequire;
  options.encode.codec = codec::CodecId::kLossless;
  auto client = Client::Connect(options);
  ASSERT_TRUE(client.ok());
  const ChunkKey key{0xe0, 1};
  // Smooth fp16 values so the lossless codec has something to do; the round trip must be bit-exact.
  std::vector<std::byte> kv(kChunkBytes);
  for (size_t i = 0; i + 1 < kv.size(); i += 2) {
    kv[i] = static_cast<std::byte>(i / 2 % 7);
    kv[i + 1] = static_cast<std::byte>(0x3c);
  }
  ASSERT_TRUE((*client)->Put(key, TokensFor(key, kTokens), kv).ok());
  std::vector<std::byte> dest(kChunkBytes);
  auto got = (*client)->Get(key, dest);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(got->found);
  EXPECT_TRUE(dest == kv);
  EXPECT_EQ((*client)->local_stats().local_gets, 1u);
  EXPECT_EQ((*client)->local_stats().local_puts, 1u);
}

// The server leaves the checksum of a local get to the reader: corrupt bytes are still a miss, and the
// chunk is dropped and counted on the server.
TEST_F(LocalPathTest, CorruptChunkIsAMissAndIsDropped) {
  auto client = LocalClient(kShared, LocalPathMode::kRequire);
  const ChunkKey key{0xc0, 1};
  PutChunk(*client, key);
  RawLocal raw(socket_);
  ASSERT_EQ(raw.Hello(kShared).code(), 0);
  const v1::LocalResponse where = raw.Get(key, 60000);  // a lease no slow machine outlives
  ASSERT_TRUE(where.get().chunks(0).found());
  ASSERT_EQ(raw.Release(where.get().chunks(0).lease()).release().expired(), 0u);
  // Flip one payload bit in the server's memory, as failing DRAM would.
  const HostArena* arena = server_->store().SharedArenaOf(kShared);
  ASSERT_NE(arena, nullptr);
  arena->data()[where.get().chunks(0).offset() + 12345] ^= std::byte{0x10};

  std::vector<std::byte> dest(kChunkBytes);
  auto got = client->Get(key, dest);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_FALSE(got->found);
  EXPECT_EQ(client->local_stats().local_gets, 1u);
  EXPECT_EQ(server_->store().Stats().checksum_failures, 1u);
  auto exists = client->Exists(std::vector<ChunkKey>{key});
  ASSERT_TRUE(exists.ok());
  EXPECT_FALSE((*exists)[0]);  // dropped, so no later read sees it
}

TEST_F(LocalPathTest, NamespaceNotAllowedFallsBackToGrpc) {
  auto client = LocalClient("not-shared", LocalPathMode::kAuto);
  PutChunk(*client, {0x6b, 1});
  ExpectChunk(*client, {0x6b, 1});
  const LocalPathStats stats = client->local_stats();
  EXPECT_EQ(stats.local_gets, 0u);
  EXPECT_EQ(stats.local_puts, 0u);
  EXPECT_EQ(stats.fallbacks, 2u);
  EXPECT_NE(client->local_fallback_reason().find("does not allow shared memory"), std::string::npos)
      << client->local_fallback_reason();

  auto strict = LocalClient("not-shared", LocalPathMode::kRequire);
  std::vector<std::byte> dest(kChunkBytes);
  auto got = strict->Get({0x6b, 1}, dest);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(got.status().message().find("does not allow shared memory"), std::string::npos) << got.status().message();
}

TEST_F(LocalPathTest, ArenaIsReadOnlyAndFilesCannotBeResized) {
  RawLocal raw(socket_);
  ASSERT_TRUE(raw.connected());
  const v1::LocalResponse hello = raw.Hello(kShared);
  ASSERT_EQ(hello.code(), 0) << hello.message();
  ASSERT_EQ(raw.fds().size(), 2u);
  const int arena = raw.fds()[0];
  const int window = raw.fds()[1];
  EXPECT_EQ(hello.hello().arena_bytes(), 2ull << 20);
  EXPECT_EQ(hello.hello().window_bytes(), 1ull << 20);
  // The arena descriptor is read-only: no writable shared mapping, no write(2), no resize.
  errno = 0;
  EXPECT_EQ(mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, arena, 0), MAP_FAILED);
  EXPECT_EQ(errno, EACCES);
  void* ro = mmap(nullptr, 4096, PROT_READ, MAP_SHARED, arena, 0);
  EXPECT_NE(ro, MAP_FAILED);
  if (ro != MAP_FAILED) munmap(ro, 4096);
  const char byte = 1;
  EXPECT_EQ(write(arena, &byte, 1), -1);
  EXPECT_NE(ftruncate(arena, 0), 0);
  // The window is writable, but sealed: shrinking it under the server's mapping is refused.
  errno = 0;
  EXPECT_NE(ftruncate(window, 4096), 0);
  EXPECT_EQ(errno, EPERM);
}

TEST_F(LocalPathTest, LeaseKeepsBytesUntilReleasedAndExpiryIsReported) {
  auto client = LocalClient(kShared, LocalPathMode::kOff);
  const ChunkKey held{0x1e, 1}, lapsed{0x1e, 2};
  PutChunk(*client, held);
  PutChunk(*client, lapsed);
  RawLocal raw(socket_);
  ASSERT_EQ(raw.Hello(kShared).code(), 0);
  void* mem = mmap(nullptr, 2ull << 20, PROT_READ, MAP_SHARED, raw.fds()[0], 0);
  ASSERT_NE(mem, MAP_FAILED);
  const auto* arena = static_cast<const std::byte*>(mem);

  const v1::LocalResponse a = raw.Get(held, 600000);
  const v1::LocalResponse b = raw.Get(lapsed, 1);
  ASSERT_EQ(a.code(), 0);
  ASSERT_EQ(b.code(), 0);
  ASSERT_TRUE(a.get().chunks(0).found());
  const uint64_t held_at = a.get().chunks(0).offset();
  const uint64_t lapsed_at = b.get().chunks(0).offset();
  EXPECT_EQ(a.get().chunks(0).checksum(), Checksum64(PayloadFor(held, kChunkBytes)));
  // The short lease runs out while the chunk is mapped.
  ASSERT_TRUE(Eventually([&] { return server_->local()->leases() == 1; }));

  // Delete both and fill the arena with new chunks: only the unleased one's space can be reused.
  ASSERT_EQ(*client->Delete(std::vector<ChunkKey>{held, lapsed}), 2u);
  for (uint64_t i = 0; i < 12; ++i) PutChunk(*client, {0x2f, i});  // more than fits: evicts and reuses
  EXPECT_TRUE(std::equal(arena + held_at, arena + held_at + kChunkBytes, PayloadFor(held, kChunkBytes).begin()))
      << "a leased chunk's bytes changed under its reader";
  EXPECT_FALSE(std::equal(arena + lapsed_at, arena + lapsed_at + kChunkBytes, PayloadFor(lapsed, kChunkBytes).begin()))
      << "the space of the expired lease was expected to be reused";
  const v1::LocalResponse ok = raw.Release(a.get().chunks(0).lease());
  const v1::LocalResponse late = raw.Release(b.get().chunks(0).lease());
  EXPECT_EQ(ok.release().expired(), 0u);
  EXPECT_EQ(late.release().expired(), 1u);  // the reader learns its copy cannot be trusted
  EXPECT_EQ(server_->local()->leases(), 0u);
  munmap(mem, 2ull << 20);
}

TEST_F(LocalPathTest, ClientKilledWhileHoldingLeaseLeavesNothingHeld) {
  auto client = LocalClient(kShared, LocalPathMode::kOff);
  const ChunkKey key{0xdead, 1};
  PutChunk(*client, key);
  const uint64_t used_before = HostUsedBytes();

  int out[2];
  ASSERT_EQ(pipe(out), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, out[0]);
  const std::string tokens = std::to_string(kTokens), hi = std::to_string(key.hi), lo = std::to_string(key.lo);
  const char* argv[] = {KVTIER_LOCAL_PEER, socket_.c_str(), kShared, tokens.c_str(), hi.c_str(), lo.c_str(), nullptr};
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, KVTIER_LOCAL_PEER, &actions, nullptr, const_cast<char**>(argv), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  char line[64] = {};
  ASSERT_GT(read(out[0], line, sizeof(line) - 1), 0);
  close(out[0]);
  EXPECT_EQ(std::string(line).rfind("leased ", 0), 0u) << line;
  EXPECT_EQ(server_->local()->leases(), 1u);

  // While the peer lives, deleting the chunk keeps its bytes for the peer.
  ASSERT_EQ(*client->Delete(std::vector<ChunkKey>{key}), 1u);
  EXPECT_EQ(HostUsedBytes(), used_before);

  ASSERT_EQ(kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status));
  // The server sees the connection close and ends the lease; the chunk's space is free again.
  EXPECT_TRUE(Eventually([&] { return server_->local()->leases() == 0 && server_->local()->connections() == 0; }));
  EXPECT_TRUE(Eventually([&] { return HostUsedBytes() < used_before; }));
}

TEST_F(LocalPathTest, ServerRestartWhileClientIsMapped) {
  auto client = LocalClient(kShared, LocalPathMode::kAuto);
  PutChunk(*client, {0x7e, 1});
  ExpectChunk(*client, {0x7e, 1});
  ASSERT_EQ(client->local_stats().local_gets, 1u);

  const int port = server_->port();
  server_.reset();  // the client still maps the old arena
  Start(port);
  // The first call finds its connection dead and goes over gRPC; the next one maps the new server.
  std::vector<std::byte> dest(kChunkBytes);
  auto gone = client->Get({0x7e, 1}, dest);
  ASSERT_TRUE(gone.ok()) << gone.status().ToString();
  EXPECT_FALSE(gone->found);  // no NVMe tier: the restart lost the chunk, a miss and not an error
  PutChunk(*client, {0x7e, 2});
  ExpectChunk(*client, {0x7e, 2});
  const LocalPathStats stats = client->local_stats();
  EXPECT_GE(stats.fallbacks, 1u);
  EXPECT_EQ(stats.local_gets, 2u) << client->local_fallback_reason();
}

TEST_F(LocalPathTest, BadRequestsGetClearErrors) {
  RawLocal raw(socket_);
  v1::LocalRequest get;
  get.mutable_get()->add_keys(KeyToWire({1, 2}));
  v1::LocalResponse r = raw.Call(get);
  EXPECT_EQ(r.code(), static_cast<int>(StatusCode::kFailedPrecondition));
  EXPECT_EQ(r.message(), "say hello first");
  ASSERT_EQ(raw.Hello(kShared).code(), 0);
  r = raw.Hello(kShared);
  EXPECT_EQ(r.code(), static_cast<int>(StatusCode::kFailedPrecondition));

  get.mutable_get()->set_keys(0, "short");
  r = raw.Call(get);
  EXPECT_EQ(r.code(), static_cast<int>(StatusCode::kInvalidArgument));
  EXPECT_NE(r.message().find("keys[0]"), std::string::npos) << r.message();

  v1::LocalRequest commit;
  commit.mutable_commit()->set_reservation(12345);
  r = raw.Call(commit);
  EXPECT_EQ(r.code(), static_cast<int>(StatusCode::kNotFound));

  // A put whose bytes do not match its checksum is refused and leaves nothing behind.
  const ChunkKey key{0xbad, 1};
  v1::LocalRequest reserve;
  v1::PutHeader* h = reserve.mutable_reserve()->mutable_header();
  h->set_key(KeyToWire(key));
  for (uint32_t t : TokensFor(key, kTokens)) h->add_token_ids(t);
  h->set_codec(v1::CODEC_RAW);
  h->set_payload_bytes(kChunkBytes);
  h->set_checksum(Checksum64(PayloadFor(key, kChunkBytes)) ^ 1);
  r = raw.Call(reserve);
  ASSERT_EQ(r.code(), 0) << r.message();
  commit.mutable_commit()->set_reservation(r.reserve().reservation());
  r = raw.Call(commit);
  EXPECT_EQ(r.code(), static_cast<int>(StatusCode::kDataLoss)) << r.message();
  auto exists = client_->Exists(std::vector<ChunkKey>{key});
  ASSERT_TRUE(exists.ok());
  EXPECT_FALSE((*exists)[0]);

  // A frame of another protocol: the server says why and hangs up.
  const char junk[16] = "GET / HTTP/1.1\n";
  ASSERT_EQ(send(raw.fd(), junk, sizeof(junk), MSG_NOSIGNAL), static_cast<ssize_t>(sizeof(junk)));
  std::string scratch;
  v1::LocalResponse reply;
  ASSERT_TRUE(RecvLocalFrame(raw.fd(), &reply, &scratch, nullptr, 10000).ok());
  EXPECT_EQ(reply.code(), static_cast<int>(StatusCode::kInvalidArgument));
  EXPECT_NE(reply.message().find("not a kvtier local frame"), std::string::npos) << reply.message();
  EXPECT_EQ(RecvLocalFrame(raw.fd(), &reply, &scratch, nullptr, 10000).code(), StatusCode::kUnavailable);
}

TEST_F(LocalPathTest, ASecondServerCannotTakeALiveSocket) {
  ServerConfig config = SmallServerConfig();
  config.store.shared_arena_bytes[kShared] = 1ull << 20;
  config.shared_memory.socket_path = socket_;
  auto second = Server::Start(config);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find("in use by another running server"), std::string::npos)
      << second.status().message();
  // The first server keeps serving on it.
  auto client = LocalClient(kShared, LocalPathMode::kRequire);
  PutChunk(*client, {0x5ec, 1});
  ExpectChunk(*client, {0x5ec, 1});

  // A socket file that nobody listens on (a server that was killed) is replaced.
  const std::string stale = (dir_ / "stale.sock").string();
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, stale.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  close(fd);
  ASSERT_TRUE(std::filesystem::exists(stale));
  config.shared_memory.socket_path = stale;
  auto third = Server::Start(config);
  ASSERT_TRUE(third.ok()) << third.status().ToString();
  EXPECT_TRUE(RawLocal(stale).connected());
}

}  // namespace
}  // namespace kvtier::testing
