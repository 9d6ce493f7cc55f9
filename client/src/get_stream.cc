#include "get_stream.h"

#include <cstring>

#include "kvtier/api/convert.h"

namespace kvtier {
namespace {

// Walks the bytes of a ByteBuffer across its slices.
class SliceReader {
 public:
  explicit SliceReader(const grpc::ByteBuffer& buffer) { ok_ = buffer.Dump(&slices_).ok(); }

  bool ok() const { return ok_; }
  bool done() const { return slice_ == slices_.size(); }

  bool Varint(uint64_t* out) {
    *out = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      uint8_t b;
      if (!Byte(&b)) return false;
      *out |= uint64_t{b & 0x7fu} << shift;
      if ((b & 0x80) == 0) return true;
    }
    return false;
  }

  // Copies n bytes to dst (nullptr: skip them).
  bool Copy(std::byte* dst, uint64_t n) {
    while (n > 0) {
      if (done()) return false;
      const grpc::Slice& s = slices_[slice_];
      const uint64_t take = std::min<uint64_t>(n, s.size() - offset_);
      if (dst != nullptr) {
        std::memcpy(dst, s.begin() + offset_, take);
        dst += take;
      }
      Advance(take);
      n -= take;
    }
    return true;
  }

 private:
  bool Byte(uint8_t* b) {
    if (done()) return false;
    *b = slices_[slice_].begin()[offset_];
    Advance(1);
    return true;
  }
  void Advance(uint64_t n) {
    offset_ += n;
    while (slice_ < slices_.size() && offset_ == slices_[slice_].size()) {
      ++slice_;
      offset_ = 0;
    }
  }

  std::vector<grpc::Slice> slices_;
  size_t slice_ = 0;
  uint64_t offset_ = 0;
  bool ok_ = false;
};

struct Progress {
  size_t next = 0;              // index the next header must carry
  size_t current = SIZE_MAX;    // chunk whose data is arriving
  uint64_t expected = 0;
  uint64_t received = 0;
  bool encoded = false;         // arriving into EncodedScratch(), decoded into the destination at the end
  ChecksumStream hash;
};

// Receive buffer for encoded chunks; its capacity is reused by every get of this thread.
std::vector<std::byte>& EncodedScratch() {
  thread_local std::vector<std::byte> scratch;
  return scratch;
}


Status FinishChunk(const ClientOptions& o, Progress& p, std::span<const ChunkKey> keys, std::vector<GetResult>& results,
                   std::vector<uint64_t>& checksums, std::span<const std::span<std::byte>> dests,
                   const codec::DecodeOptions* decode) {
  if (p.current == SIZE_MAX || !results[p.current].found) return Status::Ok();
  if (p.received != p.expected) return Internal("chunk " + keys[p.current].ToHex() + " ended early");
  if (o.verify_checksum && p.hash.Digest() != checksums[p.current]) {
    return DataLoss("chunk " + keys[p.current].ToHex() + " arrived corrupted (checksum mismatch)");
  }
  if (!p.encoded) return Status::Ok();
  p.encoded = false;
  return DecodeInto({EncodedScratch().data(), p.received}, dests[p.current], keys[p.current], *decode,
                    results[p.current]);
}

}  // namespace

Status DecodeInto(std::span<const std::byte> encoded, std::span<std::byte> dest, const ChunkKey& key,
                  const codec::DecodeOptions& decode, GetResult& result) {
  auto info = codec::Inspect(encoded);
  if (!info.ok()) return DataLoss("chunk " + key.ToHex() + " is not a valid container: " + info.status().message());
  const uint64_t raw = info->shape.RawBytes();
  if (raw > dest.size()) {
    return InvalidArgument("destination of " + std::to_string(dest.size()) + " bytes is smaller than chunk " +
                           key.ToHex() + " of " + std::to_string(raw) + " bytes (decoded)");
  }
  Status s = codec::Decode(encoded, dest.first(raw), decode);
  if (!s.ok()) return Status(s.code(), "chunk " + key.ToHex() + ": " + s.message());
  result.bytes = raw;
  return Status::Ok();
}

Result<std::vector<GetResult>> RunGetStream(grpc::Channel* channel, const grpc::internal::RpcMethod& method,
                                            const ClientOptions& o, const v1::GetRequest& request,
                                            std::span<const ChunkKey> keys, std::span<const std::span<std::byte>> dests,
                                            const codec::DecodeOptions* decode,
                                            std::vector<v1::ChunkHeader>* headers) {
  grpc::ClientContext ctx;
  if (headers != nullptr) headers->assign(keys.size(), v1::ChunkHeader());
  PrepareContext(o, &ctx);
  std::unique_ptr<grpc::ClientReader<RawGetMessage>> reader(
      grpc::internal::ClientReaderFactory<RawGetMessage>::Create(channel, method, &ctx, request));
  std::vector<GetResult> results(keys.size());
  std::vector<uint64_t> checksums(keys.size(), 0);
  Progress p;
  Status error;
  RawGetMessage msg;
  std::string header_bytes;
  while (error.ok() && reader->Read(&msg)) {
    SliceReader in(msg.buffer);
    if (!in.ok()) {
      error = Internal("cannot read a get response");
      break;
    }
    while (error.ok() && !in.done()) {
      uint64_t tag = 0, length = 0;
      if (!in.Varint(&tag) || (tag & 7) != 2 || !in.Varint(&length)) {
        error = Internal("malformed get response");
        break;
      }
      if (tag == 0x0a) {  // ChunkHeader
        header_bytes.resize(length);
        v1::ChunkHeader h;
        if (!in.Copy(reinterpret_cast<std::byte*>(header_bytes.data()), length) || !h.ParseFromString(header_bytes)) {
          error = Internal("malformed chunk header");
          break;
        }
        error = FinishChunk(o, p, keys, results, checksums, dests, decode);
        if (!error.ok()) break;
        if (h.index() != p.next || p.next >= keys.size()) {
          error = Internal("server answered keys out of order");
          break;
        }
        p.current = p.next++;
        GetResult& r = results[p.current];
        r.found = h.found();
        if (!r.found) continue;
        p.expected = h.payload_bytes();
        p.received = 0;
        p.encoded = h.codec() != v1::CODEC_RAW && decode != nullptr;
        if (decode == nullptr) r.codec = static_cast<uint8_t>(h.codec());
        checksums[p.current] = h.checksum();
        p.hash.Reset();
        r.num_tokens = static_cast<uint32_t>(h.token_ids_size());
        r.base_position = h.base_position();
        r.tier = static_cast<uint8_t>(h.tier());
        if (headers != nullptr) (*headers)[p.current] = std::move(h);
        if (p.encoded && p.expected > 2 * dests[p.current].size() + (1u << 20)) {
          // No codec output is this much larger than its raw form: refuse before allocating for it.
          error = InvalidArgument("encoded chunk " + keys[p.current].ToHex() + " of " + std::to_string(p.expected) +
                                  " bytes cannot fit a destination of " + std::to_string(dests[p.current].size()) +
                                  " bytes");
        } else if (p.encoded) {
          EncodedScratch().resize(std::max<size_t>(EncodedScratch().size(), p.expected));
        } else if (p.expected > dests[p.current].size()) {
          error = InvalidArgument("destination of " + std::to_string(dests[p.current].size()) +
                                  " bytes is smaller than chunk " + keys[p.current].ToHex() + " of " +
                                  std::to_string(p.expected) + " bytes");
        }
      } else if (tag == 0x12) {  // data
        if (p.current == SIZE_MAX || !results[p.current].found || length > p.expected - p.received) {
          error = Internal("server sent more data than the chunk header announced");
          break;
        }
        std::byte* dst = (p.encoded ? EncodedScratch().data() : dests[p.current].data()) + p.received;
        if (!in.Copy(dst, length)) {
          error = Internal("truncated data frame");
          break;
        }
        if (o.verify_checksum) p.hash.Update({dst, length});
        p.received += length;
        if (!p.encoded) results[p.current].bytes += length;
      } else if (!in.Copy(nullptr, length)) {  // a field this client does not know
        error = Internal("truncated get response");
      }
    }
  }
  if (error.ok()) error = FinishChunk(o, p, keys, results, checksums, dests, decode);
  if (!error.ok()) {
    ctx.TryCancel();
    reader->Finish();
    return error;
  }
  const grpc::Status status = reader->Finish();
  if (!status.ok()) return FromGrpc(status);
  if (p.next != keys.size()) {
    return Internal("server answered " + std::to_string(p.next) + " of " + std::to_string(keys.size()) + " keys");
  }
  return results;
}

}  // namespace kvtier
