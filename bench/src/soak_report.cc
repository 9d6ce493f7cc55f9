// The soak mode's report: a table of the samples and one JSON line.
#include <iomanip>
#include <sstream>

#include "kvtier/bench/soak.h"

namespace kvtier::bench {
namespace {

double MiB(double bytes) { return bytes / (1 << 20); }

}  // namespace

void PrintSoakTable(const SoakReport& report, std::ostream& out) {
  std::ostringstream s;
  s << std::fixed << std::right << std::setw(8) << "t s" << std::setw(11) << "RSS MiB" << std::setw(12) << "ops"
    << std::setw(8) << "GB/s" << "\n";
  for (const SoakSample& x : report.samples) {
    s << std::setprecision(1) << std::setw(8) << x.t << std::setw(11) << MiB(static_cast<double>(x.rss_bytes))
      << std::setw(12) << x.ops << std::setprecision(2) << std::setw(8) << x.gbps << "\n";
  }
  s << std::setprecision(1) << "RSS at rest " << MiB(static_cast<double>(report.rest_rss_bytes)) << " MiB, warm "
    << MiB(static_cast<double>(report.warm_rss_bytes)) << " MiB, final "
    << MiB(static_cast<double>(report.final_rss_bytes)) << " MiB; growth after warm-up "
    << std::showpos << MiB(static_cast<double>(report.growth_after_warmup_bytes)) << std::noshowpos << " MiB ("
    << report.clients << " client(s), " << report.shm_clients << " on shared memory, " << report.seconds << " s)\n";
  out << s.str();
}

std::string SoakJsonLine(const SoakReport& report) {
  std::ostringstream out;
  out << std::setprecision(6) << "{\"bench\":\"soak\",\"seconds\":" << report.seconds << ",\"clients\":"
      << report.clients << ",\"shm_clients\":" << report.shm_clients << ",\"samples\":[";
  for (size_t i = 0; i < report.samples.size(); ++i) {
    const SoakSample& x = report.samples[i];
    out << (i ? "," : "") << "{\"t\":" << x.t << ",\"rss_bytes\":" << x.rss_bytes << ",\"ops\":" << x.ops
        << ",\"gbps\":" << x.gbps << "}";
  }
  out << "],\"rest_rss_bytes\":" << report.rest_rss_bytes << ",\"warm_rss_bytes\":" << report.warm_rss_bytes
      << ",\"final_rss_bytes\":" << report.final_rss_bytes
      << ",\"growth_after_warmup_bytes\":" << report.growth_after_warmup_bytes << "}";
  return out.str();
}

}  // namespace kvtier::bench
