// TLS and mutual TLS on the gRPC port, with certificates made by openssl for each run: the right CA
// connects, a wrong CA fails the handshake, plaintext to a TLS port fails, and with a client CA only
// clients holding a certificate it signed get in. Bad TLS config is refused at start, naming the key.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "integration/test_server.h"

namespace kvtier::testing {
namespace {

namespace fs = std::filesystem;

std::string Read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

class TlsTest : public ServerFixture {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("kvtier-tls-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    std::ofstream(dir_ / "san.ext") << "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
    // Two CAs; a server and a client certificate from the first, a client certificate from the second.
    const std::string d = dir_.string();
    const std::string key = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    const std::string script =
        "set -e; cd " + d + ";" +
        "for ca in ca other; do openssl req -x509" + key + " -keyout $ca.key -out $ca.pem -days 2 -subj /CN=$ca; done;" +
        "issue() { openssl req" + key + " -keyout $1.key -out $1.csr -subj /CN=$1;" +
        " openssl x509 -req -in $1.csr -CA $2.pem -CAkey $2.key -CAcreateserial -out $1.pem -days 2 -extfile san.ext; };" +
        "issue server ca; issue client ca; issue stranger other";
    ASSERT_EQ(std::system(("bash -c '" + script + "' >" + d + "/openssl.log 2>&1").c_str()), 0)
        << Read(dir_ / "openssl.log");
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  void StartTls(bool require_client_cert) {
    StartServer(16ull << 20, [&](ServerConfig& c) {
      c.tls.cert_file = (dir_ / "server.pem").string();
      c.tls.key_file = (dir_ / "server.key").string();
      if (require_client_cert) c.tls.client_ca_file = (dir_ / "ca.pem").string();
    });
  }

  // A client trusting `ca`, presenting `cert` (empty: none); one attempt, short deadline.
  Result<std::unique_ptr<Client>> Connect(const std::string& ca, const std::string& cert = "") {
    ClientOptions o;
    // An IP address (the certificate names 127.0.0.1 too): a host name would go through c-ares, whose
    // resolver keeps a one-time allocation LeakSanitizer reports.
    o.endpoint = server_->address();
    o.name_space = "test";
    o.fingerprint = TestFingerprint();
    o.max_attempts = 1;
    o.deadline = std::chrono::milliseconds(5000);
    if (!ca.empty()) o.tls.root_ca_pem = Read(dir_ / (ca + ".pem"));
    if (!cert.empty()) {
      o.tls.cert_chain_pem = Read(dir_ / (cert + ".pem"));
      o.tls.private_key_pem = Read(dir_ / (cert + ".key"));
    }
    return Client::Connect(o);
  }

  // A put and a get of one chunk; the status of the first call that fails.
  static Status RoundTrip(Client& client) {
    const ChunkKey key{0x715, 1};
    const auto kv = PayloadFor(key, 16 * 1024);
    auto put = client.Put(key, TokensFor(key, 16), kv);
    if (!put.ok()) return put.status();
    std::vector<std::byte> dest(kv.size());
    auto got = client.Get(key, dest);
    if (!got.ok()) return got.status();
    return got->found && dest == kv ? Status::Ok() : Internal("round trip returned other bytes");
  }

  static inline fs::path dir_;
};

TEST_F(TlsTest, ClientTrustingTheCaRoundTrips) {
  StartTls(false);
  auto client = Connect("ca");
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  const Status s = RoundTrip(**client);
  EXPECT_TRUE(s.ok()) << s.ToString();
}

TEST_F(TlsTest, WrongCaFailsTheHandshake) {
  StartTls(false);
  auto client = Connect("other");
  ASSERT_TRUE(client.ok());
  EXPECT_EQ(RoundTrip(**client).code(), StatusCode::kUnavailable);
}

TEST_F(TlsTest, PlaintextToATlsPortFails) {
  StartTls(false);
  auto client = Connect("");
  ASSERT_TRUE(client.ok());
  EXPECT_EQ(RoundTrip(**client).code(), StatusCode::kUnavailable);
}

TEST_F(TlsTest, MutualTlsAdmitsOnlyCertificatesTheClientCaSigned) {
  StartTls(true);
  auto with_cert = Connect("ca", "client");
  ASSERT_TRUE(with_cert.ok());
  const Status s = RoundTrip(**with_cert);
  EXPECT_TRUE(s.ok()) << s.ToString();
  auto without = Connect("ca");
  ASSERT_TRUE(without.ok());
  EXPECT_EQ(RoundTrip(**without).code(), StatusCode::kUnavailable);
  auto stranger = Connect("ca", "stranger");
  ASSERT_TRUE(stranger.ok());
  EXPECT_EQ(RoundTrip(**stranger).code(), StatusCode::kUnavailable);
}

TEST_F(TlsTest, BadTlsConfigIsRefusedNamingTheKey) {
  ServerConfig c = SmallServerConfig();
  c.tls.cert_file = (dir_ / "server.pem").string();
  auto no_key = Server::Start(c);
  ASSERT_FALSE(no_key.ok());
  EXPECT_NE(no_key.status().message().find("tls.key_file"), std::string::npos) << no_key.status().message();
  c.tls.key_file = (dir_ / "missing.key").string();
  auto missing = Server::Start(c);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(missing.status().message().find("tls.key_file"), std::string::npos) << missing.status().message();
  c.tls.key_file = (dir_ / "san.ext").string();  // exists, not PEM
  auto not_pem = Server::Start(c);
  ASSERT_FALSE(not_pem.ok());
  EXPECT_NE(not_pem.status().message().find("is not a PEM file"), std::string::npos) << not_pem.status().message();
}

}  // namespace
}  // namespace kvtier::testing
