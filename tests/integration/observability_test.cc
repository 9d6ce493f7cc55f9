// The /metrics text of a server that saw every kind of traffic, judged by Prometheus' own linter
// (promtool check metrics), and the Grafana dashboard judged against what that server exports.
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "integration/observability.h"
#include "integration/scrape.h"

namespace kvtier::testing {
namespace {

// promtool's verdict on an exposition text: exit status 0 and nothing printed means clean (2.42 prints
// lint problems to stderr and exits 3, parse errors exit 1).
CommandResult Promtool(const std::string& promtool, const std::string& text, const std::string& name) {
  const auto file = std::filesystem::temp_directory_path() / ("kvtier-" + name + "-" + std::to_string(getpid()));
  std::ofstream(file) << text;
  CommandResult result = RunCommand(promtool + " check metrics < " + file.string());
  std::filesystem::remove(file);
  return result;
}

class PromtoolTest : public ObservedServerTest {
 protected:
  void SetUp() override {
    promtool_ = FindProgram("promtool");
    if (promtool_.empty()) GTEST_SKIP() << "promtool not installed (Debian package 'prometheus'; scripts/install-deps.sh)";
  }
  std::string promtool_;
};

TEST_F(PromtoolTest, ScrapeAfterMixedTrafficPassesPromtoolCheckMetrics) {
  StartObserved(/*all_tiers=*/true);
  DriveMixedTraffic();
  const std::string text = Scrape();
  // The scrape holds what the lint must see: every family the server has, with samples.
  for (const char* series : {"kvtier_requests_total{", "kvtier_request_duration_seconds_bucket{",
                             "kvtier_codec_bytes_total{", "kvtier_leases_held ", "kvtier_inflight_bytes{",
                             "kvtier_build_info{", "kvtier_disk_io_bytes_total{", "kvtier_promotions_total{", "kvtier_gpu_state{"}) {
    EXPECT_NE(text.find(std::string("\n") + series), std::string::npos) << series;
  }
  const CommandResult lint = Promtool(promtool_, text, "scrape");
  EXPECT_EQ(lint.exit_code, 0) << lint.output;
  EXPECT_EQ(lint.output, "") << "promtool complained about:\n" << text;
}

TEST_F(PromtoolTest, PromtoolRejectsWhatItShould) {
  // The check above can fail: a counter without _total and a family without HELP are reported.
  const CommandResult bad = Promtool(promtool_, "# TYPE kvtier_things counter\nkvtier_things 1\n", "bad");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("_total"), std::string::npos) << bad.output;
  EXPECT_NE(bad.output.find("no help text"), std::string::npos) << bad.output;
  const CommandResult broken = Promtool(promtool_, "kvtier_x{ 1\n", "broken");
  EXPECT_NE(broken.exit_code, 0);
  EXPECT_NE(broken.output, "");
}

class MetricsTextTest : public ObservedServerTest {};

TEST_F(MetricsTextTest, EveryFamilyHasHelpTypeAndBaseUnitNames) {
  StartObserved(/*all_tiers=*/true);
  DriveMixedTraffic();
  const std::string text = Scrape();
  std::map<std::string, std::string> help, type;
  std::istringstream lines(text);
  const std::regex meta("^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) ?(.*)$");
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (!std::regex_match(line, m, meta)) continue;
    (m[1] == "HELP" ? help : type)[m[2]] = m[3];
  }
  int kvtier_families = 0;
  for (const auto& [name, kind] : type) {
    EXPECT_FALSE(help[name].empty()) << name << " has no HELP text";
    if (name.rfind("kvtier_", 0) != 0) continue;
    ++kvtier_families;
    EXPECT_EQ(kind == "counter", name.size() > 6 && name.substr(name.size() - 6) == "_total") << name << " " << kind;
    for (const char* unit : {"_milliseconds", "_microseconds", "_kilobytes", "_megabytes"}) {
      EXPECT_EQ(name.find(unit), std::string::npos) << name << ": base units only";
    }
  }
  EXPECT_GE(kvtier_families, 25);

  // README "Metrics" lists exactly these families (every tier is on, so all of them are here).
  std::ifstream readme(std::filesystem::path(KVTIER_SOURCE_DIR) / "README.md");
  std::stringstream readme_text;
  readme_text << readme.rdbuf();
  const std::string doc = readme_text.str();
  const size_t begin = doc.find("\n## Metrics\n");
  ASSERT_NE(begin, std::string::npos) << "README.md has no Metrics section";
  const std::string section = doc.substr(begin, doc.find("\n## ", begin + 1) - begin);
  std::set<std::string> documented, exported;
  const std::regex name("kvtier_[a-z0-9_]+");
  for (auto it = std::sregex_iterator(section.begin(), section.end(), name); it != std::sregex_iterator(); ++it) {
    documented.insert(it->str());
  }
  for (const auto& [family, kind] : type) {
    if (family.rfind("kvtier_", 0) == 0) exported.insert(family);
  }
  EXPECT_EQ(documented, exported);
}

class DashboardTest : public ObservedServerTest {};

TEST_F(DashboardTest, EveryQueryReadsOnlySeriesTheServerExports) {
  StartObserved(/*all_tiers=*/true);
  DriveMixedTraffic();
  const std::set<std::string> exported = ExposedNames(Scrape());
  Json dashboard;
  const std::vector<DashboardQuery> queries = DashboardQueries(&dashboard);
  ASSERT_GE(queries.size(), 15u);
  std::set<std::string> used;
  for (const DashboardQuery& q : queries) {
    const std::set<std::string> names = PromqlMetricNames(q.expr);
    EXPECT_FALSE(names.empty()) << q.where << ": no metric in '" << q.expr << "'";
    for (const std::string& name : names) {
      EXPECT_EQ(exported.count(name), 1u) << q.where << " reads '" << name << "', which the server does not export";
      used.insert(name);
    }
    EXPECT_EQ(WithVariablesResolved(q.expr).find('$'), std::string::npos) << q.where << ": unknown variable";
  }
  // What the dashboard is for (issue: hit ratio per tier, throughput, latency percentiles, evictions,
  // promotions/demotions, disk errors, memory against capacity).
  for (const char* needed : {"kvtier_hits_total", "kvtier_misses_total", "kvtier_requests_total",
                             "kvtier_codec_bytes_total", "kvtier_request_duration_seconds_bucket",
                             "kvtier_evictions_total", "kvtier_promotions_total", "kvtier_demotions_total",
                             "kvtier_disk_io_errors_total", "kvtier_tier_bytes", "kvtier_tier_capacity_bytes"}) {
    EXPECT_EQ(used.count(needed), 1u) << "the dashboard does not show " << needed;
  }
  bool quantiles = false;
  for (const DashboardQuery& q : queries) quantiles |= q.expr.find("histogram_quantile(") != std::string::npos;
  EXPECT_TRUE(quantiles);

  // Importable: the datasource is an input, and every panel and target uses it.
  const Json* inputs = dashboard.Find("__inputs");
  ASSERT_TRUE(inputs != nullptr && inputs->is_array() && inputs->items.size() == 1);
  const Json& input = inputs->items[0];
  EXPECT_EQ(input.Find("name")->string, "DS_PROMETHEUS");
  EXPECT_EQ(input.Find("type")->string, "datasource");
  EXPECT_EQ(input.Find("pluginId")->string, "prometheus");
  int datasources = 0;
  ForEachStringMember(dashboard, "uid", [&](const std::string& uid) {
    if (uid == "kvtier-overview") return;  // the dashboard's own uid
    EXPECT_EQ(uid, "${DS_PROMETHEUS}");
    ++datasources;
  });
  EXPECT_GT(datasources, static_cast<int>(queries.size()));
}

TEST(PromqlNamesTest, FindsSelectedMetricsOnly) {
  EXPECT_EQ(PromqlMetricNames("sum by (tier) (rate(kvtier_hits_total{instance=~\"$instance\"}[$__rate_interval])) "
                              "/ ignoring(tier) group_left() (sum(rate(kvtier_hits_total[5m])) + "
                              "sum without (op) (rate(kvtier_misses_total[5m])))"),
            (std::set<std::string>{"kvtier_hits_total", "kvtier_misses_total"}));
  EXPECT_EQ(PromqlMetricNames("histogram_quantile(0.99, sum(rate(kvtier_request_duration_seconds_bucket"
                              "{op=\"get\", code!~\"a|b\"}[1m])) by (le, op)) > bool 1e-3 offset 5m"),
            (std::set<std::string>{"kvtier_request_duration_seconds_bucket"}));
  EXPECT_EQ(PromqlMetricNames("kvtier_tier_bytes / on(tier) kvtier_tier_capacity_bytes and kvtier_up_bogus"),
            (std::set<std::string>{"kvtier_tier_bytes", "kvtier_tier_capacity_bytes", "kvtier_up_bogus"}));
  EXPECT_EQ(PromqlMetricNames("label_replace(up, \"a\", \"kvtier_not_a_metric\", \"b\", \"(.*)\")"),
            (std::set<std::string>{"up"}));
}

TEST(JsonLiteTest, ParsesAndRejects) {
  std::string error;
  auto doc = ParseJson(R"({"a": [1, -2.5e3, true, null, "x\"\u00e9\ud83d\ude00"], "b": {}})", &error);
  ASSERT_TRUE(doc.has_value()) << error;
  const Json* a = doc->Find("a");
  ASSERT_TRUE(a != nullptr && a->items.size() == 5);
  EXPECT_EQ(a->items[1].number, -2500);
  EXPECT_EQ(a->items[4].string, "x\"\xc3\xa9\xf0\x9f\x98\x80");
  for (const char* bad : {"{", "[1,]", "{\"a\" 1}", "01", "\"\x01\"", "[1] 2", "tru", "{\"a\":1,}"}) {
    EXPECT_FALSE(ParseJson(bad, &error).has_value()) << bad;
    EXPECT_FALSE(error.empty());
  }
}

}  // namespace
}  // namespace kvtier::testing
