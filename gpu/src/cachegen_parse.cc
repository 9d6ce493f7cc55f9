// ParseCachegenContainer (cachegen_decode.h): the codec's own container parse, pre-decode checks and table
// parsing (codec/src/cachegen_layout.h, shared with codec::Decode, hence the same refusals), then the tables
// flattened and one record per data stream.
#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "cachegen_host.h"
#include "cachegen_layout.h"
#include "container.h"
#include "kvtier/codec/model_profile.h"
#include "kvtier/gpu/cachegen_decode.h"

namespace kvtier::gpu {
namespace {

namespace ci = codec::internal;

static_assert(std::is_same_v<CachegenProfileResolver, codec::ProfileResolver>,
              "the resolver is the codec's, spelled out in the public header");

CachegenTable FlatTable(const ci::FreqTable& table, const ci::TableInfo& info) {
  CachegenTable t;
  std::memcpy(t.cum, table.cum, sizeof(t.cum));
  t.lo = info.lo;
  t.width = info.width;
  t.escape = info.escape;
  t.esc_bits = info.esc_bits;
  return t;
}

uint32_t Kinds(const ci::CacheGenLayout& layout) { return layout.anchor_delta ? 2 : 1; }

// The tables of the row kinds the chunk uses, [slice][kind][channel]: the inline streams' or the profile
// level's (which holds both kinds whatever the chunk uses).
Status FlattenTables(const ci::CacheGenLayout& layout, std::vector<CachegenTable>& tables) {
  const uint64_t count = uint64_t{layout.geometry.slices()} * Kinds(layout) * layout.geometry.width;
  if (count > std::numeric_limits<uint32_t>::max()) {
    return InvalidArgument("cachegen chunk needs " + std::to_string(count) + " decode tables, more than 2^32");
  }
  tables.reserve(count);
  for (uint32_t lk = 0; lk < layout.geometry.slices(); ++lk) {
    const ci::SliceTables& slice = layout.slice(lk);
    for (size_t i = 0; i < size_t{Kinds(layout)} * layout.geometry.width; ++i) {
      tables.push_back(FlatTable(slice.tables[i], slice.info[i]));
    }
  }
  return Status::Ok();
}

// codec::Decode decodes every data stream and reports the lowest one that fails. When the checks below
// refuse stream j, a stream before it that passed them but does not decode is therefore the answer: the
// records so far are decoded (into scratch) to find it. Only refused containers pay for this.
Status LowestFailure(const CachegenPlan& partial, Status refusal) {
  std::vector<std::byte> scratch(partial.shape.Bytes());
  const detail::CachegenChunkView view = detail::CachegenView(partial, partial.shape.dtype, partial.body.data(),
                                                              partial.streams.data(), partial.Tables().data(),
                                                              scratch.data());
  std::vector<float> anchor(view.width);
  for (uint32_t i = 0; i < view.num_streams; ++i) {
    const uint32_t code = detail::DecodeCachegenStream(view, i, anchor.data());
    if (code != detail::kCachegenStreamOk) return detail::CachegenStreamStatus(partial, i, code);
  }
  return refusal;
}

// One record per data stream, after the codec's checks of its checksum, length, row scales and coder states.
Status AddStreams(const ci::ParsedContainer& pc, const ci::CacheGenLayout& layout, CachegenPlan& plan) {
  const uint64_t body_start = pc.offsets[layout.first_data];
  const uint32_t w = layout.geometry.width;
  std::vector<float> scales(layout.geometry.tokens_per_stream);
  plan.streams.reserve(layout.num_data_streams());
  plan.body = pc.body.subspan(body_start);
  for (size_t i = 0; i < layout.num_data_streams(); ++i) {
    const uint32_t index = static_cast<uint32_t>(layout.first_data + i);
    Result<std::span<const std::byte>> bytes = ci::StreamBytes(pc, index);
    if (!bytes.ok()) return LowestFailure(plan, bytes.status());
    CachegenStream s{};
    s.offset = pc.offsets[index] - body_start;
    s.length = bytes->size();
    s.index = index;
    s.slice = layout.StreamSlice(i);
    s.first_token = layout.StreamFirstToken(i);
    s.num_tokens = layout.StreamEndToken(i) - s.first_token;
    s.plain_tables = s.slice * Kinds(layout) * w;
    s.delta_tables = s.plain_tables + (Kinds(layout) - 1) * w;
    s.bins = layout.slice(s.slice).bins;
    ci::RansDecoder coder;
    if (Status st = ci::OpenDataStream(*bytes, index, s.num_tokens, scales.data(), coder); !st.ok()) {
      return LowestFailure(plan, st);
    }
    plan.streams.push_back(s);
  }
  return Status::Ok();
}

}  // namespace

Result<CachegenTableCache::Tables> CachegenTableCache::Get(
    const Key& key, const std::function<Status(std::vector<CachegenTable>&)>& build) {
  std::lock_guard lock(mu_);
  for (auto it = sets_.begin(); it != sets_.end(); ++it) {
    if (it->first == key) {
      std::rotate(it, it + 1, sets_.end());  // most recently used last
      return sets_.back().second;
    }
  }
  // Built under the lock: a second parse of the same profile waits for this one instead of building its own.
  auto tables = std::make_shared<std::vector<CachegenTable>>();
  KVTIER_RETURN_IF_ERROR(build(*tables));
  if (max_sets_ == 0) return Tables(std::move(tables));
  if (sets_.size() >= max_sets_) sets_.erase(sets_.begin());
  sets_.emplace_back(key, std::move(tables));
  return sets_.back().second;
}

size_t CachegenTableCache::size() const {
  std::lock_guard lock(mu_);
  return sets_.size();
}

Result<CachegenPlan> ParseCachegenContainer(std::span<const std::byte> encoded,
                                            const CachegenProfileResolver& profiles,
                                            CachegenTableCache* table_cache) {
  Result<ci::ParsedContainer> pc = ci::ParseContainer(encoded);  // codec/FORMAT.md checks 1-5
  if (!pc.ok()) return pc.status();
  const codec::ContainerInfo& info = pc->info;
  if (info.codec != codec::CodecId::kCacheGen) {
    return InvalidArgument("container holds codec " + std::string(codec::CodecName(info.codec)) + ", not cachegen");
  }
  codec::DecodeOptions options;
  options.profiles = profiles;
  Result<ci::CacheGenLayout> layout = ci::PrepareCacheGenDecode(*pc, info.shape.RawBytes(), options);
  if (!layout.ok()) return layout.status();
  const codec::KvShape& k = info.shape;
  CachegenPlan plan;
  plan.shape = ChunkShape{k.num_layers, k.num_tokens, k.num_kv_heads, k.head_dim, k.dtype};
  plan.level = layout->level;
  plan.anchor_delta = layout->anchor_delta;
  plan.tokens_per_stream = layout->geometry.tokens_per_stream;
  plan.profile_id = info.profile_id;
  if (table_cache != nullptr && info.profile_id != 0) {
    const CachegenTableCache::Key key{info.profile_id, layout->level, layout->anchor_delta};
    auto shared = table_cache->Get(key, [&](std::vector<CachegenTable>& t) { return FlattenTables(*layout, t); });
    if (!shared.ok()) return shared.status();
    plan.profile_tables = std::move(shared).value();
  } else {
    KVTIER_RETURN_IF_ERROR(FlattenTables(*layout, plan.tables));
  }
  KVTIER_RETURN_IF_ERROR(AddStreams(*pc, *layout, plan));
  return plan;
}

}  // namespace kvtier::gpu
