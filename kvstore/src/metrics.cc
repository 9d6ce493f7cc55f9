#include "kvtier/kvstore/metrics.h"

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <exception>

#include "kvtier/codec/codec.h"
#include "kvtier/kvstore/store.h"

namespace kvtier {

std::string_view OpName(Op op) {
  switch (op) {
    case Op::kPut: return "put";
    case Op::kGet: return "get";
    case Op::kLookup: return "lookup";
    case Op::kExists: return "exists";
    case Op::kDelete: return "delete";
    case Op::kStats: return "stats";
    case Op::kPutProfile: return "put_profile";
    case Op::kGetProfile: return "get_profile";
    case Op::kLocalInfo: return "local_info";
    case Op::kGpuChannelOpen: return "gpu_channel_open";
    case Op::kGpuChannelGet: return "gpu_channel_get";
    case Op::kCount: break;
  }
  return "unknown";
}

namespace {

using prometheus::MetricType;
// Samples of one family: (label name, label value) -> value; an empty label name means no label.
using Samples = std::vector<std::pair<std::pair<std::string, std::string>, double>>;

void AddFamily(std::vector<prometheus::MetricFamily>* out, const char* name, const char* help, MetricType type,
               const Samples& samples) {
  prometheus::MetricFamily f{name, help, type, {}};
  for (const auto& [label, value] : samples) {
    prometheus::ClientMetric m;
    if (!label.first.empty()) m.label.push_back({label.first, label.second});
    if (type == MetricType::Counter) m.counter.value = value;
    else m.gauge.value = value;
    f.metric.push_back(std::move(m));
  }
  out->push_back(std::move(f));
}

double D(uint64_t v) { return static_cast<double>(v); }

}  // namespace

// Turns a Store::Stats() snapshot into metric families at scrape time.
class StoreCollector final : public prometheus::Collectable {
 public:
  StoreCollector(const Store* store, const std::atomic<uint64_t>* inflight_get_bytes)
      : store_(store), inflight_get_bytes_(inflight_get_bytes) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    const StoreStats stats = store_->Stats();
    std::vector<prometheus::MetricFamily> out;
    auto per_tier = [&](const char* name, const char* help, prometheus::MetricType type, auto field) {
      prometheus::MetricFamily family{name, help, type, {}};
      for (const TierSnapshot& t : stats.tiers) {
        prometheus::ClientMetric m;
        m.label.push_back({"tier", std::string(TierName(t.kind))});
        const double value = static_cast<double>(t.*field);
        if (type == prometheus::MetricType::Counter) m.counter.value = value;
        else m.gauge.value = value;
        family.metric.push_back(std::move(m));
      }
      out.push_back(std::move(family));
    };
    auto single = [&](const char* name, const char* help, prometheus::MetricType type, double value) {
      prometheus::ClientMetric m;
      if (type == prometheus::MetricType::Counter) m.counter.value = value;
      else m.gauge.value = value;
      out.push_back(prometheus::MetricFamily{name, help, type, {std::move(m)}});
    };
    per_tier("kvtier_tier_bytes", "Bytes allocated to chunks in the tier.", MetricType::Gauge,
             &TierSnapshot::used_bytes);
    per_tier("kvtier_tier_chunks", "Chunks stored in the tier.", MetricType::Gauge, &TierSnapshot::chunks);
    per_tier("kvtier_tier_capacity_bytes", "Capacity of the tier in bytes.", MetricType::Gauge,
             &TierSnapshot::capacity_bytes);
    per_tier("kvtier_tier_pinned_chunks", "Pinned (never evicted) chunks in the tier.", MetricType::Gauge,
             &TierSnapshot::pinned_chunks);
    per_tier("kvtier_hits_total", "Chunk reads served from the tier.", MetricType::Counter, &TierSnapshot::hits);
    per_tier("kvtier_evictions_total", "Chunks evicted from the tier.", MetricType::Counter,
             &TierSnapshot::evictions);
    single("kvtier_misses_total", "Chunk reads that found no usable chunk.", MetricType::Counter,
           static_cast<double>(stats.misses));
    single("kvtier_checksum_failures_total", "Stored chunks whose checksum did not verify on read.",
           MetricType::Counter, static_cast<double>(stats.checksum_failures));
    single("kvtier_token_mismatches_total", "Reads whose expected token ids differed from the stored ones.",
           MetricType::Counter, static_cast<double>(stats.token_mismatches));
    single("kvtier_namespaces", "Namespaces known to the server.", MetricType::Gauge,
           static_cast<double>(stats.namespaces));
    single("kvtier_variants", "Indexed variants of content-mode chunks.", MetricType::Gauge,
           static_cast<double>(stats.variants));
    single("kvtier_leases_held", "Chunks whose lease (from a Lookup with lease_ttl_ms) has not expired.",
           MetricType::Gauge, static_cast<double>(stats.leases_held));
    prometheus::MetricFamily inflight{
        "kvtier_inflight_bytes",
        "Bytes held by requests in flight: host bytes reserved by uncommitted puts, payload bytes held by "
        "streaming gets.",
        MetricType::Gauge,
        {}};
    for (const auto& [op, value] :
         {std::pair{"put", stats.inflight_put_bytes}, {"get", inflight_get_bytes_->load(std::memory_order_relaxed)}}) {
      prometheus::ClientMetric m;
      m.label.push_back({"op", op});
      m.gauge.value = static_cast<double>(value);
      inflight.metric.push_back(std::move(m));
    }
    out.push_back(std::move(inflight));
    single("kvtier_host_registered_bytes",
           "Host arena bytes registered with CUDA as pinned memory (0: pageable, e.g. no GPU).", MetricType::Gauge,
           static_cast<double>(stats.gpu.host_registered_bytes));
    CollectMovement(stats, &out);
    if (stats.disk.enabled) CollectDisk(stats.disk, &out);
    if (stats.gpu.enabled) CollectGpu(stats.gpu, &out);
    return out;
  }

 private:
  // Chunks moved between DRAM and the other tiers, labelled with that other tier.
  static void CollectMovement(const StoreStats& stats, std::vector<prometheus::MetricFamily>* out) {
    Samples promotions, demotions;
    if (stats.disk.enabled) {
      promotions.push_back({{"tier", "nvme"}, D(stats.disk.promotions)});
      demotions.push_back({{"tier", "nvme"}, D(stats.disk.demotions)});
    }
    if (stats.gpu.enabled) {
      promotions.push_back({{"tier", "gpu"}, D(stats.gpu.promotions)});
      demotions.push_back({{"tier", "gpu"}, D(stats.gpu.demotions)});
    }
    if (promotions.empty()) return;
    AddFamily(out, "kvtier_promotions_total",
              "Chunks copied back into host DRAM for a read, by the tier they were read from.", MetricType::Counter,
              promotions);
    AddFamily(out, "kvtier_demotions_total",
              "Chunks moved down: written from host DRAM to the NVMe tier (tier=nvme), or moved from the GPU "
              "tier into host DRAM to make room there (tier=gpu).",
              MetricType::Counter, demotions);
  }

  static void CollectGpu(const GpuStats& g, std::vector<prometheus::MetricFamily>* out) {
    AddFamily(out, "kvtier_gpu_copy_bytes_total", "Bytes copied from (read) and to (write) the GPU tier's memory.",
              MetricType::Counter, {{{"op", "read"}, D(g.read_bytes)}, {{"op", "write"}, D(g.write_bytes)}});
    AddFamily(out, "kvtier_gpu_copy_errors_total", "Failed copies from (read) and to (write) the GPU tier's memory.",
              MetricType::Counter, {{{"op", "read"}, D(g.read_errors)}, {{"op", "write"}, D(g.write_errors)}});
    AddFamily(out, "kvtier_gpu_state",
              "1 for the GPU tier's current state: ok, or failed (disabled after copy errors).", MetricType::Gauge,
              {{{"state", "ok"}, g.failed ? 0.0 : 1.0}, {{"state", "failed"}, g.failed ? 1.0 : 0.0}});
    AddFamily(out, "kvtier_gpu_dropped_total",
              "Chunks lost from the GPU tier with no other copy: no room in host DRAM when evicted, or the tier "
              "failed.",
              MetricType::Counter, {{{"", ""}, D(g.dropped)}});
  }

  static void CollectDisk(const DiskStats& d, std::vector<prometheus::MetricFamily>* out) {
    AddFamily(out, "kvtier_disk_io_bytes_total", "Bytes read from and written to the NVMe tier's device.",
              MetricType::Counter, {{{"op", "read"}, D(d.read_bytes)}, {{"op", "write"}, D(d.write_bytes)}});
    AddFamily(out, "kvtier_disk_io_errors_total", "Failed NVMe tier reads and writes (device and index).",
              MetricType::Counter, {{{"op", "read"}, D(d.read_errors)}, {{"op", "write"}, D(d.write_errors)}});
    AddFamily(out, "kvtier_disk_regions", "NVMe tier regions by state.", MetricType::Gauge,
              {{{"state", "free"}, D(d.regions_free)},
               {{"state", "open"}, D(d.regions_open)},
               {{"state", "sealed"}, D(d.regions_sealed)}});
    AddFamily(out, "kvtier_disk_state", "1 for the NVMe tier's current state: ok, full (writes stopped) or failed.",
              MetricType::Gauge,
              {{{"state", "ok"}, d.failed || d.full ? 0.0 : 1.0},
               {{"state", "full"}, d.full && !d.failed ? 1.0 : 0.0},
               {{"state", "failed"}, d.failed ? 1.0 : 0.0}});
    AddFamily(out, "kvtier_disk_direct_io", "1 when the NVMe tier uses O_DIRECT, 0 for buffered I/O.",
              MetricType::Gauge, {{{"", ""}, d.direct_io ? 1.0 : 0.0}});
    AddFamily(out, "kvtier_admission_rejected_total", "Chunks the admission policy kept off the NVMe tier.",
              MetricType::Counter, {{{"", ""}, D(d.admission_rejected)}});
    AddFamily(out, "kvtier_disk_reinsertions_total",
              "Chunks rewritten because they were read while their region was reclaimed.", MetricType::Counter,
              {{{"", ""}, D(d.reinsertions)}});
  }

  const Store* store_;
  const std::atomic<uint64_t>* inflight_get_bytes_;
};

Metrics::Metrics(const Store* store)
    : registry_(std::make_shared<prometheus::Registry>()),
      store_collector_(std::make_shared<StoreCollector>(store, &inflight_get_bytes_)) {
  requests_ = &prometheus::BuildCounter()
                   .Name("kvtier_requests_total")
                   .Help("RPCs finished, by operation and gRPC status code.")
                   .Register(*registry_);
  auto& durations = prometheus::BuildHistogram()
                        .Name("kvtier_request_duration_seconds")
                        .Help("RPC latency from arrival to the last byte sent, by operation.")
                        .Register(*registry_);
  const prometheus::Histogram::BucketBoundaries buckets = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                           0.005,   0.01,   0.025,   0.05,   0.1,   0.25,
                                                           0.5,     1,      2.5,     5,      10};
  for (size_t i = 0; i < durations_.size(); ++i) {
    durations_[i] = &durations.Add({{"op", std::string(OpName(static_cast<Op>(i)))}}, buckets);
  }
  // Every codec and direction exists from the start, so rates and dashboards see zeros, not gaps.
  auto& codec_bytes = prometheus::BuildCounter()
                          .Name("kvtier_codec_bytes_total")
                          .Help("Chunk payload bytes by codec: in = committed by puts (a put of a key already "
                                "present is not counted), out = sent by gets, in the codec sent.")
                          .Register(*registry_);
  static_assert(std::size(codec::kAllCodecs) == kCodecs);
  for (size_t d = 0; d < codec_bytes_.size(); ++d) {
    for (codec::CodecId id : codec::kAllCodecs) {
      codec_bytes_[d][static_cast<size_t>(id) - 1] =
          &codec_bytes.Add({{"codec", std::string(codec::CodecName(id))},
                            {"direction", static_cast<CodecDirection>(d) == CodecDirection::kIn ? "in" : "out"}});
    }
  }
  auto& selections = prometheus::BuildCounter()
                         .Name("kvtier_variant_selections_total")
                         .Help("Keys of variant-selecting gets, by result: hit = a live variant was sent, "
                               "miss = the content key had none.")
                         .Register(*registry_);
  variant_selections_[0] = &selections.Add({{"result", "miss"}});
  variant_selections_[1] = &selections.Add({{"result", "hit"}});
#ifdef KVTIER_HAVE_CUDA
  const char* cuda = "on";
#else
  const char* cuda = "off";
#endif
  prometheus::BuildGauge()
      .Name("kvtier_build_info")
      .Help("Always 1; the labels say which kvtier version is running and whether it was built with CUDA.")
      .Register(*registry_)
      .Add({{"version", KVTIER_VERSION}, {"cuda", cuda}})
      .Set(1);
}

Metrics::~Metrics() = default;

prometheus::Counter* Metrics::RequestCounter(Op op, StatusCode code) {
  const int c = static_cast<int>(code);
  auto& slot = counters_[static_cast<size_t>(op)][c >= 0 && c < kCodes ? c : 2];
  prometheus::Counter* counter = slot.load(std::memory_order_acquire);
  if (counter != nullptr) return counter;
  std::lock_guard lock(counters_mu_);
  counter = slot.load(std::memory_order_relaxed);
  if (counter == nullptr) {
    counter = &requests_->Add({{"op", std::string(OpName(op))}, {"code", std::string(StatusCodeName(code))}});
    slot.store(counter, std::memory_order_release);
  }
  return counter;
}

void Metrics::ObserveRequest(Op op, StatusCode code, double seconds) {
  RequestCounter(op, code)->Increment();
  durations_[static_cast<size_t>(op)]->Observe(seconds);
}

void Metrics::AddCodecBytes(CodecDirection direction, uint8_t codec, uint64_t bytes) {
  if (codec < 1 || codec > kCodecs) return;
  codec_bytes_[static_cast<size_t>(direction)][codec - 1]->Increment(static_cast<double>(bytes));
}

void Metrics::CountVariantSelection(bool hit) { variant_selections_[hit ? 1 : 0]->Increment(); }

Result<int> Metrics::Serve(const std::string& address) {
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(address, 1);
  } catch (const std::exception& e) {
    return Unavailable("cannot serve metrics on " + address + ": " + e.what());
  }
  exposer_->RegisterCollectable(registry_);
  exposer_->RegisterCollectable(store_collector_);
  const auto ports = exposer_->GetListeningPorts();
  if (ports.empty()) return Unavailable("metrics exposer on " + address + " bound no port");
  return ports.front();
}

std::string Metrics::Render() const {
  auto families = registry_->Collect();
  auto store_families = store_collector_->Collect();
  families.insert(families.end(), store_families.begin(), store_families.end());
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace kvtier
