// Bearer tokens through a real server: no token -> UNAUTHENTICATED on every kvtier RPC, a token for
// namespace A reading or writing B -> PERMISSION_DENIED, a read token cannot write or delete, an
// operator token reaches everything, health checks stay open, and a bad tokens file stops the start.
#include <filesystem>
#include <fstream>

#include "integration/test_server.h"

namespace kvtier::testing {
namespace {

namespace fs = std::filesystem;

constexpr const char* kWriterA = "tenant-a-writer-token-0123456789";
constexpr const char* kReaderB = "tenant-b-reader-token-0123456789";

class AuthTest : public ServerFixture {
 protected:
  void SetUp() override {
    tokens_ = fs::temp_directory_path() / ("kvtier-tokens-" + std::to_string(::getpid()) + ".yaml");
    std::ofstream(tokens_) << "- token: " << kWriterA << "\n  namespaces: [tenant-a]\n  access: read-write\n"
                           << "- token: " << kReaderB << "\n  namespaces: [tenant-b]\n  access: read\n";
    StartServer(16ull << 20, [&](ServerConfig& c) { c.auth_tokens_file = tokens_.string(); });
  }
  void TearDown() override {
    ServerFixture::TearDown();
    fs::remove(tokens_);
  }

  std::unique_ptr<Client> As(const std::string& token, const std::string& name_space) {
    ClientOptions o;
    o.endpoint = server_->address();
    o.name_space = name_space;
    o.fingerprint = TestFingerprint();
    o.max_attempts = 1;
    o.bearer_token = token;
    auto c = Client::Connect(o);
    EXPECT_TRUE(c.ok());
    return std::move(c).value();
  }

  static StatusCode PutCode(Client& c, uint64_t k) {
    const ChunkKey key{0xa17, k};
    return c.Put(key, TokensFor(key, 16), PayloadFor(key, 16 * 1024)).status().code();
  }
  static StatusCode GetCode(Client& c, uint64_t k) {
    std::vector<std::byte> dest(16 * 1024);
    return c.Get({0xa17, k}, dest).status().code();
  }

  fs::path tokens_;
};

TEST_F(AuthTest, NoTokenIsUnauthenticatedOnEveryCall) {
  auto anonymous = As("", "tenant-a");
  EXPECT_EQ(PutCode(*anonymous, 1), StatusCode::kUnauthenticated);
  EXPECT_EQ(GetCode(*anonymous, 1), StatusCode::kUnauthenticated);
  EXPECT_EQ(anonymous->Lookup(std::vector<ChunkKey>{{1, 1}}).status().code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(anonymous->Exists(std::vector<ChunkKey>{{1, 1}}).status().code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(anonymous->Delete(std::vector<ChunkKey>{{1, 1}}).status().code(), StatusCode::kUnauthenticated);
  auto stats = anonymous->Stats();
  EXPECT_EQ(stats.status().code(), StatusCode::kUnauthenticated);
  EXPECT_NE(stats.status().message().find("no bearer token"), std::string::npos) << stats.status().message();
  EXPECT_EQ(PutCode(*As("wrong-token-wrong-token-wrong", "tenant-a"), 1), StatusCode::kUnauthenticated);
}

TEST_F(AuthTest, TokensReachOnlyTheirNamespacesWithTheirRights) {
  auto writer_a = As(kWriterA, "tenant-a");
  EXPECT_EQ(PutCode(*writer_a, 1), StatusCode::kOk);
  EXPECT_EQ(GetCode(*writer_a, 1), StatusCode::kOk);
  EXPECT_TRUE(writer_a->Stats().ok());

  auto writer_a_in_b = As(kWriterA, "tenant-b");
  const auto denied = writer_a_in_b->Put({0xa17, 2}, TokensFor({0xa17, 2}, 16), PayloadFor({0xa17, 2}, 16 * 1024));
  EXPECT_EQ(denied.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(denied.status().message().find("namespace 'tenant-b'"), std::string::npos) << denied.status().message();
  EXPECT_EQ(GetCode(*writer_a_in_b, 1), StatusCode::kPermissionDenied);

  auto reader_b = As(kReaderB, "tenant-b");
  EXPECT_EQ(GetCode(*reader_b, 1), StatusCode::kOk);  // a miss, but allowed
  EXPECT_EQ(PutCode(*reader_b, 3), StatusCode::kPermissionDenied);
  EXPECT_EQ(reader_b->Delete(std::vector<ChunkKey>{{0xa17, 1}}).status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(GetCode(*As(kReaderB, "tenant-a"), 1), StatusCode::kPermissionDenied);
}

TEST_F(AuthTest, HealthChecksNeedNoToken) {
  std::string bytes;
  const grpc::Status status = CheckHealth(server_->address(), &bytes);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));  // HealthCheckResponse{status: SERVING}
}

TEST_F(AuthTest, BadTokensFileStopsTheStart) {
  ServerConfig c = SmallServerConfig();
  c.auth_tokens_file = "/nonexistent/tokens.yaml";
  auto missing = Server::Start(c);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(missing.status().message().find("auth.tokens_file"), std::string::npos) << missing.status().message();
  std::ofstream(tokens_) << "- token: short\n  namespaces: [a]\n  access: read\n";
  c.auth_tokens_file = tokens_.string();
  auto bad = Server::Start(c);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("[0].token: shorter than 16"), std::string::npos) << bad.status().message();
}

}  // namespace
}  // namespace kvtier::testing
