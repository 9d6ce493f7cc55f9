#include <cstdio>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <numeric>
#include <sstream>
#include <vector>

#include "commands.h"
#include "debug_model.h"
#include "flags.h"
#include "kvtier/client/chunker.h"
#include "kvtier/client/client.h"
#include "kvtier/kvstore/config.h"

namespace kvtier::cli {

ModelFingerprint DebugFingerprint() {
  ModelFingerprint fp;
  fp.model_id = "kvtier-debug";
  fp.num_layers = 1;
  fp.num_kv_heads = 1;
  fp.head_dim = 1024;
  fp.dtype = DType::kFp16;
  fp.chunk_tokens = 65536;
  return fp;
}

ChunkKey DebugKey(std::string_view name) {
  if (auto hex = ChunkKey::FromHex(name); hex.ok()) return *hex;
  std::vector<uint32_t> tokens(name.begin(), name.end());
  for (auto& t : tokens) t &= 0xff;
  return Chunker(DebugFingerprint()).ContentKey(tokens);
}

namespace {

struct CommonFlags {
  std::string server = "127.0.0.1:7070";
  std::string name_space = std::string(kDebugNamespace);
  int deadline_ms = 30000;
};

Result<std::unique_ptr<Client>> Connect(const CommonFlags& common, codec::CodecId encode = codec::CodecId::kRaw) {
  ClientOptions options;
  options.encode.codec = encode;
  options.endpoint = common.server;
  options.name_space = common.name_space;
  options.fingerprint = DebugFingerprint();
  options.deadline = std::chrono::milliseconds(common.deadline_ms);
  options.max_attempts = 1;
  options.async_threads = 1;
  return Client::Connect(options);
}

std::string Human(uint64_t bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  std::ostringstream out;
  out << std::fixed << std::setprecision(u == 0 ? 0 : 1) << v << " " << kUnits[u];
  return out.str();
}

const char* TierLabel(int tier) {
  switch (tier) {
    case 1: return "host";
    case 2: return "nvme";
    case 3: return "gpu";
    default: return "none";
  }
}

}  // namespace

int StatCommand(int argc, char** argv) {
  CommonFlags common;
  FlagSet flags("kvtier stat [--server ADDR]", "Prints a server's version, tiers, counters and limits.");
  flags.AddString("server", "ADDR", &common.server, "server address host:port (default 127.0.0.1:7070)");
  flags.AddInt("deadline-ms", &common.deadline_ms, "give up after this many milliseconds (default 30000)");
  if (int rc = ParseFlagsOrExit(flags, argc, argv, 2, "stat"); rc >= 0) return rc;
  auto client = Connect(common);
  if (!client.ok()) return FailCommand("stat", client.status());
  auto stats = (*client)->Stats();
  if (!stats.ok()) return FailCommand("stat", stats.status());
  const auto& s = *stats;
  std::cout << "kvtier " << s.version() << " at " << common.server << ", up " << s.uptime_seconds() << " s, "
            << s.namespaces() << " namespace(s)\n\n";
  std::cout << std::left << std::setw(6) << "tier" << std::setw(12) << "capacity" << std::setw(12) << "used"
            << std::setw(10) << "chunks" << std::setw(8) << "pinned" << std::setw(12) << "hits" << "evictions\n";
  for (const auto& t : s.tiers()) {
    std::cout << std::left << std::setw(6) << TierLabel(t.tier()) << std::setw(12) << Human(t.capacity_bytes())
              << std::setw(12) << Human(t.used_bytes()) << std::setw(10) << t.chunks() << std::setw(8)
              << t.pinned_chunks() << std::setw(12) << t.hits() << t.evictions() << "\n";
  }
  std::cout << "\nmisses " << s.misses() << ", checksum failures " << s.checksum_failures() << ", token mismatches "
            << s.token_mismatches() << "\n";
  std::cout << "limits: max_chunk_bytes " << FormatByteSize(s.max_chunk_bytes()) << ", max_frame_bytes "
            << FormatByteSize(s.max_frame_bytes()) << ", max_batch " << s.max_batch() << "\n";
  return 0;
}

int PutCommand(int argc, char** argv) {
  CommonFlags common;
  std::string name, in_path, codec_name = "raw";
  bool pin = false;
  FlagSet flags("kvtier put --key NAME --in FILE [--codec raw|lossless] [--server ADDR]",
                "Stores FILE as one chunk of the debug model (fingerprint 'kvtier-debug': 4096 bytes per\n"
                "token, so at most 256 MiB - 8 bytes) in the debug namespace. NAME is 32 hex digits, or\n"
                "any text, hashed into a key. `kvtier get` with the same NAME returns the file byte-exact.");
  flags.AddString("codec", "NAME", &codec_name,
                  "encode before sending: raw (default) or lossless (byte planes + zstd); lossy codecs would "
                  "not return the file byte-exact and are refused");
  flags.AddString("server", "ADDR", &common.server, "server address host:port (default 127.0.0.1:7070)");
  flags.AddString("key", "NAME", &name, "32 hex digits, or a name hashed into a key (required)");
  flags.AddString("in", "FILE", &in_path, "file to store (required)");
  flags.AddString("namespace", "NAME", &common.name_space, "namespace (default kvtier-debug)");
  flags.AddBool("pin", &pin, "never evict the chunk");
  flags.AddInt("deadline-ms", &common.deadline_ms, "give up after this many milliseconds (default 30000)");
  if (int rc = ParseFlagsOrExit(flags, argc, argv, 2, "put"); rc >= 0) return rc;
  if (name.empty() || in_path.empty()) return FailCommand("put", InvalidArgument("--key and --in are required"));
  auto codec_id = codec::ParseCodecName(codec_name);
  if (!codec_id.ok()) return FailCommand("put", codec_id.status());
  if (!codec::IsLossless(*codec_id)) {
    return FailCommand("put", InvalidArgument("--codec " + codec_name + " is lossy; a file must come back byte-exact"));
  }

  std::ifstream in(in_path, std::ios::binary);
  if (!in) return FailCommand("put", NotFound("cannot open " + in_path));
  std::vector<char> file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const ModelFingerprint fp = DebugFingerprint();
  const uint64_t per_token = fp.KvBytesPerToken();
  const uint64_t tokens = (8 + file.size() + per_token - 1) / per_token;
  if (tokens > fp.chunk_tokens) {
    return FailCommand("put", InvalidArgument(in_path + " is " + std::to_string(file.size()) +
                                       " bytes; the debug model holds at most " +
                                       std::to_string(fp.chunk_tokens * per_token - 8)));
  }
  std::vector<std::byte> payload(tokens * per_token, std::byte{0});
  const uint64_t length = file.size();
  std::memcpy(payload.data(), &length, sizeof(length));
  if (!file.empty()) std::memcpy(payload.data() + 8, file.data(), file.size());
  std::vector<uint32_t> ids(tokens);
  std::iota(ids.begin(), ids.end(), 0u);

  auto client = Connect(common, *codec_id);
  if (!client.ok()) return FailCommand("put", client.status());
  const ChunkKey key = DebugKey(name);
  PutOptions options;
  options.pin = pin;
  auto result = (*client)->Put(key, ids, payload, options);
  if (!result.ok()) return FailCommand("put", result.status());
  std::cout << (result->already_present ? "already present: " : "stored: ") << key.ToHex() << " (" << file.size()
            << " bytes from " << in_path << ", codec " << codec_name << ")\n";
  return 0;
}

int GetCommand(int argc, char** argv) {
  CommonFlags common;
  std::string name, out_path;
  FlagSet flags("kvtier get --key NAME --out FILE [--server ADDR]",
                "Fetches a chunk stored by `kvtier put` and writes the original file. Exits 3 on a miss.");
  flags.AddString("server", "ADDR", &common.server, "server address host:port (default 127.0.0.1:7070)");
  flags.AddString("key", "NAME", &name, "32 hex digits, or a name hashed into a key (required)");
  flags.AddString("out", "FILE", &out_path, "file to write (required)");
  flags.AddString("namespace", "NAME", &common.name_space, "namespace (default kvtier-debug)");
  flags.AddInt("deadline-ms", &common.deadline_ms, "give up after this many milliseconds (default 30000)");
  if (int rc = ParseFlagsOrExit(flags, argc, argv, 2, "get"); rc >= 0) return rc;
  if (name.empty() || out_path.empty()) return FailCommand("get", InvalidArgument("--key and --out are required"));

  auto client = Connect(common);
  if (!client.ok()) return FailCommand("get", client.status());
  const ModelFingerprint fp = DebugFingerprint();
  const uint64_t capacity = uint64_t{fp.chunk_tokens} * fp.KvBytesPerToken();
  // Uninitialized on purpose: only the pages the chunk lands in are ever touched.
  std::unique_ptr<std::byte[]> buffer(new std::byte[capacity]);
  const ChunkKey key = DebugKey(name);
  auto result = (*client)->Get(key, {buffer.get(), capacity});
  if (!result.ok()) return FailCommand("get", result.status());
  if (!result->found) {
    std::cerr << "kvtier get: miss: no chunk " << key.ToHex() << " in namespace " << common.name_space << "\n";
    return 3;
  }
  uint64_t length = 0;
  if (result->bytes < 8) return FailCommand("get", DataLoss("chunk is not in the debug model's framing"));
  std::memcpy(&length, buffer.get(), sizeof(length));
  if (length > result->bytes - 8) return FailCommand("get", DataLoss("chunk is not in the debug model's framing"));
  std::ofstream out(out_path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(buffer.get() + 8), static_cast<std::streamsize>(length));
  out.close();
  if (!out) return FailCommand("get", Internal("cannot write " + out_path));
  std::cout << "fetched: " << key.ToHex() << " (" << length << " bytes to " << out_path << ")\n";
  return 0;
}

}  // namespace kvtier::cli
