// Client: what an inference worker links to talk to a kvtier server over gRPC, or, on the server's own
// host, over shared memory (kvstore/SHM.md).
//
// One Client holds one channel to one server and is bound to one namespace and model fingerprint
// (a worker serves one model). Chunk payloads are K and V in the canonical layout
// [layer][K|V][token][kv_head][head_dim]; their size must be num_tokens * KvBytesPerToken.
// Gets write straight into the caller's buffer. With ClientOptions.encode set, puts are encoded by the
// codec before they leave (fewer bytes on the wire and on disk); gets decode whatever codec a chunk
// was stored with, fetching shared cachegen profiles from the server once and caching them. Every call has a deadline and retries UNAVAILABLE with
// exponential backoff (safe: chunks are immutable, so a repeated put is a no-op).
//
// Gets and puts take the same-host shared-memory path by themselves when the server offers it for this
// namespace on this host (ClientOptions.local_path): a get is then one memcpy from the server's arena into
// the caller's buffer, and anything that makes the path unusable falls back to gRPC with the same results.
//
// Thread-safe: share one Client among threads. Async variants run on an internal pool and return
// futures; the spans passed to them must stay valid until the future is ready.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kvtier/api/types.h"
#include "kvtier/codec/codec.h"
#include "kvtier/codec/model_profile.h"
#include "kvtier/v1/kvtier.pb.h"

namespace kvtier {
namespace gpu {
enum class PeerLinkKind : uint8_t;  // kvtier/gpu/peer_link.h
}  // namespace gpu

class GpuChannel;  // kvtier/client/gpu_channel.h

// TLS to the server. Off when root_ca_pem is empty (plaintext).
struct ClientTls {
  std::string root_ca_pem;      // PEM CA that signed the server's certificate
  std::string cert_chain_pem;   // client certificate, for servers that require one (mTLS)
  std::string private_key_pem;  // its key
  std::string server_name;      // name to verify in the server's certificate; empty = the endpoint's host

  bool enabled() const { return !root_ca_pem.empty(); }
};

// Whether calls may use the same-host shared-memory path (kvstore/SHM.md).
enum class LocalPathMode {
  kAuto,     // use it when the server offers it for this namespace on this host; else gRPC
  kOff,      // always gRPC
  kRequire,  // gets and puts fail (FAILED_PRECONDITION, with the reason) when it cannot be used
};

struct ClientOptions {
  std::string endpoint = "127.0.0.1:7070";         // host:port of the server
  std::string name_space = "default";             // tenant; 1..128 bytes
  ModelFingerprint fingerprint;                   // required; see ModelFingerprint::Validate
  std::chrono::milliseconds deadline{30000};      // per call, including all frames of a stream
  int max_attempts = 3;                           // tries per call for UNAVAILABLE (1 = no retry)
  std::chrono::milliseconds initial_backoff{50};  // doubled per retry, with jitter
  std::chrono::milliseconds max_backoff{2000};
  // How soon the channel tries to reconnect after losing its server (gRPC's own backoff, doubling from the
  // first to the second). Until then calls fail at once with UNAVAILABLE.
  std::chrono::milliseconds reconnect_backoff{1000};
  std::chrono::milliseconds max_reconnect_backoff{120000};
  uint64_t max_message_bytes = 64ull << 20;       // gRPC message size limit on this channel
  uint64_t frame_bytes = 1ull << 20;              // put data frame size; must not exceed the server's
  // Re-hash payloads received over gRPC (end-to-end integrity). Shared-memory gets always hash what they
  // copy: there the server leaves verification to the reader.
  bool verify_checksum = true;
  size_t async_threads = 4;                       // workers for the *Async calls
  ClientTls tls;                                  // TLS / mTLS; plaintext when tls.root_ca_pem is empty
  // Sent as `authorization: Bearer <token>` with every call, for servers with auth.tokens_file.
  // Use TLS with it: over plaintext anyone on the path can read the token.
  std::string bearer_token;
  // How puts are encoded (codec kRaw: sent as they are). A cachegen profile referenced here must
  // outlive the client and be on the server first (PutProfile). The executor, if any, is also used
  // to decode gets.
  codec::EncodeOptions encode;
  // Gets ask the server to decode encoded chunks instead of decoding them here (always over gRPC).
  bool server_decode = false;
  // Same-host shared memory: chosen by itself in kAuto. Lookups, deletes, stats and profiles stay on gRPC.
  LocalPathMode local_path = LocalPathMode::kAuto;
  std::chrono::milliseconds local_retry{2000};   // after the path was unusable, gRPC only for this long
  std::chrono::milliseconds local_lease{5000};   // how long a local get may take to copy its hits

  Status Validate() const;
};

struct PutOptions {
  uint32_t base_position = 0;  // position of the chunk's first token in its sequence
  bool pin = false;            // never evicted (until deleted)
  // Set: a variant put (docs/keys.md "Variants"): the key passed must be
  // VariantKey(reuse->content_key, reuse->context_keys). Must outlive the call. Always sent over gRPC.
  const v1::ReuseMetadata* reuse = nullptr;
  // TIER_GPU: the server also keeps a copy on its GPU tier (when it has one). TIER_NONE: host DRAM.
  v1::Tier prefer_tier = v1::TIER_NONE;
};

struct ChunkPut {
  ChunkKey key;
  std::span<const uint32_t> token_ids;
  std::span<const std::byte> kv;
  PutOptions options;
};

struct PutResult {
  bool already_present = false;  // the chunk was stored before; nothing was written
  // Variant puts: false when the server's reuse.admission is keep-existing and the chunk's group of
  // variants was full (nothing was stored).
  bool variant_admitted = true;
};

struct GetResult {
  bool found = false;
  uint64_t bytes = 0;              // payload bytes written to the destination
  uint32_t num_tokens = 0;
  uint32_t base_position = 0;
  uint8_t tier = 0;                // kvtier.v1.Tier of the hit
  uint8_t codec = v1::CODEC_RAW;   // kvtier.v1.Codec of the bytes handed over: RAW except from GetBatchEncoded
                                   // and GetLeased, which hand over chunks as stored
};

// One hit of Client::GetLeased: the chunk's stored bytes where they lie in the server's shared arena.
struct LeasedChunk {
  size_t index = 0;                    // position of its key in the request
  std::span<const std::byte> payload;  // read-only, valid until the sink returns
  uint8_t codec = 0;                   // kvtier.v1.Codec of the payload (encoded chunks are not decoded)
  uint64_t checksum = 0;               // XXH3-64 the payload must hash to: the reader verifies (kvstore/SHM.md)
  GetResult result;                    // found, bytes (= payload size), num_tokens, base_position, tier
  // With GetLeased's want_gpu, for a chunk the server also holds in its GPU tier: where the same payload lies in
  // LeasedArena's GPU arena, kept there by the lease.
  std::optional<uint64_t> gpu_offset;
};

// The read-only mapping the payloads point into; keep_alive keeps it mapped for as long as it is held (for
// example while a GPU registration of the range lives). A server restart brings a new mapping.
struct LeasedArena {
  std::span<const std::byte> bytes;
  std::shared_ptr<const void> keep_alive;
  // The server's GPU tier arena, exported by CUDA IPC for same-node workers (kvtier/gpu/ipc.h; kvstore/
  // GPU_TIER.md): its 64-byte handle (empty when the server has none), the device's PCI bus id, its size.
  std::string gpu_ipc_handle;
  std::string gpu_pci_bus_id;
  uint64_t gpu_arena_bytes = 0;
};

// Reads the leased hits and returns once done with their bytes. Indices (into `chunks`) of payloads it found
// not to hash to their checksum go into `corrupt`: the server drops those chunks and they are answered as
// misses. An error ends the call with it.
using LeasedChunkSink =
    std::function<Status(const LeasedArena& arena, std::span<LeasedChunk> chunks, std::vector<size_t>* corrupt)>;

// One answer of GetBestVariants.
struct VariantGetResult {
  GetResult chunk;              // found, bytes, num_tokens, base_position, tier
  ChunkKey variant_key;         // which variant answered
  double context_match = 0;     // MatchContext score of its old context against the new one
  v1::ReuseMetadata reuse;      // its metadata
  // Means over the group's variants computed behind a context (ChunkHeader.group_*): how to rank the
  // tokens of a variant computed alone. Empty and 0 when the group has none.
  std::vector<float> group_token_context_attention;
  double group_context_impact = 0;
};

// How many calls took which path (Client::local_stats).
struct LocalPathStats {
  uint64_t local_gets = 0;        // GetBatch/Get calls served from shared memory
  uint64_t local_puts = 0;        // PutBatch/Put calls written through the put window
  uint64_t fallbacks = 0;         // calls that wanted the local path and went over gRPC
  uint64_t expired_leases = 0;    // local gets redone over gRPC because a lease ended before the copy did
};

struct LookupResult {
  uint32_t leading_hits = 0;       // keys from the start that are all cached
  std::vector<uint8_t> tiers;      // per key, kvtier.v1.Tier (0 = miss)
  uint32_t lease_ttl_ms = 0;       // lease granted on the leading hits
};

class Client {
 public:
  static Result<std::unique_ptr<Client>> Connect(ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const ClientOptions& options() const { return options_; }

  Result<PutResult> Put(const ChunkKey& key, std::span<const uint32_t> token_ids, std::span<const std::byte> kv,
                        const PutOptions& options = {});
  // Many chunks in one stream; each commits on its own (a failure leaves earlier ones stored).
  Result<std::vector<PutResult>> PutBatch(std::span<const ChunkPut> chunks);

  // Fetches one chunk into `dest`. A miss is found == false, not an error. INVALID_ARGUMENT when
  // `dest` is smaller than the chunk. `expected_tokens`, when given, must match the stored tokens or
  // the answer is a miss.
  Result<GetResult> Get(const ChunkKey& key, std::span<std::byte> dest,
                        std::span<const uint32_t> expected_tokens = {});
  // One stream for many keys; dests[i] receives keys[i].
  Result<std::vector<GetResult>> GetBatch(std::span<const ChunkKey> keys, std::span<const std::span<std::byte>> dests);

  // GetBatch without decoding: every hit arrives as stored, encoded chunks as their codec container
  // (codec/FORMAT.md) with GetResult.codec saying which codec, for a caller that decodes elsewhere (on a GPU:
  // PagedKvTransfer). INVALID_ARGUMENT when a container is larger than its destination.
  Result<std::vector<GetResult>> GetBatchEncoded(std::span<const ChunkKey> keys,
                                                 std::span<const std::span<std::byte>> dests);

  // For each content key, its best variant for the new prompt whose ordered content keys are `prompt_context`
  // (see GetRequest.variant_context), written into dests[i]. Misses are found == false.
  // Always over gRPC; encoded chunks are decoded as Get does.
  Result<std::vector<VariantGetResult>> GetBestVariants(std::span<const ChunkKey> content_keys,
                                                        std::span<const ChunkKey> prompt_context,
                                                        std::span<const std::span<std::byte>> dests);

  // Same-host gets without a copy through this process: the hits stay leased in the server's shared arena
  // (kvstore/SHM.md) while `sink` reads them, for example by DMA straight to a GPU. Per key: found with
  // num_tokens, base_position, tier and bytes (the stored payload's size, encoded or not), or a miss (also for
  // chunks the sink reported corrupt). nullopt when the shared-memory path cannot serve the call now, or a
  // lease ended before the sink returned: use GetBatch. The sink is not called when nothing was found.
  // `want_gpu`: also name each hit's copy in the server's GPU tier (LeasedChunk::gpu_offset), for a sink that
  // opened LeasedArena::gpu_ipc_handle and copies device-to-device.
  Result<std::optional<std::vector<GetResult>>> GetLeased(std::span<const ChunkKey> keys, const LeasedChunkSink& sink,
                                                          bool want_gpu = false);

  // A channel that receives chunks of the server's GPU tier device to device (client/gpu_channel.h) over a
  // peer link of kind `link` (NCCL; loopback is the in-process twin), joined on the current CUDA device,
  // waiting at most `timeout` for the link (and, later, for each get's receives). FAILED_PRECONDITION when
  // the server has no GPU tier or offers another kind of link; UNAVAILABLE when the link cannot be made.
  Result<std::unique_ptr<GpuChannel>> OpenGpuChannel(gpu::PeerLinkKind link,
                                                     std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // How many leading keys of a prefix chain are cached; with lease > 0 they are held that long.
  Result<LookupResult> Lookup(std::span<const ChunkKey> keys,
                              std::chrono::milliseconds lease = std::chrono::milliseconds(0));
  Result<std::vector<bool>> Exists(std::span<const ChunkKey> keys);
  Result<uint32_t> Delete(std::span<const ChunkKey> keys);
  Result<v1::StatsResponse> Stats();
  // grpc.health.v1 Check of the server (one try, the call deadline): OK when it reports SERVING,
  // UNAVAILABLE when it does not answer or is not serving.
  Status CheckHealth();
  // Which path calls took, and why the shared-memory path was last unusable (empty if never).
  LocalPathStats local_stats() const;
  std::string local_fallback_reason() const;

  // Stores a shared cachegen profile on the server under `name` (its id is profile.id()) and keeps
  // it for decoding here.
  Result<uint64_t> PutProfile(std::string_view name, const codec::ModelProfile& profile);
  // Fetches a profile by name (by id: GetProfileById), verifying that its bytes hash to its id.
  Result<std::unique_ptr<codec::ModelProfile>> GetProfile(std::string_view name);
  Result<std::unique_ptr<codec::ModelProfile>> GetProfileById(uint64_t id);
  // How this client decodes: cachegen profiles resolved through its cache (fetched from the server on first
  // use), and its encode executor. For decoding chunks from GetBatchEncoded or GetLeased.
  codec::DecodeOptions DecodeOptions();

  std::future<Result<PutResult>> PutAsync(const ChunkKey& key, std::span<const uint32_t> token_ids,
                                          std::span<const std::byte> kv, const PutOptions& options = {});
  std::future<Result<GetResult>> GetAsync(const ChunkKey& key, std::span<std::byte> dest,
                                          std::span<const uint32_t> expected_tokens = {});
  std::future<Result<LookupResult>> LookupAsync(std::vector<ChunkKey> keys,
                                                std::chrono::milliseconds lease = std::chrono::milliseconds(0));

 private:
  struct Impl;
  explicit Client(ClientOptions options);

  Result<std::unique_ptr<codec::ModelProfile>> FetchProfile(std::string_view name, uint64_t id);
  Result<v1::LocalInfoResponse> LocalInfo();
  // The shared-memory attempt of a get: nullopt = go over gRPC.
  // `decode` null: chunks stay encoded (GetBatchEncoded).
  Result<std::optional<std::vector<GetResult>>> LocalGet(std::span<const ChunkKey> keys,
                                                         std::span<const std::span<std::byte>> dests,
                                                         std::span<const std::span<const uint32_t>> expected,
                                                         const codec::DecodeOptions* decode);
  Result<std::vector<GetResult>> RunBatch(std::span<const ChunkKey> keys, std::span<const std::span<std::byte>> dests,
                                          bool keep_encoded);
  Status LocalUnavailable() const;
  // For decoding gets: cached profiles, fetched from the server on first use.
  const codec::ModelProfile* ResolveProfile(uint64_t id);

  ClientOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvtier
