// `kvtier bench-gpu` end to end on the gpu/ library emulated on the CPU (tests/gpu/emulation): every row runs, and
// each chunk load (raw, int8, cachegen through an in-process server) passes the benchmark's own check that the
// paged cache holds what was put. No time passes on the emulated device, so the rates mean nothing here and are
// not looked at; what this guards is that the benchmark runs its whole course on a GPU machine's short lease.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "kvtier/bench/gpu.h"

namespace kvtier::bench {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

TEST(BenchGpuEmulated, EveryRowRunsAndEveryChunkLoadIsVerified) {
  GpuBenchOptions o;
  o.layers = 2;
  o.kv_heads = 2;
  o.head_dim = 32;
  o.chunk_tokens = 32;
  o.chunks = 3;
  o.block_size = 8;
  o.iterations = 1;
  o.host_threads = 2;
  std::ostringstream progress;
  Result<GpuBenchReport> report = RunGpuBench(o, progress);
  ASSERT_TRUE(report.ok()) << report.status().ToString() << "\n" << progress.str();
  EXPECT_THAT(report->device, HasSubstr("emulated GPU"));

  std::vector<std::string> rows;
  for (const GpuBenchRow& r : report->rows) rows.push_back(r.what);
  EXPECT_THAT(rows, ElementsAre("h2d pinned memcpy", "d2d memcpy", "unpack chunk->paged", "pack paged->chunk",
                                "unpack + RoPE re-rotation", "int8 dequant (fp16 out)", "cachegen decode (fp16 out)",
                                "direct gather (UVA)", StartsWith("kvtier chunk load, zero-copy"),
                                StartsWith("kvtier chunk load, int8 decoded on the GPU"),
                                StartsWith("kvtier chunk load, cachegen decoded on the GPU")));
  // The encoded loads decoded every chunk on the (emulated) device, (1 + iterations) x 3 of them, and nothing went
  // through the staging.
  EXPECT_THAT(progress.str(), HasSubstr("int8 chunks copied straight from the shared arena: 6, through the staging: "
                                        "0, decoded on the GPU: 6"));
  EXPECT_THAT(progress.str(), HasSubstr("cachegen chunks copied straight from the shared arena: 6, through the "
                                        "staging: 0, decoded on the GPU: 6"));
  for (const char* codec : {"raw", "int8", "cachegen"}) {
    EXPECT_THAT(progress.str(),
                HasSubstr(std::string(codec) + " load checked: the paged cache holds the 3 chunks put"));
  }

  const std::string json = GpuJsonLine(*report);
  EXPECT_EQ(json.find('\n'), std::string::npos);
  for (const std::string& what : rows) EXPECT_THAT(json, HasSubstr("{\"what\":\"" + what + "\""));
}

}  // namespace
}  // namespace kvtier::bench
