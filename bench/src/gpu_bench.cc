// kvtier bench-gpu: see kvtier/bench/gpu.h. Device timings use CUDA events around `iterations` repetitions
// on one stream after a warm-up; the chunk load is timed on the host clock, from the call to the last layer
// being in the cache.
#include "kvtier/bench/gpu.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "bench_common.h"
#include "kvtier/client/paged_transfer.h"
#include "kvtier/codec/codec.h"
#include "kvtier/codec/model_profile.h"
#include "kvtier/gpu/async_copy.h"
#include "kvtier/gpu/cachegen_decode.h"
#include "kvtier/gpu/device.h"
#include "kvtier/gpu/device_buffer.h"
#include "kvtier/gpu/host_gather.h"
#include "kvtier/gpu/int8_dequant.h"
#include "kvtier/gpu/paged_kv.h"
#include "kvtier/gpu/stream.h"

namespace kvtier::bench {
namespace {

constexpr char kNamespace[] = "kvtier-bench-gpu";

// Everything the rows share, allocated and touched before any timing.
struct Rig {
  gpu::PagedKvShape shape;
  uint64_t chunk_bytes = 0;  // one full chunk
  uint64_t total_bytes = 0;  // all chunks of one transfer
  std::vector<std::byte> host;                     // pinned below: the source of host-to-device copies
  std::optional<gpu::HostRegistration> pin;
  std::optional<gpu::DeviceBuffer> chunks, chunks_copy;  // chunk layout, back to back
  std::vector<gpu::DeviceBuffer> k, v;              // the paged cache, per layer
  std::vector<void*> k_ptrs, v_ptrs;
  std::optional<gpu::DeviceBuffer> table;           // the sequence's block table (shuffled block ids)
  uint32_t table_size = 0;
  std::optional<gpu::Stream> stream;

  gpu::PagedKvCache Cache() const { return {shape, k_ptrs, v_ptrs}; }
  gpu::SequenceSlice Chunk(uint32_t c, uint32_t tokens) const {
    return {reinterpret_cast<const int32_t*>(table->data()), table_size, c * tokens, tokens};
  }
};

// The RAII types of kvtier::gpu have no empty state: they are held in optionals until created.
template <typename T>
Status Assign(Result<T> r, std::optional<T>* out) {
  if (!r.ok()) return r.status();
  out->emplace(std::move(*r));
  return Status::Ok();
}

Result<std::unique_ptr<Rig>> MakeRig(const GpuBenchOptions& o) {
  auto rig = std::make_unique<Rig>();
  const uint32_t tokens = o.chunks * o.chunk_tokens;
  rig->shape = gpu::PagedKvShape{o.layers, (tokens + o.block_size - 1) / o.block_size, o.block_size, o.kv_heads,
                                 o.head_dim, DType::kFp16};
  rig->chunk_bytes = rig->shape.ChunkBytes(o.chunk_tokens);
  rig->total_bytes = rig->chunk_bytes * o.chunks;
  rig->host.resize(rig->total_bytes);
  FillRandom(rig->host, 1);
  for (size_t i = 1; i < rig->host.size(); i += 2) rig->host[i] &= std::byte{0xbb};  // finite fp16, |x| < 2: encodable
  KVTIER_RETURN_IF_ERROR(Assign(gpu::HostRegistration::Register(rig->host.data(), rig->host.size()), &rig->pin));
  KVTIER_RETURN_IF_ERROR(Assign(gpu::DeviceBuffer::Allocate(rig->total_bytes), &rig->chunks));
  KVTIER_RETURN_IF_ERROR(Assign(gpu::DeviceBuffer::Allocate(rig->total_bytes), &rig->chunks_copy));
  KVTIER_RETURN_IF_ERROR(rig->chunks->CopyFromHost(rig->host));
  KVTIER_RETURN_IF_ERROR(rig->chunks_copy->Fill(0));
  for (uint32_t l = 0; l < o.layers; ++l) {
    for (auto* side : {&rig->k, &rig->v}) {
      auto b = gpu::DeviceBuffer::Allocate(rig->shape.LayerBytes());
      if (!b.ok()) return b.status();
      KVTIER_RETURN_IF_ERROR(b->Fill(0));
      (side == &rig->k ? rig->k_ptrs : rig->v_ptrs).push_back(b->data());
      side->push_back(std::move(*b));
    }
  }
  std::vector<int32_t> ids(rig->shape.num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), std::mt19937(7));
  rig->table_size = static_cast<uint32_t>(ids.size());
  KVTIER_RETURN_IF_ERROR(Assign(gpu::DeviceBuffer::Allocate(ids.size() * sizeof(int32_t)), &rig->table));
  KVTIER_RETURN_IF_ERROR(rig->table->CopyFromHost(std::as_bytes(std::span(ids))));
  KVTIER_RETURN_IF_ERROR(Assign(gpu::Stream::Create(), &rig->stream));
  return rig;
}

// Seconds per repetition of `op` (which enqueues on `stream`), by CUDA events, after one warm-up.
Result<double> TimeOnStream(uint32_t iterations, gpu::StreamHandle stream, const std::function<Status()>& op) {
  KVTIER_RETURN_IF_ERROR(op());
  KVTIER_RETURN_IF_ERROR(gpu::SynchronizeStream(stream));
  auto start = gpu::Event::Create(/*timing=*/true);
  auto end = gpu::Event::Create(/*timing=*/true);
  if (!start.ok()) return start.status();
  if (!end.ok()) return end.status();
  KVTIER_RETURN_IF_ERROR(start->Record(stream));
  for (uint32_t i = 0; i < iterations; ++i) KVTIER_RETURN_IF_ERROR(op());
  KVTIER_RETURN_IF_ERROR(end->Record(stream));
  KVTIER_RETURN_IF_ERROR(end->Synchronize());
  auto ms = gpu::Event::ElapsedMs(*start, *end);
  if (!ms.ok()) return ms.status();
  return *ms / 1e3 / iterations;
}

class Rows {
 public:
  explicit Rows(std::vector<GpuBenchRow>* rows) : rows_(rows) {}
  void Add(const std::string& what, uint64_t bytes, double seconds, const std::string& limit = "",
           double target = 0) {
    GpuBenchRow r{what, bytes, seconds, seconds > 0 ? static_cast<double>(bytes) / seconds / 1e9 : 0, limit, 0,
                  target};
    for (const GpuBenchRow& l : *rows_) {
      if (l.what == limit && l.gbps > 0) r.ratio = r.gbps / l.gbps;
    }
    rows_->push_back(r);
  }

 private:
  std::vector<GpuBenchRow>* rows_;
};

constexpr char kH2d[] = "h2d pinned memcpy";
constexpr char kD2d[] = "d2d memcpy";

Status BenchLimits(const GpuBenchOptions& o, Rig& rig, Rows& rows, std::ostream& progress) {
  progress << "bench-gpu: limits (pinned host-to-device and device-to-device cudaMemcpy)\n";
  gpu::StreamHandle s = rig.stream->get();
  auto h2d = TimeOnStream(o.iterations, s, [&] {
    return gpu::CopyAsync(rig.chunks->data(), rig.pin->host(), rig.total_bytes, s);
  });
  if (!h2d.ok()) return h2d.status();
  rows.Add(kH2d, rig.total_bytes, *h2d);
  auto d2d = TimeOnStream(o.iterations, s, [&] {
    return gpu::CopyAsync(rig.chunks_copy->data(), rig.chunks->data(), rig.total_bytes, s);
  });
  if (!d2d.ok()) return d2d.status();
  rows.Add(kD2d, rig.total_bytes, *d2d);
  return Status::Ok();
}

Status BenchPackUnpack(const GpuBenchOptions& o, Rig& rig, Rows& rows, std::ostream& progress) {
  progress << "bench-gpu: pack / unpack kernels (" << o.chunks << " chunks of " << o.chunk_tokens << " tokens, "
           << o.layers << " layers fused per launch)\n";
  gpu::StreamHandle s = rig.stream->get();
  auto for_chunks = [&](const std::function<Status(uint32_t, std::span<std::byte>)>& f) {
    return [&, f] {
      for (uint32_t c = 0; c < o.chunks; ++c) {
        KVTIER_RETURN_IF_ERROR(f(c, rig.chunks->span().subspan(c * rig.chunk_bytes, rig.chunk_bytes)));
      }
      return Status::Ok();
    };
  };
  auto unpack = TimeOnStream(o.iterations, s, for_chunks([&](uint32_t c, std::span<std::byte> chunk) {
    return gpu::UnpackPagedKv(rig.Cache(), rig.Chunk(c, o.chunk_tokens), chunk, {}, s);
  }));
  if (!unpack.ok()) return unpack.status();
  rows.Add("unpack chunk->paged", rig.total_bytes, *unpack, kD2d, 0.8);
  auto pack = TimeOnStream(o.iterations, s, for_chunks([&](uint32_t c, std::span<std::byte> chunk) {
    return gpu::PackPagedKv(rig.Cache(), rig.Chunk(c, o.chunk_tokens), chunk, s);
  }));
  if (!pack.ok()) return pack.status();
  rows.Add("pack paged->chunk", rig.total_bytes, *pack, kD2d, 0.8);
  gpu::UnpackOptions rotate;
  rotate.rerotate_delta = 1000;
  rotate.rope = gpu::RopeParams{RopeStyle::kNeox, o.head_dim, 500000.0};
  auto rerotate = TimeOnStream(o.iterations, s, for_chunks([&](uint32_t c, std::span<std::byte> chunk) {
    return gpu::UnpackPagedKv(rig.Cache(), rig.Chunk(c, o.chunk_tokens), chunk, rotate, s);
  }));
  if (!rerotate.ok()) return rerotate.status();
  rows.Add("unpack + RoPE re-rotation", rig.total_bytes, *rerotate, kD2d);
  return Status::Ok();
}

// The rig's first chunk of random bytes, made finite and moderate (random bits can be NaN or huge in fp16: keep
// the sign and a small exponent), encoded with `id` at its default options.
Result<std::vector<std::byte>> EncodeOneChunk(const GpuBenchOptions& o, const Rig& rig, codec::CodecId id) {
  const codec::KvShape shape{o.layers, o.kv_heads, o.head_dim, o.chunk_tokens, DType::kFp16};
  codec::EncodeOptions enc;
  enc.codec = id;
  std::vector<std::byte> encoded;
  const codec::KvView kv{shape, std::span(rig.host).first(shape.RawBytes()), {}};
  KVTIER_RETURN_IF_ERROR(codec::Encode(kv, enc, encoded));
  return encoded;
}

// One int8-encoded chunk on the device, dequantized into every chunk slot of the rig (fp16 out).
Status BenchInt8(const GpuBenchOptions& o, Rig& rig, Rows& rows, std::ostream& progress) {
  progress << "bench-gpu: int8 dequantization on the GPU\n";
  auto encoded = EncodeOneChunk(o, rig, codec::CodecId::kInt8);
  if (!encoded.ok()) return encoded.status();
  auto payload = gpu::ParseInt8Container(*encoded);
  if (!payload.ok()) return payload.status();
  std::optional<gpu::DeviceBuffer> body;
  KVTIER_RETURN_IF_ERROR(Assign(gpu::DeviceBuffer::Allocate(payload->body.size()), &body));
  KVTIER_RETURN_IF_ERROR(body->CopyFromHost(payload->body));
  const gpu::Int8Payload on_device{payload->shape, body->span()};
  gpu::StreamHandle s = rig.stream->get();
  auto t = TimeOnStream(o.iterations, s, [&] {
    for (uint32_t c = 0; c < o.chunks; ++c) {
      const std::span<std::byte> out = rig.chunks_copy->span().subspan(c * rig.chunk_bytes, rig.chunk_bytes);
      KVTIER_RETURN_IF_ERROR(gpu::DequantizeInt8(on_device, DType::kFp16, out, s));
    }
    return Status::Ok();
  });
  if (!t.ok()) return t.status();
  rows.Add("int8 dequant (fp16 out)", rig.total_bytes, *t, kH2d, 2.0);
  return Status::Ok();
}

// One cachegen-encoded chunk (level 2, inline tables) decoded into every chunk slot of the rig in one batch.
Status BenchCachegen(const GpuBenchOptions& o, Rig& rig, Rows& rows, std::ostream& progress) {
  progress << "bench-gpu: cachegen decoding on the GPU (rANS + dequantization, one thread per stream)\n";
  auto encoded = EncodeOneChunk(o, rig, codec::CodecId::kCacheGen);
  if (!encoded.ok()) return encoded.status();
  auto plan = gpu::ParseCachegenContainer(*encoded);
  if (!plan.ok()) return plan.status();
  const std::vector<std::byte> image = gpu::CachegenImage(*plan);
  const uint64_t workspace_bytes = (gpu::CachegenWorkspaceBytes(*plan) + 15) / 16 * 16;
  std::optional<gpu::DeviceBuffer> body, dev_image, workspace;
  KVTIER_RETURN_IF_ERROR(Assign(gpu::DeviceBuffer::Allocate(plan->body.size()), &body));
  KVTIER_RETURN_IF_ERROR(Assign(gpu::DeviceBuffer::Allocate(image.size()), &dev_image));
  KVTIER_RETURN_IF_ERROR(Assign(gpu::DeviceBuffer::Allocate(workspace_bytes * o.chunks), &workspace));
  KVTIER_RETURN_IF_ERROR(body->CopyFromHost(plan->body));
  KVTIER_RETURN_IF_ERROR(dev_image->CopyFromHost(image));
  std::vector<gpu::CachegenDeviceChunk> batch(o.chunks);
  for (uint32_t c = 0; c < o.chunks; ++c) {
    batch[c] = gpu::CachegenDeviceChunk{&*plan, body->span(), dev_image->span(),
                                        workspace->span().subspan(c * workspace_bytes, workspace_bytes),
                                        rig.chunks_copy->span().subspan(c * rig.chunk_bytes, rig.chunk_bytes),
                                        DType::kFp16, {}};
  }
  gpu::StreamHandle s = rig.stream->get();
  auto t = TimeOnStream(o.iterations, s, [&] { return gpu::DecodeCachegen(batch, s); });
  if (!t.ok()) return t.status();
  std::vector<std::byte> errors(gpu::CachegenErrorBytes(*plan));
  KVTIER_RETURN_IF_ERROR(workspace->CopyToHost(errors));
  KVTIER_RETURN_IF_ERROR(gpu::CachegenDeviceStatus(*plan, errors));
  rows.Add("cachegen decode (fp16 out)", rig.total_bytes, *t, kH2d, 2.0);
  progress << "bench-gpu: cachegen chunk " << Size(encoded->size()) << " for " << Size(rig.chunk_bytes) << " raw\n";
  return Status::Ok();
}

// Half of one layer-sized block array selected at random, read over the bus from pinned host memory.
Status BenchGather(const GpuBenchOptions& o, Rig& rig, Rows& rows, std::ostream& progress) {
  progress << "bench-gpu: direct gather from pinned host memory (zero-copy)\n";
  const uint64_t block_bytes = uint64_t{o.block_size} * rig.shape.RowBytes();
  const uint32_t blocks = static_cast<uint32_t>(rig.total_bytes / block_bytes);
  std::vector<int32_t> ids(blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), std::mt19937(3));
  ids.resize(blocks / 2);
  std::optional<gpu::DeviceBuffer> dev_ids;
  KVTIER_RETURN_IF_ERROR(Assign(gpu::DeviceBuffer::Allocate(ids.size() * sizeof(int32_t)), &dev_ids));
  KVTIER_RETURN_IF_ERROR(dev_ids->CopyFromHost(std::as_bytes(std::span(ids))));
  const gpu::BlockGather g{static_cast<const std::byte*>(rig.pin->device_pointer()), blocks, block_bytes,
                           reinterpret_cast<const int32_t*>(dev_ids->data()), static_cast<uint32_t>(ids.size())};
  const uint64_t bytes = gpu::GatherOutputBytes(g);
  gpu::StreamHandle s = rig.stream->get();
  auto t = TimeOnStream(o.iterations, s, [&] { return gpu::GatherBlocks(g, rig.chunks_copy->span().first(bytes), s); });
  if (!t.ok()) return t.status();
  rows.Add("direct gather (UVA)", bytes, *t, kH2d);
  return Status::Ok();
}

// What chunk c of the loads must have placed: the chunk put, or for an encoded one what the host decoder makes of
// the client's encoding (the GPU decoder's output is identical to it).
Status ExpectedChunk(const GpuBenchOptions& o, const Rig& rig, const ClientOptions& co,
                     const codec::ModelProfile* profile, uint32_t c, std::vector<std::byte>& encoded,
                     std::span<std::byte> want) {
  const std::span<const std::byte> put = std::span(rig.host).subspan(c * rig.chunk_bytes, rig.chunk_bytes);
  if (co.encode.codec == codec::CodecId::kRaw) {
    std::copy(put.begin(), put.end(), want.begin());
    return Status::Ok();
  }
  const codec::KvView view{codec::KvShape{o.layers, o.kv_heads, o.head_dim, o.chunk_tokens, DType::kFp16}, put, {}};
  KVTIER_RETURN_IF_ERROR(codec::Encode(view, co.encode, encoded));
  codec::DecodeOptions decode;
  decode.profiles = [profile](uint64_t) { return profile; };
  return codec::Decode(encoded, want, decode);
}

// The chunks the loads placed, packed back out of the paged cache and compared with what they must be: a load
// that is fast but wrong fails the benchmark instead of giving a rate.
Status VerifyLoad(const GpuBenchOptions& o, Rig& rig, const ClientOptions& co, const codec::ModelProfile* profile,
                  std::ostream& progress) {
  gpu::StreamHandle s = rig.stream->get();
  std::vector<std::byte> got(rig.chunk_bytes), want(rig.chunk_bytes), encoded;
  const std::span<std::byte> packed = rig.chunks_copy->span().first(rig.chunk_bytes);
  for (uint32_t c = 0; c < o.chunks; ++c) {
    KVTIER_RETURN_IF_ERROR(ExpectedChunk(o, rig, co, profile, c, encoded, want));
    KVTIER_RETURN_IF_ERROR(gpu::PackPagedKv(rig.Cache(), rig.Chunk(c, o.chunk_tokens), packed, s));
    KVTIER_RETURN_IF_ERROR(gpu::SynchronizeStream(s));
    KVTIER_RETURN_IF_ERROR(rig.chunks_copy->CopyToHost(got));
    const auto diff = std::mismatch(got.begin(), got.end(), want.begin());
    if (diff.first != got.end()) {
      return Internal("bench-gpu: the " + std::string(codec::CodecName(co.encode.codec)) + " load placed chunk " +
                      std::to_string(c) + " wrong: it differs from what was put from byte " +
                      std::to_string(diff.first - got.begin()) + " of " + std::to_string(got.size()));
    }
  }
  progress << "bench-gpu: " << codec::CodecName(co.encode.codec) << " load checked: the paged cache holds the "
           << o.chunks << " chunks put" << (co.encode.codec == codec::CodecId::kRaw ? "" : ", as the host decodes them")
           << "\n";
  return Status::Ok();
}

// One codec's chunks put by `client` (encoded by it; cachegen with a shared profile built from the chunks), then
// fetched into the paged cache again and again; the rate is in raw (decoded) bytes, against pinned
// host-to-device copies.
Status LoadChunks(const GpuBenchOptions& o, Rig& rig, const ClientOptions& base, codec::CodecId codec, Rows& rows,
                  std::ostream& progress) {
  ClientOptions co = base;
  co.encode.codec = codec;
  std::optional<codec::ModelProfile> profile;
  if (codec == codec::CodecId::kCacheGen) {
    const codec::KvShape shape{o.layers, o.kv_heads, o.head_dim, o.chunk_tokens, DType::kFp16};
    std::vector<codec::KvView> samples;
    for (uint32_t c = 0; c < std::min<uint32_t>(o.chunks, 4); ++c) {
      samples.push_back({shape, std::span(rig.host).subspan(c * rig.chunk_bytes, rig.chunk_bytes), {}});
    }
    KVTIER_RETURN_IF_ERROR(Assign(codec::ModelProfile::Build(samples), &profile));
    co.encode.profile = &*profile;
  }
  auto client = Client::Connect(co);
  if (!client.ok()) return client.status();
  if (profile) {
    auto stored = (*client)->PutProfile("bench-gpu", *profile);
    if (!stored.ok()) return stored.status();
  }
  std::vector<ChunkKey> keys;
  for (uint32_t c = 0; c < o.chunks; ++c) {
    keys.push_back(ChunkKey{0x6770 + static_cast<uint64_t>(codec), c});
    std::vector<uint32_t> ids(o.chunk_tokens, c);
    auto put = (*client)->Put(keys.back(), ids, std::span(rig.host).subspan(c * rig.chunk_bytes, rig.chunk_bytes));
    if (!put.ok()) return put.status();
  }
  PagedTransferOptions to;
  to.staging_bytes = rig.total_bytes;
  auto transfer = PagedKvTransfer::Create(client->get(), rig.shape, to);
  if (!transfer.ok()) return transfer.status();
  const PagedTarget target{rig.Cache(), reinterpret_cast<const int32_t*>(rig.table->data()), rig.table_size, 0};
  double seconds = 0;
  for (uint32_t i = 0; i <= o.iterations; ++i) {
    const auto t0 = Clock::now();
    auto load = (*transfer)->GetToDevice(keys, target, rig.stream->get());
    if (!load.ok()) return load.status();
    KVTIER_RETURN_IF_ERROR(load->Synchronize());
    if (load->placed_chunks != o.chunks) return Internal("bench-gpu: a chunk load missed chunks it had put");
    if (i > 0) seconds += std::chrono::duration<double>(Clock::now() - t0).count();  // i = 0 warms up
  }
  KVTIER_RETURN_IF_ERROR(VerifyLoad(o, rig, co, profile ? &*profile : nullptr, progress));
  const PagedTransferStats stats = (*transfer)->stats();
  progress << "bench-gpu: " << codec::CodecName(codec) << " chunks copied straight from the shared arena: "
           << stats.leased_chunks << ", through the staging: " << stats.staged_chunks
           << ", decoded on the GPU: " << stats.decoded_chunks << ", resident table sets: " << stats.resident_table_sets
           << (stats.zero_copy_off.empty() ? "" : " (" + stats.zero_copy_off + ")") << "\n";
  const std::string how = stats.staged_chunks == 0 ? "zero-copy" : "staged";
  if (codec == codec::CodecId::kRaw) {
    rows.Add("kvtier chunk load, " + how + " (host tier -> paged)", rig.total_bytes, seconds / o.iterations, kH2d,
             0.9);
  } else {
    const std::string decoded = stats.decoded_chunks == 0 ? "decoded on the host" : "decoded on the GPU";
    rows.Add("kvtier chunk load, " + std::string(codec::CodecName(codec)) + " " + decoded + ", " + how +
                 " (raw bytes)",
             rig.total_bytes, seconds / o.iterations, kH2d);
  }
  return Status::Ok();
}

// The whole path: chunks put into an in-process server's host tier, then fetched into the paged cache: raw, and
// encoded with int8 and cachegen (decoded by the transfer on the GPU).
Status BenchChunkLoad(const GpuBenchOptions& o, Rig& rig, Rows& rows, std::ostream& progress) {
  BenchOptions server_options;
  server_options.working_set_bytes = 2 * rig.total_bytes;  // raw, int8 (about 1/2) and cachegen chunks at once
  server_options.chunk_bytes = {rig.chunk_bytes};
  auto server = StartBenchServer(server_options, progress);
  if (!server.ok()) return server.status();
  ClientOptions co;
  co.endpoint = (*server)->address();
  co.name_space = (*server)->shm() ? kShmNamespace : kNamespace;
  co.fingerprint.model_id = "kvtier-bench-gpu";
  co.fingerprint.num_layers = o.layers;
  co.fingerprint.num_kv_heads = o.kv_heads;
  co.fingerprint.head_dim = o.head_dim;
  co.fingerprint.dtype = DType::kFp16;
  co.fingerprint.chunk_tokens = o.chunk_tokens;
  co.max_message_bytes = std::max<uint64_t>(co.max_message_bytes, 2 * rig.chunk_bytes);
  std::optional<codec::ThreadPoolExecutor> pool;
  if (o.host_threads != 1) co.encode.executor = &pool.emplace(o.host_threads);
  progress << "bench-gpu: chunk load host tier -> paged cache over " << ((*server)->shm() ? "shared memory" : "gRPC")
           << ", host work on " << (pool ? std::to_string(pool->Concurrency()) + " threads" : "the calling thread")
           << "\n";
  for (codec::CodecId codec : {codec::CodecId::kRaw, codec::CodecId::kInt8, codec::CodecId::kCacheGen}) {
    KVTIER_RETURN_IF_ERROR(LoadChunks(o, rig, co, codec, rows, progress));
  }
  return Status::Ok();
}

}  // namespace

Status GpuBenchOptions::Validate() const {
  if (layers == 0 || kv_heads == 0 || head_dim == 0 || chunk_tokens == 0 || chunks == 0 || block_size == 0 ||
      iterations == 0) {
    return InvalidArgument("bench-gpu: every size and count must be >= 1");
  }
  if (head_dim % 2 != 0 || head_dim > 256) return InvalidArgument("bench-gpu: head_dim must be even and <= 256");
  return Status::Ok();
}

Result<GpuBenchReport> RunGpuBench(const GpuBenchOptions& options, std::ostream& progress) {
  KVTIER_RETURN_IF_ERROR(options.Validate());
  if (!gpu::GpuAvailable()) return Unavailable("bench-gpu needs a GPU: " + gpu::CachedProbe().reason);
  const gpu::DeviceInfo& d = gpu::CachedProbe().devices.front();
  GpuBenchReport report;
  report.device = d.name + " (" + Size(d.total_memory_bytes) + ", sm_" + std::to_string(d.compute_major) +
                  std::to_string(d.compute_minor) + ")";
  auto rig = MakeRig(options);
  if (!rig.ok()) return rig.status();
  Rows rows(&report.rows);
  KVTIER_RETURN_IF_ERROR(BenchLimits(options, **rig, rows, progress));
  KVTIER_RETURN_IF_ERROR(BenchPackUnpack(options, **rig, rows, progress));
  KVTIER_RETURN_IF_ERROR(BenchInt8(options, **rig, rows, progress));
  KVTIER_RETURN_IF_ERROR(BenchCachegen(options, **rig, rows, progress));
  KVTIER_RETURN_IF_ERROR(BenchGather(options, **rig, rows, progress));
  KVTIER_RETURN_IF_ERROR(BenchChunkLoad(options, **rig, rows, progress));
  return report;
}

}  // namespace kvtier::bench
