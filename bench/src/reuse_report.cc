// The reuse evaluation's report: the table with the targets, the JSON line and the gnuplot plot.
#include <cstdio>
#include <iomanip>
#include <sstream>

#include "bench_common.h"
#include "kvtier/bench/reuse_eval.h"

namespace kvtier::bench {
namespace {

std::string Label(const ReuseMethodRow& r) {
  if (r.method == "cacheblend") return "cacheblend " + Fixed(100 * r.param, 0) + "%";
  if (r.method == "cachecraft") return "cachecraft a=" + Fixed(r.param, 2);
  return r.method;
}

const ReuseMethodRow* Find(const ReuseEvalReport& report, const std::string& method, double param) {
  for (const ReuseMethodRow& r : report.rows) {
    if (r.method == method && r.param == param) return &r;
  }
  return nullptr;
}

// The CacheBlend row the targets are judged at: the largest ratio <= 15%.
const ReuseMethodRow* CacheBlendAt15(const ReuseEvalReport& report) {
  const ReuseMethodRow* best = nullptr;
  for (const ReuseMethodRow& r : report.rows) {
    if (r.method == "cacheblend" && r.param <= 0.15 + 1e-9 && (best == nullptr || r.param > best->param)) best = &r;
  }
  return best;
}

// The cheapest Cache-Craft row at least as good (KL) as `target`.
const ReuseMethodRow* CacheCraftMatching(const ReuseEvalReport& report, const ReuseMethodRow& target) {
  const ReuseMethodRow* best = nullptr;
  for (const ReuseMethodRow& r : report.rows) {
    if (r.method != "cachecraft" || r.kl_mean > target.kl_mean) continue;
    if (best == nullptr || r.flops_rel < best->flops_rel) best = &r;
  }
  return best;
}

void PrintTargets(const ReuseEvalReport& report, std::ostream& out) {
  const ReuseMethodRow* cb = CacheBlendAt15(report);
  const ReuseMethodRow* prefix = Find(report, "prefix", 0);
  if (cb == nullptr) return;
  out << "target: CacheBlend at <= 15% recompute closes >= 80% of the KL gap: " << Label(*cb) << " closes "
      << Fixed(100 * cb->gap_closed, 1) << "% -> " << (cb->gap_closed >= 0.8 ? "met" : "NOT met") << "\n";
  const ReuseMethodRow* cc = CacheCraftMatching(report, *cb);
  if (cc != nullptr) {
    out << "target: Cache-Craft at CacheBlend's quality with less recompute: " << Label(*cc) << " recomputes "
        << Fixed(100 * cc->recompute_frac, 1) << "% (FLOPs " << Fixed(100 * cc->flops_rel, 1) << "%) vs "
        << Fixed(100 * cb->recompute_frac, 1) << "% (FLOPs " << Fixed(100 * cb->flops_rel, 1) << "%) -> "
        << (cc->recompute_frac < cb->recompute_frac ? "met" : "NOT met") << "\n";
  } else {
    out << "target: Cache-Craft at CacheBlend's quality: no alpha reached KL " << Fixed(cb->kl_mean, 5)
        << " -> NOT met\n";
  }
  if (prefix != nullptr) {
    const double cheaper = cc != nullptr ? std::max(cb->flops_rel, cc->flops_rel) : cb->flops_rel;
    out << "target: both save more prefill compute than prefix caching (FLOPs " << Fixed(100 * prefix->flops_rel, 1)
        << "%) -> " << (cheaper < prefix->flops_rel ? "met" : "NOT met") << "\n";
  }
}

}  // namespace

void PrintReuseTable(const ReuseEvalReport& report, std::ostream& out) {
  out << report.prompts << " prompts, " << Fixed(report.mean_prompt_tokens, 1) << " tokens on average, "
      << report.scored_tokens << " continuation tokens scored; " << report.stored_variants
      << " variants admitted; chosen variants: mean context match " << Fixed(report.mean_variant_match, 3) << ", "
      << Fixed(100 * report.alone_variant_share, 1) << "% computed alone; Cache-Craft CI for alone variants "
      << Fixed(report.default_ci, 3) << "\n";
  out << std::left << std::setw(20) << "method" << std::right << std::setw(11) << "recompute" << std::setw(10)
      << "FLOPs" << std::setw(11) << "KL mean" << std::setw(11) << "KL p95" << std::setw(9) << "ppl" << std::setw(9)
      << "greedy" << std::setw(11) << "gap closed" << "\n";
  for (const ReuseMethodRow& r : report.rows) {
    out << std::left << std::setw(20) << Label(r) << std::right << std::setw(10) << Fixed(100 * r.recompute_frac, 1)
        << "%" << std::setw(9) << Fixed(100 * r.flops_rel, 1) << "%" << std::setw(11) << Fixed(r.kl_mean, 5)
        << std::setw(11) << Fixed(r.kl_p95, 5) << std::setw(9) << Fixed(r.ppl, 4) << std::setw(8)
        << Fixed(100 * r.greedy_agreement, 1) << "%" << std::setw(10) << Fixed(100 * r.gap_closed, 1) << "%\n";
  }
  PrintTargets(report, out);
}

std::string ReuseJsonLine(const ReuseEvalReport& report) {
  std::ostringstream s;
  s << std::setprecision(6) << "{\"methods\":[";
  for (size_t i = 0; i < report.rows.size(); ++i) {
    const ReuseMethodRow& r = report.rows[i];
    s << (i ? "," : "") << "{\"method\":\"" << r.method << "\",\"param\":" << r.param
      << ",\"recompute_frac\":" << r.recompute_frac << ",\"kl_mean\":" << r.kl_mean << ",\"kl_p95\":" << r.kl_p95
      << ",\"ppl\":" << r.ppl << ",\"greedy_agreement\":" << r.greedy_agreement << ",\"flops_rel\":" << r.flops_rel
      << "}";
  }
  s << "]}";
  return s.str();
}

Status PlotReuse(const ReuseEvalReport& report, const std::string& png_path) {
  std::ostringstream gp;
  gp << "set terminal pngcairo size 900,600 noenhanced\nset output '" << png_path << "'\n"
     << "set title 'Chunk reuse on stories260K: quality versus prefill compute (" << report.prompts << " prompts)'\n"
     << "set xlabel 'prefill FLOPs relative to full prefill'\nset ylabel 'mean KL divergence vs full prefill (nats)'\n"
     << "set key top right\nset grid\nset xrange [0:1.05]\n";
  auto block = [&](const std::string& name, const std::string& method) {
    gp << "$" << name << " << EOD\n";
    for (const ReuseMethodRow& r : report.rows) {
      if (r.method == method) gp << r.flops_rel << " " << r.kl_mean << " \"" << Label(r) << "\"\n";
    }
    gp << "EOD\n";
  };
  block("cb", "cacheblend");
  block("cc", "cachecraft");
  block("naive", "naive");
  block("prefix", "prefix");
  block("full", "full");
  gp << "plot $cb using 1:2 with linespoints lw 2 pt 7 title 'CacheBlend (5-30% recompute)', "
     << "$cc using 1:2 with linespoints lw 2 pt 5 title 'Cache-Craft (alpha sweep)', "
     << "$naive using 1:2 with points pt 9 ps 2 title 'naive reuse', "
     << "$prefix using 1:2 with points pt 11 ps 2 title 'prefix caching', "
     << "$full using 1:2 with points pt 13 ps 2 title 'full prefill'\n";
  FILE* pipe = popen("gnuplot 2>&1", "w");
  if (pipe == nullptr) return Unavailable("cannot run gnuplot (install gnuplot-nox)");
  const std::string script = gp.str();
  fwrite(script.data(), 1, script.size(), pipe);
  const int rc = pclose(pipe);
  if (rc != 0) {
    return Unavailable("gnuplot failed (exit " + std::to_string(rc) + "); is gnuplot-nox installed? "
                       "scripts/install-deps.sh installs it");
  }
  return Status::Ok();
}

}  // namespace kvtier::bench
