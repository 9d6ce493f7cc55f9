// Shared by the observability tests (promtool, the Grafana dashboard, a real Prometheus server):
// a kvtier server with /metrics (and optionally an NVMe tier) driven through every codec, and the
// dashboard's PromQL: where it is, which queries it holds, which metric names a query reads.
#pragma once

#include <filesystem>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "integration/json_lite.h"
#include "integration/test_server.h"
#include "kvtier/codec/codec.h"

namespace kvtier::testing {

// KV-like fp16 values for TestFingerprint(): finite, smooth along tokens, different per seed.
std::vector<std::byte> SmoothKv(const ModelFingerprint& fp, uint32_t tokens, float seed);
// The container a client with `encode` sends for `kv` (what the server stores and counts).
std::vector<std::byte> EncodedKv(const ModelFingerprint& fp, std::span<const std::byte> kv,
                                 const codec::EncodeOptions& encode);

class ObservedServerTest : public ServerFixture {
 protected:
  // A server with /metrics on a free loopback port; with `all_tiers` also an NVMe tier in a temp dir and a
  // GPU tier on the emulated device (tests/kvstore/emulated_device_memory.h), so every family is exported.
  void StartObserved(bool all_tiers);
  void TearDown() override;

  // A client of the default namespace and fingerprint whose puts use `codec` (inline cachegen tables).
  std::unique_ptr<Client> CodecClient(codec::CodecId codec, bool server_decode = false);
  // Puts, hits, misses, server-side decodes, leases, an error and (with all tiers) demotion and promotion,
  // and a GPU copy, through every codec: every series gets a sample.
  void DriveMixedTraffic();
  // The /metrics body; fails the test unless the answer is 200.
  std::string Scrape();

  std::filesystem::path dir_;
};

struct DashboardQuery {
  std::string where;  // "panel 'Hit ratio' target A", for messages
  std::string expr;   // PromQL as stored, with Grafana variables
};

std::filesystem::path DashboardPath();
// Every PromQL the dashboard evaluates: panel targets, and the metric of label_values() variables
// (as a plain selector). Fails the test when the file does not parse.
std::vector<DashboardQuery> DashboardQueries(Json* dashboard_out = nullptr);
// Grafana's variables replaced by values Prometheus accepts ($__rate_interval -> 1m, $instance -> .*).
std::string WithVariablesResolved(std::string expr);
// Metric names a PromQL expression selects (functions, aggregations, keywords, label names in
// by/without/on/ignoring/group_* lists, strings, label matchers, ranges and numbers are skipped).
std::set<std::string> PromqlMetricNames(std::string_view expr);
// Sample names in an exposition text (histogram series as _bucket, _sum, _count).
std::set<std::string> ExposedNames(const std::string& text);

}  // namespace kvtier::testing
