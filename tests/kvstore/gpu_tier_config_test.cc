// The GPU tier's config keys: parsed from YAML, refused by name when wrong, and in the effective-config dump.
#include <gtest/gtest.h>

#include "kvtier/kvstore/config.h"

namespace kvtier {
namespace {

TEST(GpuTierConfig, KeysAreParsedAndDumped) {
  ServerConfig c;
  EXPECT_FALSE(c.store.gpu.enabled());
  EXPECT_TRUE(c.store.host_cuda_register);
  const Status s = ParseServerConfigYaml(
      "host_tier:\n  cuda_register: false\ngpu_tier:\n  capacity: 8GiB\n  device: 2\n  placement: all\n"
      "  max_consecutive_errors: 5\n  max_channels: 3\n  link_timeout_ms: 2500\n",
      &c);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(c.store.gpu.capacity_bytes, 8ull << 30);
  EXPECT_EQ(c.store.gpu.device, 2);
  EXPECT_EQ(c.store.gpu.placement, "all");
  EXPECT_EQ(c.store.gpu.max_consecutive_errors, 5u);
  EXPECT_EQ(c.service.max_gpu_channels, 3u);
  EXPECT_EQ(c.service.gpu_link_timeout_ms, 2500u);
  EXPECT_FALSE(c.store.host_cuda_register);
  const std::string yaml = c.ToYaml();
  EXPECT_NE(yaml.find("gpu_tier:\n  capacity: 8GiB\n  device: 2\n  placement: all\n  max_consecutive_errors: 5\n"
                      "  max_channels: 3\n  link_timeout_ms: 2500\n"),
            std::string::npos)
      << yaml;
  ServerConfig reread;
  ASSERT_TRUE(ParseServerConfigYaml(yaml, &reread).ok());
  EXPECT_EQ(reread.ToYaml(), yaml);
}

TEST(GpuTierConfig, BadValuesAreRefusedByKey) {
  for (const auto& [yaml, key] : std::vector<std::pair<std::string, std::string>>{
           {"gpu_tier:\n  placement: hot\n", "gpu_tier.placement"},
           {"gpu_tier:\n  capacity: 4KiB\n", "gpu_tier.capacity"},
           {"gpu_tier:\n  capacity: lots\n", "gpu_tier.capacity"},
           {"gpu_tier:\n  device: -1\n", "gpu_tier.device"},
           {"gpu_tier:\n  max_consecutive_errors: 0\n", "gpu_tier.max_consecutive_errors"},
           {"gpu_tier:\n  capacty: 1GiB\n", "gpu_tier.capacty"},
           {"gpu_tier:\n  link_timeout_ms: 0\n", "gpu_tier.link_timeout_ms"},
           {"gpu_tier:\n  max_channels: many\n", "gpu_tier.max_channels"},
           {"host_tier:\n  cuda_register: maybe\n", "host_tier.cuda_register"}}) {
    ServerConfig c;
    const Status s = ParseServerConfigYaml(yaml, &c);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << yaml;
    EXPECT_NE(s.message().find("'" + key + "'"), std::string::npos) << yaml << " -> " << s.message();
  }
}

}  // namespace
}  // namespace kvtier
