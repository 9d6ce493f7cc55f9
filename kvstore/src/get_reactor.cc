#include "get_reactor.h"

#include <atomic>

#include "kvtier/api/convert.h"
#include "kvtier/kvstore/log.h"
#include "kvtier/v1/kvtier.pb.h"

namespace kvtier {
namespace {

// Wire form of GetResponse.data: field 2, length-delimited (tag 0x12), then a varint length.
grpc::Slice DataPrefix(uint64_t length) {
  uint8_t bytes[11];
  size_t n = 0;
  bytes[n++] = 0x12;
  do {
    uint8_t b = length & 0x7f;
    length >>= 7;
    bytes[n++] = static_cast<uint8_t>(b | (length ? 0x80 : 0));
  } while (length != 0);
  return grpc::Slice(bytes, n);
}

}  // namespace

struct GetReactor::SharedHold {
  ChunkRef ref;
  std::vector<std::byte> decoded;      // the raw form when the client asked for it
  std::span<const std::byte> payload;  // what is sent: ref.payload() or decoded
  uint8_t codec = 0;
  uint64_t checksum = 0;
  Metrics* metrics = nullptr;   // payload.size() is counted in kvtier_inflight_bytes{op="get"} while set
  std::atomic<int> holders{1};  // the reactor, plus one per slice gRPC still holds

  static void Release(void* p) {
    auto* hold = static_cast<SharedHold*>(p);
    if (hold->holders.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    if (hold->metrics != nullptr) hold->metrics->ReleaseGetBytes(hold->payload.size());
    delete hold;
  }
};

void GetReactor::Start(std::vector<ChunkRef> refs, codec::ProfileResolver decode_profiles,
                       std::vector<v1::ChunkHeader> extras) {
  refs_ = std::move(refs);
  extras_ = std::move(extras);
  decode_profiles_ = std::move(decode_profiles);
  WriteNext();
}

void GetReactor::Fail(const Status& status) { Done(status); }

void GetReactor::Done(const Status& status) {
  code_ = status.code();
  Finish(ToGrpc(status));
}

void GetReactor::OnWriteDone(bool ok) {
  if (!ok) {
    Done(Cancelled("client went away during get"));
    return;
  }
  WriteNext();
}

void GetReactor::OnDone() {
  if (hold_ != nullptr) SharedHold::Release(hold_);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  if (metrics_ != nullptr) metrics_->ObserveRequest(Op::kGet, code_, seconds);
  delete this;
}

GetReactor::SharedHold* GetReactor::Hold(ChunkRef& ref) {
  auto* hold = new SharedHold;
  hold->ref = std::move(ref);
  const ChunkEntry& e = hold->ref.entry();
  hold->payload = hold->ref.payload();
  hold->codec = e.codec;
  hold->checksum = e.checksum;
  if (!decode_profiles_ || e.codec == static_cast<uint8_t>(codec::CodecId::kRaw)) return hold;
  auto info = codec::Inspect(hold->payload);
  Status status = info.status();
  if (status.ok()) {
    // Not the zero-copy path: raw for a client without the codec costs a decode and a buffer.
    hold->decoded.resize(info->shape.RawBytes());
    status = codec::Decode(hold->payload, hold->decoded, {decode_profiles_, nullptr});
  }
  if (!status.ok()) {
    KVTIER_LOG(kWarning) << "get: cannot decode chunk " << e.key.ToHex() << " to raw: " << status.message();
    SharedHold::Release(hold);
    return nullptr;
  }
  hold->payload = hold->decoded;
  hold->codec = static_cast<uint8_t>(codec::CodecId::kRaw);
  hold->checksum = Checksum64(hold->decoded);
  return hold;
}

GetReactor::SharedHold* GetReactor::Counted(SharedHold* hold) {
  if (hold != nullptr && metrics_ != nullptr) {
    hold->metrics = metrics_;
    metrics_->HoldGetBytes(hold->payload.size());
  }
  return hold;
}

void GetReactor::WriteHeader(ChunkRef& ref) {
  v1::GetResponse msg;
  v1::ChunkHeader* h = msg.mutable_header();
  h->set_index(static_cast<uint32_t>(index_));
  hold_ = ref ? Counted(Hold(ref)) : nullptr;
  h->set_found(hold_ != nullptr);
  if (hold_ != nullptr) {
    if (index_ < extras_.size()) h->MergeFrom(extras_[index_]);
    const ChunkEntry& e = hold_->ref.entry();
    h->set_tier(static_cast<v1::Tier>(TierKind::kHost));
    h->mutable_token_ids()->Add(hold_->ref.token_ids().begin(), hold_->ref.token_ids().end());
    h->set_codec(static_cast<v1::Codec>(hold_->codec));
    h->set_payload_bytes(hold_->payload.size());
    h->set_checksum(hold_->checksum);
    h->set_base_position(e.base_position);
    offset_ = 0;
    header_sent_ = true;
  } else {
    ++index_;  // a miss is its header alone
  }
  grpc::Slice slice(msg.SerializeAsString());
  buffer_ = grpc::ByteBuffer(&slice, 1);
  StartWrite(&buffer_);
}

void GetReactor::WriteNext() {
  if (index_ == refs_.size()) {
    Done(Status::Ok());
    return;
  }
  if (!header_sent_) {
    WriteHeader(refs_[index_]);
    return;
  }
  const std::span<const std::byte> payload = hold_->payload;
  const uint64_t n = std::min<uint64_t>(frame_bytes_, payload.size() - offset_);
  hold_->holders.fetch_add(1, std::memory_order_relaxed);
  grpc::Slice slices[2] = {DataPrefix(n),
                           grpc::Slice(const_cast<std::byte*>(payload.data() + offset_), n, &SharedHold::Release, hold_)};
  buffer_ = grpc::ByteBuffer(slices, 2);
  offset_ += n;
  if (offset_ == payload.size()) {
    if (metrics_ != nullptr) metrics_->AddCodecBytes(CodecDirection::kOut, hold_->codec, payload.size());
    SharedHold::Release(hold_);  // the slices keep it alive until gRPC is done with them
    hold_ = nullptr;
    header_sent_ = false;
    ++index_;
  }
  StartWrite(&buffer_);
}

}  // namespace kvtier
