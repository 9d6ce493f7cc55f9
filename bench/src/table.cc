// The throughput benchmark's report: the side-by-side table, the lookup table and the JSON line.
#include <iomanip>
#include <optional>
#include <sstream>

#include "bench_common.h"

namespace kvtier::bench {
namespace {

// The row of `target` in the same cell as `like`; memcpy rows have one client and match any client count.
const BenchRow* Find(const std::vector<BenchRow>& rows, const std::string& target, const BenchRow& like) {
  for (const BenchRow& r : rows) {
    if (r.target == target && r.op == like.op && r.chunk_bytes == like.chunk_bytes &&
        (r.clients == like.clients || target == "memcpy")) {
      return &r;
    }
  }
  return nullptr;
}

// a / b when both rows exist and b measured something; nullopt otherwise.
std::optional<double> Ratio(const BenchRow* a, const BenchRow* b) {
  if (a == nullptr || b == nullptr || b->gbps <= 0) return std::nullopt;
  return a->gbps / b->gbps;
}

std::string Fixed(std::optional<double> v, int precision = 2) {
  if (!v) return "-";
  std::ostringstream s;
  s << std::fixed << std::setprecision(precision) << *v;
  return s.str();
}

std::string Gbps(const BenchRow* r) { return r ? Fixed(r->gbps) : "-"; }

std::string Latency(const BenchRow* r) {
  if (r == nullptr) return "-";
  std::ostringstream s;
  s << std::fixed << std::setprecision(0) << r->p50_us << "/" << r->p99_us;
  return s.str();
}

bool IsLookup(const BenchRow& r) { return r.op == "lookup"; }

void PrintLookupTable(const std::vector<BenchRow>& rows, std::ostream& out) {
  out << "\n" << std::left << std::setw(8) << "op" << std::setw(9) << "clients" << std::right << std::setw(9)
      << "calls" << std::setw(11) << "keys/call" << std::setw(13) << "keys/s" << std::setw(14) << "keys/s/core"
      << std::setw(16) << "p50/p99 us" << "\n";
  for (const BenchRow& r : rows) {
    if (!IsLookup(r)) continue;
    out << std::left << std::setw(8) << r.op << std::setw(9) << r.clients << std::right << std::setw(9) << r.ops
        << std::setw(11) << r.keys_per_call << std::setw(13) << Fixed(r.keys_per_s, 0) << std::setw(14)
        << (r.keys_per_s_per_core > 0 ? Fixed(r.keys_per_s_per_core, 0) : "-") << std::setw(16) << Latency(&r)
        << "\n";
  }
}

void JsonRow(const BenchRow& r, std::ostream& out) {
  out << "{\"target\":\"" << r.target << "\",\"op\":\"" << r.op << "\",\"chunk_bytes\":" << r.chunk_bytes
      << ",\"clients\":" << r.clients << ",\"ops\":" << r.ops << ",\"seconds\":" << r.seconds;
  if (IsLookup(r)) {
    out << ",\"keys_per_call\":" << r.keys_per_call << ",\"keys_per_s\":" << r.keys_per_s;
    if (r.keys_per_s_per_core > 0) out << ",\"keys_per_s_per_core\":" << r.keys_per_s_per_core;
  } else {
    out << ",\"gbps\":" << r.gbps;
  }
  out << ",\"p50_us\":" << r.p50_us << ",\"p99_us\":" << r.p99_us << "}";
}

// One "ratios" entry for the cell of kvtier row `k`; false when no ratio is available.
bool JsonRatios(const std::vector<BenchRow>& rows, const BenchRow& k, std::ostream& out) {
  const BenchRow* redis = Find(rows, "redis", k);
  const BenchRow* shm = Find(rows, "kvtier-shm", k);
  const std::optional<double> gbps = Ratio(&k, redis);
  const std::optional<double> shm_gbps = Ratio(shm, redis);
  const std::optional<double> shm_memcpy = Ratio(shm, Find(rows, "memcpy", k));
  if (!gbps && !shm_gbps && !shm_memcpy) return false;
  out << "{\"op\":\"" << k.op << "\",\"chunk_bytes\":" << k.chunk_bytes << ",\"clients\":" << k.clients;
  if (gbps && redis->p99_us > 0) out << ",\"gbps_ratio\":" << *gbps << ",\"p99_ratio\":" << k.p99_us / redis->p99_us;
  if (shm_gbps) out << ",\"shm_gbps_ratio\":" << *shm_gbps;
  if (shm_memcpy) out << ",\"shm_memcpy_ratio\":" << *shm_memcpy;
  out << "}";
  return true;
}

}  // namespace

void PrintTable(const std::vector<BenchRow>& rows, std::ostream& out) {
  out << std::left << std::setw(5) << "op" << std::setw(9) << "chunk" << std::setw(9) << "clients" << std::right
      << std::setw(13) << "kvtier GB/s" << std::setw(10) << "shm GB/s" << std::setw(12) << "redis GB/s"
      << std::setw(13) << "memcpy GB/s" << std::setw(10) << "kv/redis" << std::setw(11) << "shm/redis"
      << std::setw(12) << "shm/memcpy" << std::setw(20) << "kvtier p50/p99 us" << std::setw(17) << "shm p50/p99 us"
      << std::setw(19) << "redis p50/p99 us" << "\n";
  for (const BenchRow& k : rows) {
    if (k.target != "kvtier" || IsLookup(k)) continue;
    const BenchRow* shm = Find(rows, "kvtier-shm", k);
    const BenchRow* redis = Find(rows, "redis", k);
    const BenchRow* copy = Find(rows, "memcpy", k);
    out << std::left << std::setw(5) << k.op << std::setw(9) << Size(k.chunk_bytes) << std::setw(9) << k.clients
        << std::right << std::setw(13) << Gbps(&k) << std::setw(10) << Gbps(shm) << std::setw(12) << Gbps(redis)
        << std::setw(13) << Gbps(copy) << std::setw(10) << Fixed(Ratio(&k, redis)) << std::setw(11)
        << Fixed(Ratio(shm, redis)) << std::setw(12) << Fixed(Ratio(shm, copy)) << std::setw(20) << Latency(&k)
        << std::setw(17) << Latency(shm) << std::setw(19) << Latency(redis) << "\n";
  }
  bool lookups = false;
  for (const BenchRow& r : rows) lookups = lookups || IsLookup(r);
  if (lookups) PrintLookupTable(rows, out);
}

std::string ToJsonLine(const std::vector<BenchRow>& rows) {
  std::ostringstream out;
  out << std::setprecision(6);
  out << "{\"bench\":\"throughput\",\"results\":[";
  for (size_t i = 0; i < rows.size(); ++i) {
    if (i > 0) out << ",";
    JsonRow(rows[i], out);
  }
  out << "],\"ratios\":[";
  bool first = true;
  for (const BenchRow& k : rows) {
    if (k.target != "kvtier" || IsLookup(k)) continue;
    std::ostringstream entry;
    entry << std::setprecision(6);
    if (!JsonRatios(rows, k, entry)) continue;
    out << (first ? "" : ",") << entry.str();
    first = false;
  }
  out << "]}";
  return out.str();
}

}  // namespace kvtier::bench
