// Metrics: the server's Prometheus registry and /metrics endpoint (DESIGN §9).
//
// Request counters and latency histograms are recorded by the service as requests finish. Tier and
// cache gauges/counters are read from Store::Stats() at scrape time (a Collectable), so the engine
// carries no Prometheus dependency and the numbers are never stale. Thread-safe.
#pragma once

#include <array>
#include <atomic>
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

enum class Op { kPut = 0, kGet, kLookup, kExists, kDelete, kStats, kPutProfile, kGetProfile, kCount };
std::string_view OpName(Op op);

class Metrics {
 public:
  explicit Metrics(const Store* store);
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // kvtier_requests_total{op,code} and kvtier_request_duration_seconds{op}.
  void ObserveRequest(Op op, StatusCode code, double seconds);

  // Serves /metrics on `address` ("host:port"; port 0 picks a free one). Returns the bound port.
  Result<int> Serve(const std::string& address);

  // The exposition text, as a scrape would see it (for tests and `kvtier stat`-like tools).
  std::string Render() const;

 private:
  static constexpr int kCodes = 17;
  prometheus::Counter* RequestCounter(Op op, StatusCode code);

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* requests_;
  std::array<prometheus::Histogram*, static_cast<size_t>(Op::kCount)> durations_{};
  std::mutex counters_mu_;
  std::array<std::array<std::atomic<prometheus::Counter*>, kCodes>, static_cast<size_t>(Op::kCount)> counters_{};
  std::shared_ptr<class StoreCollector> store_collector_;
  std::unique_ptr<prometheus::Exposer> exposer_;
};

}  // namespace kvtier
