#include "kvtier/kvstore/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

namespace kvtier {
namespace {

Status KeyError(const std::string& key, const std::string& what) {
  return InvalidArgument("config key '" + key + "': " + what);
}

// Refuses keys the parser does not know, so a typo never silently falls back to a default.
Status CheckKeys(const YAML::Node& map, const std::string& prefix, const std::set<std::string>& known) {
  for (const auto& kv : map) {
    const std::string key = kv.first.as<std::string>();
    if (!known.contains(key)) return KeyError(prefix + key, "unknown key");
  }
  return Status::Ok();
}

Status ReadString(const YAML::Node& node, const std::string& key, std::string* out) {
  if (!node.IsScalar()) return KeyError(key, "expected a string");
  *out = node.as<std::string>();
  return Status::Ok();
}

Status ReadBool(const YAML::Node& node, const std::string& key, bool* out) {
  bool v = false;
  if (!node.IsScalar() || !YAML::convert<bool>::decode(node, v)) return KeyError(key, "expected true or false");
  *out = v;
  return Status::Ok();
}

Status ReadBytes(const YAML::Node& node, const std::string& key, uint64_t* out) {
  if (!node.IsScalar()) return KeyError(key, "expected a size such as 4GiB or 1048576");
  auto v = ParseByteSize(node.Scalar());
  if (!v.ok()) return KeyError(key, v.status().message());
  *out = *v;
  return Status::Ok();
}

Status ReadU32(const YAML::Node& node, const std::string& key, uint32_t* out) {
  if (!node.IsScalar()) return KeyError(key, "expected a non-negative integer");
  const std::string& s = node.Scalar();
  if (s.empty() || s.size() > 10 || !std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(c); })) {
    return KeyError(key, "expected a non-negative integer, got '" + s + "'");
  }
  const uint64_t v = std::stoull(s);
  if (v > std::numeric_limits<uint32_t>::max()) return KeyError(key, "value " + s + " is too large");
  *out = static_cast<uint32_t>(v);
  return Status::Ok();
}

Status ParseHostTier(const YAML::Node& node, ServerConfig* c) {
  if (!node.IsMap()) return KeyError("host_tier", "expected a mapping");
  KVTIER_RETURN_IF_ERROR(CheckKeys(node, "host_tier.", {"capacity", "huge_pages", "prefault", "cuda_register"}));
  if (node["capacity"]) KVTIER_RETURN_IF_ERROR(ReadBytes(node["capacity"], "host_tier.capacity", &c->store.host_capacity_bytes));
  if (node["huge_pages"]) KVTIER_RETURN_IF_ERROR(ReadBool(node["huge_pages"], "host_tier.huge_pages", &c->store.host_huge_pages));
  if (node["prefault"]) KVTIER_RETURN_IF_ERROR(ReadBool(node["prefault"], "host_tier.prefault", &c->store.host_prefault));
  if (node["cuda_register"]) {
    KVTIER_RETURN_IF_ERROR(ReadBool(node["cuda_register"], "host_tier.cuda_register", &c->store.host_cuda_register));
  }
  return Status::Ok();
}

Status ParseGpuTier(const YAML::Node& node, ServerConfig* c) {
  if (!node.IsMap()) return KeyError("gpu_tier", "expected a mapping");
  KVTIER_RETURN_IF_ERROR(CheckKeys(node, "gpu_tier.", {"capacity", "device", "placement", "max_consecutive_errors",
                                                       "max_channels", "link_timeout_ms"}));
  GpuOptions& g = c->store.gpu;
  if (node["capacity"]) KVTIER_RETURN_IF_ERROR(ReadBytes(node["capacity"], "gpu_tier.capacity", &g.capacity_bytes));
  if (node["device"]) {
    uint32_t device = 0;
    KVTIER_RETURN_IF_ERROR(ReadU32(node["device"], "gpu_tier.device", &device));
    if (device > 1024) return KeyError("gpu_tier.device", "device ordinal " + std::to_string(device) + " is too large");
    g.device = static_cast<int>(device);
  }
  if (node["placement"]) KVTIER_RETURN_IF_ERROR(ReadString(node["placement"], "gpu_tier.placement", &g.placement));
  if (node["max_consecutive_errors"]) {
    KVTIER_RETURN_IF_ERROR(
        ReadU32(node["max_consecutive_errors"], "gpu_tier.max_consecutive_errors", &g.max_consecutive_errors));
  }
  if (Status s = g.Validate(); !s.ok()) {
    return InvalidArgument("config key '" + s.message().substr(0, s.message().find(' ')) + "': " + s.message());
  }
  if (node["max_channels"]) {
    KVTIER_RETURN_IF_ERROR(ReadU32(node["max_channels"], "gpu_tier.max_channels", &c->service.max_gpu_channels));
  }
  if (node["link_timeout_ms"]) {
    KVTIER_RETURN_IF_ERROR(
        ReadU32(node["link_timeout_ms"], "gpu_tier.link_timeout_ms", &c->service.gpu_link_timeout_ms));
    if (c->service.gpu_link_timeout_ms == 0) return KeyError("gpu_tier.link_timeout_ms", "must be > 0");
  }
  return Status::Ok();
}

Status ReadDouble(const YAML::Node& node, const std::string& key, double* out) {
  double v = 0;
  if (!node.IsScalar() || !YAML::convert<double>::decode(node, v)) return KeyError(key, "expected a number");
  *out = v;
  return Status::Ok();
}

Status ParseDisk(const YAML::Node& node, ServerConfig* c) {
  if (!node.IsMap()) return KeyError("disk", "expected a mapping");
  KVTIER_RETURN_IF_ERROR(CheckKeys(node, "disk.",
                                   {"path", "capacity", "region_size", "queue_depth", "direct_io", "reclaim",
                                    "reinsert_hits", "admission", "write_budget_per_day", "demote_watermark",
                                    "flush_on_shutdown"}));
  DiskOptions& d = c->store.disk;
  if (node["path"]) KVTIER_RETURN_IF_ERROR(ReadString(node["path"], "disk.path", &d.path));
  if (node["capacity"]) KVTIER_RETURN_IF_ERROR(ReadBytes(node["capacity"], "disk.capacity", &d.capacity_bytes));
  if (node["region_size"]) KVTIER_RETURN_IF_ERROR(ReadBytes(node["region_size"], "disk.region_size", &d.region_bytes));
  if (node["queue_depth"]) KVTIER_RETURN_IF_ERROR(ReadU32(node["queue_depth"], "disk.queue_depth", &d.queue_depth));
  if (node["direct_io"]) KVTIER_RETURN_IF_ERROR(ReadBool(node["direct_io"], "disk.direct_io", &d.direct_io));
  if (node["reclaim"]) KVTIER_RETURN_IF_ERROR(ReadString(node["reclaim"], "disk.reclaim", &d.reclaim));
  if (node["reinsert_hits"]) KVTIER_RETURN_IF_ERROR(ReadBool(node["reinsert_hits"], "disk.reinsert_hits", &d.reinsert_hits));
  if (node["admission"]) KVTIER_RETURN_IF_ERROR(ReadString(node["admission"], "disk.admission", &d.admission));
  if (node["write_budget_per_day"]) {
    KVTIER_RETURN_IF_ERROR(ReadBytes(node["write_budget_per_day"], "disk.write_budget_per_day", &d.write_budget_bytes_per_day));
  }
  if (node["demote_watermark"]) {
    KVTIER_RETURN_IF_ERROR(ReadDouble(node["demote_watermark"], "disk.demote_watermark", &d.demote_watermark));
  }
  if (node["flush_on_shutdown"]) {
    KVTIER_RETURN_IF_ERROR(ReadBool(node["flush_on_shutdown"], "disk.flush_on_shutdown", &d.flush_on_shutdown));
  }
  if (d.enabled()) {
    Status s = d.Validate();
    if (!s.ok()) return InvalidArgument("config key '" + s.message().substr(0, s.message().find(' ')) + "': " + s.message());
  }
  return Status::Ok();
}

Status ParseTls(const YAML::Node& node, ServerConfig* c) {
  if (!node.IsMap()) return KeyError("tls", "expected a mapping");
  KVTIER_RETURN_IF_ERROR(CheckKeys(node, "tls.", {"cert_file", "key_file", "client_ca_file"}));
  if (node["cert_file"]) KVTIER_RETURN_IF_ERROR(ReadString(node["cert_file"], "tls.cert_file", &c->tls.cert_file));
  if (node["key_file"]) KVTIER_RETURN_IF_ERROR(ReadString(node["key_file"], "tls.key_file", &c->tls.key_file));
  if (node["client_ca_file"]) {
    KVTIER_RETURN_IF_ERROR(ReadString(node["client_ca_file"], "tls.client_ca_file", &c->tls.client_ca_file));
  }
  return Status::Ok();
}

Status ParseAuth(const YAML::Node& node, ServerConfig* c) {
  if (!node.IsMap()) return KeyError("auth", "expected a mapping");
  KVTIER_RETURN_IF_ERROR(CheckKeys(node, "auth.", {"tokens_file"}));
  if (node["tokens_file"]) KVTIER_RETURN_IF_ERROR(ReadString(node["tokens_file"], "auth.tokens_file", &c->auth_tokens_file));
  return Status::Ok();
}

Status ParseQuotas(const YAML::Node& node, ServerConfig* c) {
  if (!node.IsMap()) return KeyError("quotas", "expected a mapping");
  KVTIER_RETURN_IF_ERROR(CheckKeys(node, "quotas.", {"default_bytes", "namespaces"}));
  if (node["default_bytes"]) {
    KVTIER_RETURN_IF_ERROR(ReadBytes(node["default_bytes"], "quotas.default_bytes", &c->store.default_quota_bytes));
  }
  if (const YAML::Node ns = node["namespaces"]; ns) {
    if (!ns.IsMap()) return KeyError("quotas.namespaces", "expected a mapping of namespace to size");
    for (const auto& kv : ns) {
      const std::string name = kv.first.as<std::string>();
      uint64_t bytes = 0;
      KVTIER_RETURN_IF_ERROR(ReadBytes(kv.second, "quotas.namespaces." + name, &bytes));
      c->store.namespace_quota_bytes[name] = bytes;
    }
  }
  return Status::Ok();
}

Status ParseReuse(const YAML::Node& node, ServerConfig* c) {
  if (!node.IsMap()) return KeyError("reuse", "expected a mapping");
  KVTIER_RETURN_IF_ERROR(CheckKeys(node, "reuse.", {"max_variants", "admission"}));
  VariantOptions& v = c->store.variants;
  if (node["max_variants"]) KVTIER_RETURN_IF_ERROR(ReadU32(node["max_variants"], "reuse.max_variants", &v.max_variants));
  if (node["admission"]) KVTIER_RETURN_IF_ERROR(ReadString(node["admission"], "reuse.admission", &v.admission));
  return v.Validate();
}

Status ParseSharedMemory(const YAML::Node& node, ServerConfig* c) {
  if (!node.IsMap()) return KeyError("shared_memory", "expected a mapping");
  KVTIER_RETURN_IF_ERROR(CheckKeys(node, "shared_memory.", {"socket", "socket_mode", "namespaces", "put_window",
                                                           "max_connections", "default_lease_ms",
                                                           "max_leases_per_connection"}));
  LocalServerOptions& o = c->shared_memory;
  if (node["socket"]) KVTIER_RETURN_IF_ERROR(ReadString(node["socket"], "shared_memory.socket", &o.socket_path));
  if (node["socket_mode"]) {
    std::string mode;
    KVTIER_RETURN_IF_ERROR(ReadString(node["socket_mode"], "shared_memory.socket_mode", &mode));
    if (mode.empty() || mode.size() > 4 || mode.find_first_not_of("01234567") != std::string::npos) {
      return KeyError("shared_memory.socket_mode", "expected an octal file mode such as \"0660\", got '" + mode + "'");
    }
    o.socket_mode = static_cast<uint32_t>(std::stoul(mode, nullptr, 8));
  }
  if (node["put_window"]) KVTIER_RETURN_IF_ERROR(ReadBytes(node["put_window"], "shared_memory.put_window", &o.put_window_bytes));
  if (node["max_connections"]) KVTIER_RETURN_IF_ERROR(ReadU32(node["max_connections"], "shared_memory.max_connections", &o.max_connections));
  if (node["default_lease_ms"]) KVTIER_RETURN_IF_ERROR(ReadU32(node["default_lease_ms"], "shared_memory.default_lease_ms", &o.default_lease_ms));
  if (node["max_leases_per_connection"]) {
    KVTIER_RETURN_IF_ERROR(ReadU32(node["max_leases_per_connection"], "shared_memory.max_leases_per_connection",
                                   &o.max_leases_per_connection));
  }
  if (const YAML::Node ns = node["namespaces"]; ns) {
    if (!ns.IsMap()) return KeyError("shared_memory.namespaces", "expected a mapping of namespace to arena size");
    for (const auto& kv : ns) {
      const std::string name = kv.first.as<std::string>();
      uint64_t bytes = 0;
      KVTIER_RETURN_IF_ERROR(ReadBytes(kv.second, "shared_memory.namespaces." + name, &bytes));
      c->store.shared_arena_bytes[name] = bytes;
    }
  }
  return Status::Ok();
}

Status ParseLimits(const YAML::Node& node, ServerConfig* c) {
  if (!node.IsMap()) return KeyError("limits", "expected a mapping");
  KVTIER_RETURN_IF_ERROR(CheckKeys(node, "limits.",
                                   {"max_chunk_bytes", "max_frame_bytes", "max_batch", "max_lease_ttl_ms",
                                    "max_namespaces", "max_fingerprints", "max_profiles_per_namespace",
                                    "max_profile_bytes"}));
  if (node["max_chunk_bytes"]) KVTIER_RETURN_IF_ERROR(ReadBytes(node["max_chunk_bytes"], "limits.max_chunk_bytes", &c->store.max_chunk_bytes));
  if (node["max_frame_bytes"]) KVTIER_RETURN_IF_ERROR(ReadBytes(node["max_frame_bytes"], "limits.max_frame_bytes", &c->service.max_frame_bytes));
  if (node["max_batch"]) KVTIER_RETURN_IF_ERROR(ReadU32(node["max_batch"], "limits.max_batch", &c->store.max_batch));
  if (node["max_lease_ttl_ms"]) KVTIER_RETURN_IF_ERROR(ReadU32(node["max_lease_ttl_ms"], "limits.max_lease_ttl_ms", &c->store.max_lease_ttl_ms));
  if (node["max_namespaces"]) KVTIER_RETURN_IF_ERROR(ReadU32(node["max_namespaces"], "limits.max_namespaces", &c->store.max_namespaces));
  if (node["max_fingerprints"]) KVTIER_RETURN_IF_ERROR(ReadU32(node["max_fingerprints"], "limits.max_fingerprints", &c->store.max_fingerprints));
  if (node["max_profiles_per_namespace"]) KVTIER_RETURN_IF_ERROR(ReadU32(node["max_profiles_per_namespace"], "limits.max_profiles_per_namespace", &c->store.profiles.max_per_namespace));
  if (node["max_profile_bytes"]) KVTIER_RETURN_IF_ERROR(ReadBytes(node["max_profile_bytes"], "limits.max_profile_bytes", &c->store.profiles.max_profile_bytes));
  return Status::Ok();
}

const char* LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kError: return "error";
  }
  return "info";
}

}  // namespace

Result<uint64_t> ParseByteSize(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  if (i == 0 || i > 19) return InvalidArgument("'" + std::string(text) + "' is not a size (e.g. 4GiB, 512MiB, 65536)");
  const uint64_t number = std::stoull(std::string(text.substr(0, i)));
  std::string_view unit = text.substr(i);
  while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
  uint64_t mult = 0;
  if (unit.empty() || unit == "B") mult = 1;
  else if (unit == "KiB" || unit == "K") mult = 1ull << 10;
  else if (unit == "MiB" || unit == "M") mult = 1ull << 20;
  else if (unit == "GiB" || unit == "G") mult = 1ull << 30;
  else if (unit == "TiB" || unit == "T") mult = 1ull << 40;
  else if (unit == "KB") mult = 1000ull;
  else if (unit == "MB") mult = 1000ull * 1000;
  else if (unit == "GB") mult = 1000ull * 1000 * 1000;
  else if (unit == "TB") mult = 1000ull * 1000 * 1000 * 1000;
  else return InvalidArgument("unknown size unit '" + std::string(unit) + "' (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)");
  if (number > std::numeric_limits<uint64_t>::max() / mult) return InvalidArgument("size '" + std::string(text) + "' overflows");
  return number * mult;
}

std::string FormatByteSize(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"TiB", "GiB", "MiB", "KiB"};
  for (int i = 0; i < 4; ++i) {
    const uint64_t mult = 1ull << (10 * (4 - i));
    if (bytes >= mult && bytes % mult == 0) return std::to_string(bytes / mult) + kUnits[i];
  }
  return std::to_string(bytes);
}

Status ServerConfig::Validate() const {
  if (listen.empty()) return InvalidArgument("config key 'listen': empty address");
  if (metrics_listen == listen && !listen.ends_with(":0")) {
    return InvalidArgument("config key 'metrics_listen': same address as 'listen'");
  }
  if (tls.enabled() != !tls.key_file.empty()) {
    return InvalidArgument("config keys 'tls.cert_file' and 'tls.key_file' must be set together");
  }
  if (!tls.client_ca_file.empty() && !tls.enabled()) {
    return InvalidArgument("config key 'tls.client_ca_file' needs tls.cert_file and tls.key_file");
  }
  KVTIER_RETURN_IF_ERROR(store.Validate());
  KVTIER_RETURN_IF_ERROR(service.Validate());
  if (Status s = shared_memory.Validate(); !s.ok()) return InvalidArgument("config key " + s.message());
  if (!store.shared_arena_bytes.empty() && !shared_memory.enabled()) {
    return InvalidArgument("config key 'shared_memory.namespaces': set shared_memory.socket too, or nobody can map them");
  }
  if (service.max_frame_bytes > store.max_chunk_bytes) {
    return InvalidArgument("config key 'limits.max_frame_bytes': larger than limits.max_chunk_bytes");
  }
  return Status::Ok();
}

std::string ServerConfig::ToYaml() const {
  std::ostringstream out;
  out << "listen: " << listen << "\n"
      << "metrics_listen: \"" << metrics_listen << "\"\n"
      << "log_level: " << LogLevelName(log_level) << "\n"
      << "shutdown_grace_ms: " << shutdown_grace_ms << "\n"
      << "tls:\n"
      << "  cert_file: \"" << tls.cert_file << "\"\n"
      << "  key_file: \"" << tls.key_file << "\"\n"
      << "  client_ca_file: \"" << tls.client_ca_file << "\"\n"
      << "auth:\n"
      << "  tokens_file: \"" << auth_tokens_file << "\"\n"
      << "host_tier:\n"
      << "  capacity: " << FormatByteSize(store.host_capacity_bytes) << "\n"
      << "  huge_pages: " << (store.host_huge_pages ? "true" : "false") << "\n"
      << "  prefault: " << (store.host_prefault ? "true" : "false") << "\n"
      << "  cuda_register: " << (store.host_cuda_register ? "true" : "false") << "\n"
      << "gpu_tier:\n"
      << "  capacity: " << FormatByteSize(store.gpu.capacity_bytes) << "\n"
      << "  device: " << store.gpu.device << "\n"
      << "  placement: " << store.gpu.placement << "\n"
      << "  max_consecutive_errors: " << store.gpu.max_consecutive_errors << "\n"
      << "  max_channels: " << service.max_gpu_channels << "\n"
      << "  link_timeout_ms: " << service.gpu_link_timeout_ms << "\n"
      << "disk:\n"
      << "  path: \"" << store.disk.path << "\"\n"
      << "  capacity: " << FormatByteSize(store.disk.capacity_bytes) << "\n"
      << "  region_size: " << FormatByteSize(store.disk.region_bytes) << "\n"
      << "  queue_depth: " << store.disk.queue_depth << "\n"
      << "  direct_io: " << (store.disk.direct_io ? "true" : "false") << "\n"
      << "  reclaim: " << store.disk.reclaim << "\n"
      << "  reinsert_hits: " << (store.disk.reinsert_hits ? "true" : "false") << "\n"
      << "  admission: " << store.disk.admission << "\n"
      << "  write_budget_per_day: " << FormatByteSize(store.disk.write_budget_bytes_per_day) << "\n"
      << "  demote_watermark: " << store.disk.demote_watermark << "\n"
      << "  flush_on_shutdown: " << (store.disk.flush_on_shutdown ? "true" : "false") << "\n"
      << "limits:\n"
      << "  max_chunk_bytes: " << FormatByteSize(store.max_chunk_bytes) << "\n"
      << "  max_frame_bytes: " << FormatByteSize(service.max_frame_bytes) << "\n"
      << "  max_batch: " << store.max_batch << "\n"
      << "  max_lease_ttl_ms: " << store.max_lease_ttl_ms << "\n"
      << "  max_namespaces: " << store.max_namespaces << "\n"
      << "  max_fingerprints: " << store.max_fingerprints << "\n"
      << "  max_profiles_per_namespace: " << store.profiles.max_per_namespace << "\n"
      << "  max_profile_bytes: " << FormatByteSize(store.profiles.max_profile_bytes) << "\n"
      << "quotas:\n"
      << "  default_bytes: " << FormatByteSize(store.default_quota_bytes) << "\n";
  if (store.namespace_quota_bytes.empty()) {
    out << "  namespaces: {}\n";
  } else {
    out << "  namespaces:\n";
    for (const auto& [name, bytes] : store.namespace_quota_bytes) {
      out << "    \"" << name << "\": " << FormatByteSize(bytes) << "\n";
    }
  }
  out << "reuse:\n"
      << "  max_variants: " << store.variants.max_variants << "\n"
      << "  admission: " << store.variants.admission << "\n";
  char mode[8];
  std::snprintf(mode, sizeof(mode), "%04o", shared_memory.socket_mode);
  out << "shared_memory:\n"
      << "  socket: \"" << shared_memory.socket_path << "\"\n"
      << "  socket_mode: \"" << mode << "\"\n"
      << "  put_window: " << FormatByteSize(shared_memory.put_window_bytes) << "\n"
      << "  max_connections: " << shared_memory.max_connections << "\n"
      << "  default_lease_ms: " << shared_memory.default_lease_ms << "\n"
      << "  max_leases_per_connection: " << shared_memory.max_leases_per_connection << "\n";
  if (store.shared_arena_bytes.empty()) {
    out << "  namespaces: {}\n";
  } else {
    out << "  namespaces:\n";
    for (const auto& [name, bytes] : store.shared_arena_bytes) {
      out << "    \"" << name << "\": " << FormatByteSize(bytes) << "\n";
    }
  }
  return out.str();
}

Status ParseServerConfigYaml(std::string_view yaml, ServerConfig* config) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return InvalidArgument(std::string("config is not valid YAML: ") + e.what());
  }
  if (root.IsNull()) return Status::Ok();  // an empty file keeps every default
  if (!root.IsMap()) return InvalidArgument("config must be a YAML mapping at the top level");
  try {
    KVTIER_RETURN_IF_ERROR(
        CheckKeys(root, "", {"listen", "metrics_listen", "log_level", "shutdown_grace_ms", "tls", "auth",
                             "host_tier", "gpu_tier", "disk", "limits", "quotas", "reuse", "shared_memory"}));
    if (root["shutdown_grace_ms"]) {
      KVTIER_RETURN_IF_ERROR(ReadU32(root["shutdown_grace_ms"], "shutdown_grace_ms", &config->shutdown_grace_ms));
    }
    if (root["listen"]) KVTIER_RETURN_IF_ERROR(ReadString(root["listen"], "listen", &config->listen));
    if (root["metrics_listen"]) {
      KVTIER_RETURN_IF_ERROR(ReadString(root["metrics_listen"], "metrics_listen", &config->metrics_listen));
    }
    if (root["log_level"]) {
      std::string level;
      KVTIER_RETURN_IF_ERROR(ReadString(root["log_level"], "log_level", &level));
      if (!ParseLogLevel(level, &config->log_level)) {
        return KeyError("log_level", "expected debug, info, warning or error, got '" + level + "'");
      }
    }
    if (root["tls"]) KVTIER_RETURN_IF_ERROR(ParseTls(root["tls"], config));
    if (root["auth"]) KVTIER_RETURN_IF_ERROR(ParseAuth(root["auth"], config));
    if (root["host_tier"]) KVTIER_RETURN_IF_ERROR(ParseHostTier(root["host_tier"], config));
    if (root["gpu_tier"]) KVTIER_RETURN_IF_ERROR(ParseGpuTier(root["gpu_tier"], config));
    if (root["disk"]) KVTIER_RETURN_IF_ERROR(ParseDisk(root["disk"], config));
    if (root["limits"]) KVTIER_RETURN_IF_ERROR(ParseLimits(root["limits"], config));
    if (root["quotas"]) KVTIER_RETURN_IF_ERROR(ParseQuotas(root["quotas"], config));
    if (root["reuse"]) KVTIER_RETURN_IF_ERROR(ParseReuse(root["reuse"], config));
    if (root["shared_memory"]) KVTIER_RETURN_IF_ERROR(ParseSharedMemory(root["shared_memory"], config));
  } catch (const YAML::Exception& e) {
    return InvalidArgument(std::string("config: ") + e.what());
  }
  return config->Validate();
}

Status LoadServerConfigFile(const std::string& path, ServerConfig* config) {
  std::ifstream in(path);
  if (!in) return NotFound("cannot open config file " + path);
  std::stringstream buf;
  buf << in.rdbuf();
  Status s = ParseServerConfigYaml(buf.str(), config);
  if (!s.ok()) return Status(s.code(), path + ": " + s.message());
  return Status::Ok();
}

}  // namespace kvtier
