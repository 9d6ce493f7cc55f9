// bench-gpu's report: the table (limits first, then each kernel against its limit and target) and the JSON line.
#include <iomanip>
#include <sstream>

#include "bench_common.h"
#include "kvtier/bench/gpu.h"

namespace kvtier::bench {

void PrintGpuTable(const GpuBenchReport& report, std::ostream& out) {
  out << "device: " << report.device << "\n";
  out << std::left << std::setw(52) << "what" << std::right << std::setw(10) << "bytes" << std::setw(11) << "ms"
      << std::setw(10) << "GB/s" << "  " << std::left << std::setw(20) << "vs" << std::right << std::setw(7)
      << "ratio" << std::setw(8) << "target" << "\n";
  for (const GpuBenchRow& r : report.rows) {
    out << std::left << std::setw(52) << r.what << std::right << std::setw(10) << Size(r.bytes) << std::setw(11)
        << Fixed(r.seconds * 1e3, 3) << std::setw(10) << Fixed(r.gbps, 1) << "  " << std::left << std::setw(20)
        << (r.limit.empty() ? "(limit)" : r.limit) << std::right << std::setw(7)
        << (r.limit.empty() ? "-" : Fixed(r.ratio, 2)) << std::setw(8)
        << (r.target > 0 ? ">= " + Fixed(r.target, 1) : "-") << "\n";
  }
}

std::string GpuJsonLine(const GpuBenchReport& report) {
  std::ostringstream out;
  out << std::setprecision(6) << "{\"bench\":\"gpu\",\"device\":\"" << report.device << "\",\"results\":[";
  for (size_t i = 0; i < report.rows.size(); ++i) {
    const GpuBenchRow& r = report.rows[i];
    out << (i > 0 ? "," : "") << "{\"what\":\"" << r.what << "\",\"bytes\":" << r.bytes << ",\"seconds\":" << r.seconds
        << ",\"gbps\":" << r.gbps << ",\"limit\":\"" << r.limit << "\",\"ratio\":" << r.ratio
        << ",\"target\":" << r.target << "}";
  }
  out << "]}";
  return out.str();
}

}  // namespace kvtier::bench
