// ServerConfig: everything `kvtier serve` can be told, with embedded defaults, loaded from one YAML
// file and overridden by flags. Unknown keys and bad values are refused with a message naming the key.
// The key reference (kept in step with ParseServerConfigYaml) is docs/config.md. Plain value type.
#pragma once

#include <string>
#include <string_view>

#include "kvtier/kvstore/local_server.h"
#include "kvtier/kvstore/log.h"
#include "kvtier/kvstore/service.h"
#include "kvtier/kvstore/store.h"

namespace kvtier {

// TLS for the gRPC port (the metrics port stays plain HTTP; bind it to a private address). Off when
// cert_file is empty. With client_ca_file, clients must present a certificate that CA signed (mTLS).
struct TlsConfig {
  std::string cert_file;       // PEM server certificate chain
  std::string key_file;        // PEM private key of that certificate
  std::string client_ca_file;  // PEM CA bundle that client certificates must chain to; empty = no client certs

  bool enabled() const { return !cert_file.empty(); }
};

struct ServerConfig {
  std::string listen = "127.0.0.1:7070";          // gRPC address; port 0 picks a free port
  std::string metrics_listen = "127.0.0.1:9090";  // Prometheus /metrics; empty disables it
  LogLevel log_level = LogLevel::kInfo;
  // On SIGTERM/SIGINT: how long in-flight calls may run before they are cancelled. A second signal
  // exits at once.
  uint32_t shutdown_grace_ms = 10000;
  TlsConfig tls;
  // Per-namespace bearer tokens (auth.h); empty = no authentication (trusted network only).
  std::string auth_tokens_file;
  StoreOptions store;
  ServiceOptions service;
  // The same-host shared-memory path (kvstore/SHM.md); off unless a socket is set. Which namespaces may
  // use it, and their arena sizes, are store.shared_arena_bytes (`shared_memory.namespaces`).
  LocalServerOptions shared_memory;

  Status Validate() const;
  // The effective configuration as YAML (the same keys the file takes), for the start-up log.
  std::string ToYaml() const;
};

// Parses "4GiB", "512MiB", "64KiB", "1GB", "1048576" (bytes). INVALID_ARGUMENT on anything else.
Result<uint64_t> ParseByteSize(std::string_view text);
std::string FormatByteSize(uint64_t bytes);

// Applies a YAML document on top of `config`. Errors name the offending key, e.g. "host_tier.capacity".
Status ParseServerConfigYaml(std::string_view yaml, ServerConfig* config);
Status LoadServerConfigFile(const std::string& path, ServerConfig* config);

}  // namespace kvtier
