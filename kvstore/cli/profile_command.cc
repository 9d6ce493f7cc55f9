// `kvtier profile`: shared cachegen profiles (codec/CACHEGEN.md). Build one from sample chunks,
// show what a profile file holds, store it on a server, fetch it back.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "debug_model.h"
#include "flags.h"
#include "kvtier/client/client.h"
#include "kvtier/codec/model_profile.h"

namespace kvtier::cli {
namespace {

constexpr const char* kProfileUsage =
    "usage: kvtier profile <build|show|put|get> [flags]\n"
    "\n"
    "  build  build a profile from sample chunks (raw files in the canonical layout\n"
    "         [layer][K|V][token][kv_head][head_dim]) and write it to a file\n"
    "  show   print a profile file's id, shape and size\n"
    "  put    store a profile file on a server under a name (chunks may then reference it)\n"
    "  get    fetch a profile from a server by name into a file\n"
    "\n"
    "`kvtier profile <subcommand> --help` describes each one's flags.\n";

Result<std::vector<std::byte>> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("cannot open " + path);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(bytes.size());
  if (!bytes.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

Status WriteFile(const std::string& path, std::span<const std::byte> bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  out.close();
  return out ? Status::Ok() : Internal("cannot write " + path);
}

Result<DType> ParseDType(const std::string& name) {
  if (name == "fp16") return DType::kFp16;
  if (name == "bf16") return DType::kBf16;
  if (name == "fp32") return DType::kFp32;
  return InvalidArgument("--dtype must be fp16, bf16 or fp32, not '" + name + "'");
}

std::string IdHex(uint64_t id) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(id));
  return buf;
}

int Build(int argc, char** argv) {
  int layers = 0, heads = 0, head_dim = 0;
  std::string dtype_name = "fp16", out_path;
  std::vector<std::string> samples;
  FlagSet flags("kvtier profile build --layers L --heads H --head-dim D --sample FILE... --out FILE",
                "Builds a shared cachegen profile (symbol tables for every level) from sample chunks. Each\n"
                "sample is a raw chunk in the canonical layout; its token count is its size divided by the\n"
                "bytes per token. More samples give tables closer to what the model produces.");
  flags.AddInt("layers", &layers, "layers of the model's KV (required)");
  flags.AddInt("heads", &heads, "KV heads (required)");
  flags.AddInt("head-dim", &head_dim, "dims per head (required)");
  flags.AddString("dtype", "TYPE", &dtype_name, "element type of the samples: fp16 (default), bf16, fp32");
  flags.AddCustom("sample", "FILE", [&](const std::string& v) { samples.push_back(v); return Status::Ok(); },
                  "a sample chunk file; repeat the flag for more (at least one)");
  flags.AddString("out", "FILE", &out_path, "where to write the profile (required)");
  if (int rc = ParseFlagsOrExit(flags, argc, argv, 3, "profile build"); rc >= 0) return rc;
  if (layers <= 0 || heads <= 0 || head_dim <= 0 || samples.empty() || out_path.empty()) {
    return FailCommand("profile build",
                       InvalidArgument("--layers, --heads, --head-dim, --sample and --out are required"));
  }
  auto dtype = ParseDType(dtype_name);
  if (!dtype.ok()) return FailCommand("profile build", dtype.status());

  std::vector<std::vector<std::byte>> files;
  std::vector<codec::KvView> views;
  for (const std::string& path : samples) {
    auto bytes = ReadFile(path);
    if (!bytes.ok()) return FailCommand("profile build", bytes.status());
    codec::KvShape shape{static_cast<uint32_t>(layers), static_cast<uint32_t>(heads), static_cast<uint32_t>(head_dim),
                         0, *dtype};
    const uint64_t per_token = shape.ValuesPerToken() * DTypeBytes(*dtype);
    if (bytes->empty() || bytes->size() % per_token != 0) {
      return FailCommand("profile build", InvalidArgument(path + " is " + std::to_string(bytes->size()) +
                                           " bytes, not a whole number of tokens of " + std::to_string(per_token) +
                                           " bytes"));
    }
    shape.num_tokens = static_cast<uint32_t>(bytes->size() / per_token);
    files.push_back(std::move(bytes).value());
    views.push_back({shape, files.back(), {}});
    std::cerr << "  sample " << path << ": " << shape.num_tokens << " tokens\n";
  }
  auto profile = codec::ModelProfile::Build(views);
  if (!profile.ok()) return FailCommand("profile build", profile.status());
  if (Status s = WriteFile(out_path, profile->serialized()); !s.ok()) return FailCommand("profile build", s);
  std::cout << "profile " << IdHex(profile->id()) << " (" << profile->serialized().size() << " bytes) written to "
            << out_path << "\n";
  return 0;
}

Result<codec::ModelProfile> LoadProfile(const std::string& path) {
  auto bytes = ReadFile(path);
  if (!bytes.ok()) return bytes.status();
  auto profile = codec::ModelProfile::Deserialize(*bytes);
  if (!profile.ok()) return Status(profile.status().code(), path + ": " + profile.status().message());
  return profile;
}

int Show(int argc, char** argv) {
  std::string in_path;
  FlagSet flags("kvtier profile show --in FILE", "Prints a profile file's id, KV shape and size.");
  flags.AddString("in", "FILE", &in_path, "the profile file (required)");
  if (int rc = ParseFlagsOrExit(flags, argc, argv, 3, "profile show"); rc >= 0) return rc;
  if (in_path.empty()) return FailCommand("profile show", InvalidArgument("--in is required"));
  auto profile = LoadProfile(in_path);
  if (!profile.ok()) return FailCommand("profile show", profile.status());
  std::cout << "id " << IdHex(profile->id()) << ", " << profile->num_layers() << " layers, " << profile->num_kv_heads()
            << " KV heads, head_dim " << profile->head_dim() << ", " << profile->serialized().size() << " bytes\n";
  return 0;
}

struct Remote {
  std::string server = "127.0.0.1:7070";
  std::string name_space = std::string(kDebugNamespace);
  std::string name;
};

void AddRemoteFlags(FlagSet& flags, Remote& r) {
  flags.AddString("server", "ADDR", &r.server, "server address host:port (default 127.0.0.1:7070)");
  flags.AddString("namespace", "NAME", &r.name_space, "namespace the profile belongs to (default kvtier-debug)");
  flags.AddString("name", "NAME", &r.name, "the profile's name on the server (required)");
}

// Profiles are looked up by namespace; the fingerprint only has to have the profile's shape.
Result<std::unique_ptr<Client>> ConnectFor(const Remote& r, uint32_t layers, uint32_t heads, uint32_t head_dim) {
  ClientOptions options;
  options.endpoint = r.server;
  options.name_space = r.name_space;
  options.fingerprint = DebugFingerprint();
  options.fingerprint.model_id = "kvtier-profile";
  options.fingerprint.num_layers = layers;
  options.fingerprint.num_kv_heads = heads;
  options.fingerprint.head_dim = head_dim;
  options.max_attempts = 1;
  options.async_threads = 1;
  return Client::Connect(options);
}

int Put(int argc, char** argv) {
  Remote remote;
  std::string in_path;
  FlagSet flags("kvtier profile put --name NAME --in FILE [--server ADDR] [--namespace NS]",
                "Stores a profile file on a server; chunks of the namespace may then reference its id.");
  AddRemoteFlags(flags, remote);
  flags.AddString("in", "FILE", &in_path, "the profile file (required)");
  if (int rc = ParseFlagsOrExit(flags, argc, argv, 3, "profile put"); rc >= 0) return rc;
  if (remote.name.empty() || in_path.empty()) {
    return FailCommand("profile put", InvalidArgument("--name and --in are required"));
  }
  auto profile = LoadProfile(in_path);
  if (!profile.ok()) return FailCommand("profile put", profile.status());
  auto client = ConnectFor(remote, profile->num_layers(), profile->num_kv_heads(), profile->head_dim());
  if (!client.ok()) return FailCommand("profile put", client.status());
  auto id = (*client)->PutProfile(remote.name, *profile);
  if (!id.ok()) return FailCommand("profile put", id.status());
  std::cout << "stored profile " << IdHex(*id) << " as '" << remote.name << "' in namespace " << remote.name_space
            << "\n";
  return 0;
}

int Get(int argc, char** argv) {
  Remote remote;
  std::string out_path;
  FlagSet flags("kvtier profile get --name NAME --out FILE [--server ADDR] [--namespace NS]",
                "Fetches a profile by name and writes it to FILE. Exits 3 when the server has no such profile.");
  AddRemoteFlags(flags, remote);
  flags.AddString("out", "FILE", &out_path, "where to write the profile (required)");
  if (int rc = ParseFlagsOrExit(flags, argc, argv, 3, "profile get"); rc >= 0) return rc;
  if (remote.name.empty() || out_path.empty()) {
    return FailCommand("profile get", InvalidArgument("--name and --out are required"));
  }
  const ModelFingerprint fp = DebugFingerprint();
  auto client = ConnectFor(remote, fp.num_layers, fp.num_kv_heads, fp.head_dim);
  if (!client.ok()) return FailCommand("profile get", client.status());
  auto profile = (*client)->GetProfile(remote.name);
  if (!profile.ok() && profile.status().code() == StatusCode::kNotFound) {
    std::cerr << "kvtier profile get: " << profile.status().message() << "\n";
    return 3;
  }
  if (!profile.ok()) return FailCommand("profile get", profile.status());
  if (Status s = WriteFile(out_path, (*profile)->serialized()); !s.ok()) return FailCommand("profile get", s);
  std::cout << "fetched profile " << IdHex((*profile)->id()) << " to " << out_path << "\n";
  return 0;
}

}  // namespace

int ProfileCommand(int argc, char** argv) {
  const std::string sub = argc >= 3 ? argv[2] : "";
  if (sub == "build") return Build(argc, argv);
  if (sub == "show") return Show(argc, argv);
  if (sub == "put") return Put(argc, argv);
  if (sub == "get") return Get(argc, argv);
  const bool help = sub == "--help" || sub == "-h" || sub == "help";
  (help ? std::cout : std::cerr) << kProfileUsage;
  return help ? 0 : 2;
}

}  // namespace kvtier::cli
