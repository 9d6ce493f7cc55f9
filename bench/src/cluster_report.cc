// The cluster benchmark's report: the table per server count, the keys-moved table and the JSON line.
#include <iomanip>
#include <sstream>

#include "bench_common.h"
#include "kvtier/bench/cluster.h"

namespace kvtier::bench {
namespace {

std::string Gbps(const ClusterRow* r) { return r ? Fixed(r->gbps, 2) : "-"; }
std::string Latency(const ClusterRow* r) { return r ? Fixed(r->p50_us, 0) + "/" + Fixed(r->p99_us, 0) : "-"; }
std::string Percent(double share) { return Fixed(100 * share, 1) + "%"; }

}  // namespace

void PrintClusterTable(const ClusterReport& report, std::ostream& out) {
  out << std::left << std::setw(9) << "servers" << std::setw(9) << "clients" << std::setw(8) << "chunk" << std::right
      << std::setw(10) << "put GB/s" << std::setw(10) << "get GB/s" << std::setw(17) << "put p50/p99 us"
      << std::setw(17) << "get p50/p99 us" << std::setw(11) << "min share" << std::setw(11) << "max share" << "\n";
  // Rows come in pairs, put then get, per cluster.
  for (size_t i = 0; i < report.rows.size(); ++i) {
    const ClusterRow& r = report.rows[i];
    const ClusterRow* put = r.op == "put" ? &r : nullptr;
    const ClusterRow* get = r.op == "get" ? &r : nullptr;
    if (put != nullptr && i + 1 < report.rows.size() && report.rows[i + 1].op == "get" &&
        report.rows[i + 1].servers == r.servers) {
      get = &report.rows[++i];
    }
    out << std::left << std::setw(9) << r.servers << std::setw(9) << r.clients << std::setw(8) << Size(r.chunk_bytes)
        << std::right << std::setw(10) << Gbps(put) << std::setw(10) << Gbps(get) << std::setw(17) << Latency(put)
        << std::setw(17) << Latency(get) << std::setw(11) << Percent(r.min_share) << std::setw(11)
        << Percent(r.max_share) << "\n";
  }
  if (report.moved.empty()) return;
  out << "\nkeys moved (rendezvous, first choice):\n"
      << std::right << std::setw(6) << "from" << std::setw(6) << "to" << std::setw(10) << "moved" << std::setw(11)
      << "expected" << "\n";
  for (const MovedRow& m : report.moved) {
    out << std::setw(6) << m.from << std::setw(6) << m.to << std::setw(10) << Percent(m.moved_share) << std::setw(11)
        << Percent(m.expected_share) << "\n";
  }
}

std::string ClusterJsonLine(const ClusterReport& report) {
  std::ostringstream out;
  out << std::setprecision(6) << "{\"bench\":\"cluster\",\"results\":[";
  for (size_t i = 0; i < report.rows.size(); ++i) {
    const ClusterRow& r = report.rows[i];
    out << (i > 0 ? "," : "") << "{\"servers\":" << r.servers << ",\"op\":\"" << r.op << "\",\"clients\":" << r.clients
        << ",\"chunk_bytes\":" << r.chunk_bytes << ",\"gbps\":" << r.gbps << ",\"p50_us\":" << r.p50_us
        << ",\"p99_us\":" << r.p99_us << ",\"min_share\":" << r.min_share << ",\"max_share\":" << r.max_share << "}";
  }
  out << "],\"moved\":[";
  for (size_t i = 0; i < report.moved.size(); ++i) {
    const MovedRow& m = report.moved[i];
    out << (i > 0 ? "," : "") << "{\"from\":" << m.from << ",\"to\":" << m.to << ",\"moved_share\":" << m.moved_share
        << ",\"expected_share\":" << m.expected_share << "}";
  }
  out << "]}";
  return out.str();
}

}  // namespace kvtier::bench
