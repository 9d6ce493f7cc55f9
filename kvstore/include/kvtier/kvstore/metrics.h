// Metrics: the server's Prometheus registry and /metrics endpoint (DESIGN §9).
//
// Request counters and latency histograms are recorded by the service as requests finish; codec bytes
// as puts commit and gets send; bytes held by gets in flight as their holds come and go (one atomic
// add each, no lock). Tier and cache gauges/counters, leases and put reservations are read from
// Store::Stats() at scrape time (a Collectable), so the engine carries no Prometheus dependency and
// the numbers are never stale. kvtier_build_info carries the version and whether CUDA was built in.
// Every series is listed in README "Metrics". Thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "kvtier/api/status.h"

namespace prometheus {
class Counter;
class Exposer;
class Histogram;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace kvtier {

class Store;

enum class Op {
  kPut = 0,
  kGet,
  kLookup,
  kExists,
  kDelete,
  kStats,
  kPutProfile,
  kGetProfile,
  kLocalInfo,
  kGpuChannelOpen,  // a GpuChannel stream's open: the link joined, or why not
  kGpuChannelGet,   // one get on a GpuChannel: answered and its payloads sent over the link
  kCount
};
std::string_view OpName(Op op);

// kvtier_codec_bytes_total{direction}: "in" is payload committed by puts, "out" payload sent by gets.
enum class CodecDirection { kIn = 0, kOut, kCount };

class Metrics {
 public:
  explicit Metrics(const Store* store);
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // kvtier_requests_total{op,code} and kvtier_request_duration_seconds{op}.
  void ObserveRequest(Op op, StatusCode code, double seconds);

  // kvtier_codec_bytes_total{codec,direction}. `codec` is a codec::CodecId value; others are ignored.
  void AddCodecBytes(CodecDirection direction, uint8_t codec, uint64_t bytes);

  // kvtier_inflight_bytes{op="get"}: payload bytes a get holds while it streams them.
  void HoldGetBytes(uint64_t bytes) { inflight_get_bytes_.fetch_add(bytes, std::memory_order_relaxed); }
  void ReleaseGetBytes(uint64_t bytes) { inflight_get_bytes_.fetch_sub(bytes, std::memory_order_relaxed); }

  // kvtier_variant_selections_total{result="hit"|"miss"}: keys of variant-selecting gets.
  void CountVariantSelection(bool hit);

  // Serves /metrics on `address` ("host:port"; port 0 picks a free one). Returns the bound port.
  Result<int> Serve(const std::string& address);

  // The exposition text, as a scrape would see it (for tests and `kvtier stat`-like tools).
  std::string Render() const;

 private:
  static constexpr int kCodes = 17;
  static constexpr size_t kCodecs = 6;  // codec ids 1..6
  prometheus::Counter* RequestCounter(Op op, StatusCode code);

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* requests_;
  std::array<prometheus::Histogram*, static_cast<size_t>(Op::kCount)> durations_{};
  std::mutex counters_mu_;
  std::array<std::array<std::atomic<prometheus::Counter*>, kCodes>, static_cast<size_t>(Op::kCount)> counters_{};
  std::array<std::array<prometheus::Counter*, kCodecs>, static_cast<size_t>(CodecDirection::kCount)> codec_bytes_{};
  std::atomic<uint64_t> inflight_get_bytes_{0};
  std::array<prometheus::Counter*, 2> variant_selections_{};  // [0] miss, [1] hit
  std::shared_ptr<class StoreCollector> store_collector_;
  std::unique_ptr<prometheus::Exposer> exposer_;
};

}  // namespace kvtier
