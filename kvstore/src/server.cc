#include "kvtier/kvstore/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include <fstream>
#include <iterator>
#include <random>

#include "kvtier/kvstore/auth.h"
#include "kvtier/kvstore/local_server.h"
#include "kvtier/kvstore/log.h"
#include "kvtier/kvstore/service.h"

namespace kvtier {
namespace {

Result<std::string> ReadPem(const std::string& path, const char* key) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return InvalidArgument(std::string("config key '") + key + "': cannot read " + path);
  std::string pem((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (pem.find("-----BEGIN") == std::string::npos) {
    return InvalidArgument(std::string("config key '") + key + "': " + path + " is not a PEM file");
  }
  return pem;
}

// Plaintext unless TLS is configured; with a client CA, clients must present a certificate it signed.
Result<std::shared_ptr<grpc::ServerCredentials>> Credentials(const TlsConfig& tls) {
  if (!tls.enabled()) return grpc::InsecureServerCredentials();
  auto cert = ReadPem(tls.cert_file, "tls.cert_file");
  if (!cert.ok()) return cert.status();
  auto key = ReadPem(tls.key_file, "tls.key_file");
  if (!key.ok()) return key.status();
  grpc::SslServerCredentialsOptions options(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  options.pem_key_cert_pairs.push_back({*key, *cert});
  if (!tls.client_ca_file.empty()) {
    auto ca = ReadPem(tls.client_ca_file, "tls.client_ca_file");
    if (!ca.ok()) return ca.status();
    options.pem_root_certs = *ca;
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(options);
}

// Identifies this host's boot to local clients; empty when unreadable (then no client uses the local path).
std::string BootId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id;
}

uint64_t RandomInstanceId() {
  std::random_device rd;
  const uint64_t id = (uint64_t{rd()} << 32) ^ rd();
  return id == 0 ? 1 : id;
}

}  // namespace

Result<std::unique_ptr<Server>> Server::Start(const ServerConfig& config) {
  KVTIER_RETURN_IF_ERROR(config.Validate());
  auto credentials = Credentials(config.tls);  // before the arena: a bad file fails fast
  if (!credentials.ok()) return credentials.status();
  std::unique_ptr<Server> server(new Server());
  if (!config.auth_tokens_file.empty()) {
    auto auth = Authorizer::Load(config.auth_tokens_file);
    if (!auth.ok()) return InvalidArgument("config key 'auth.tokens_file': " + auth.status().message());
    server->auth_ = std::make_unique<Authorizer>(std::move(auth).value());
  }
  server->config_ = config;
  auto store = Store::Open(config.store);
  if (!store.ok()) return store.status();
  server->store_ = std::move(store).value();
  server->metrics_ = std::make_unique<Metrics>(server->store_.get());
  server->service_ = std::make_unique<KvTierService>(server->store_.get(), server->metrics_.get(), config.service,
                                                    server->auth_.get());
  if (config.shared_memory.enabled()) {
    auto local = LocalServer::Start(server->store_.get(), server->metrics_.get(), server->auth_.get(),
                                    config.shared_memory, RandomInstanceId(), config.store.max_lease_ttl_ms);
    if (!local.ok()) return local.status();
    server->local_ = std::move(local).value();
    v1::LocalInfoResponse info;
    info.set_socket_path(server->local_->socket_path());
    info.set_boot_id(BootId());
    info.set_instance_id(server->local_->instance_id());
    server->service_->SetLocalInfo(std::move(info));
    KVTIER_LOG(kInfo) << "shared memory: " << config.store.shared_arena_bytes.size() << " namespace(s) on "
                      << server->local_->socket_path();
    for (const auto& [name, bytes] : config.store.shared_arena_bytes) {
      const HostArena* arena = server->store_->SharedArenaOf(name);
      if (arena->backing() == "memfd" && config.store.host_huge_pages) {
        // Measured: 2 MiB shared-memory gets run at about half speed on 4 KiB pages (bench/RESULTS.md).
        KVTIER_LOG(kWarning) << "shared memory: arena of namespace '" << name << "' is on 4 KiB pages; for "
                             << "huge pages set /sys/kernel/mm/transparent_hugepage/shmem_enabled to advise "
                             << "(or reserve hugetlb pages) before starting";
      }
    }
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // gRPC sets SO_REUSEPORT by default: a second server on the same port (or a port-0 bind the kernel
  // hands out twice) would then silently share connections with this one. Refuse instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Long-lived streams (GPU channels, large gets) must notice a client host that died: ping each connection
  // after a minute of silence and drop it when the ping is not answered within 20 s. Clients' own keepalive
  // pings (every 30 s while a call is open) are allowed.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 60000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 20000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  builder.AddListeningPort(config.listen, *credentials, &server->port_);
  builder.RegisterService(server->service_.get());
  // A put header carries up to chunk_tokens token ids next to a frame-sized limit; 1 MiB of slack
  // covers 65536 of them. Larger messages are refused by gRPC itself with RESOURCE_EXHAUSTED.
  const uint64_t max_message = config.service.max_frame_bytes + (1ull << 20);
  builder.SetMaxReceiveMessageSize(static_cast<int>(max_message));
  builder.SetMaxSendMessageSize(static_cast<int>(max_message));
  server->grpc_ = builder.BuildAndStart();
  if (server->grpc_ == nullptr || server->port_ == 0) {
    return Unavailable("cannot listen for gRPC on " + config.listen + " (address in use or not local?)");
  }
  if (!config.metrics_listen.empty()) {
    auto port = server->metrics_->Serve(config.metrics_listen);
    if (!port.ok()) {
      server->grpc_->Shutdown();
      return port.status();
    }
    server->metrics_port_ = *port;
  }
  return server;
}

Server::~Server() {
  if (grpc_ != nullptr) {
    Shutdown(std::chrono::milliseconds(0));
    grpc_->Wait();
  }
}

std::string Server::address() const {
  const std::string& listen = config_.listen;
  const size_t colon = listen.rfind(':');
  return (colon == std::string::npos ? listen : listen.substr(0, colon)) + ":" + std::to_string(port_);
}

void Server::Shutdown(std::chrono::milliseconds grace) {
  if (local_ != nullptr) local_->Stop();
  grpc_->Shutdown(std::chrono::system_clock::now() + grace);
}

void Server::Wait() { grpc_->Wait(); }

}  // namespace kvtier
