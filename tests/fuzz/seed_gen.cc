// Writes seed corpora: valid containers of every codec at small shapes (OUT/decode and OUT/<codec>)
// and the test profile's bytes (OUT/profile).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "fuzz_common.h"

using namespace kvtier;
using namespace kvtier::codec;
using fuzz::kProfileShape;
using fuzz::SampleKv;

namespace {

void Write(const std::filesystem::path& dir, const std::string& name, std::span<const std::byte> bytes) {
  std::filesystem::create_directories(dir);
  std::ofstream f(dir / name, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  const std::filesystem::path out = argv[1];
  const KvShape shapes[] = {{2, 2, 8, 5, DType::kFp16}, {1, 1, 7, 33, DType::kBf16}, {2, 1, 4, 3, DType::kFp32},
                            {1, 2, 8, 1, DType::kFp16}};
  int written = 0;
  for (const KvShape& s : shapes) {
    const std::vector<std::byte> kv = SampleKv(s, s.num_tokens);
    for (CodecId c : kAllCodecs) {
      for (int variant = 0; variant < 3; ++variant) {
        EncodeOptions o;
        o.codec = c;
        o.max_tokens_per_stream = 4;
        if (c == CodecId::kCacheGen) {
          o.level = 1 + variant;
          o.anchor_delta = variant == 2;
        } else if (c == CodecId::kMixed) {
          o.mixed_low_bits = 2 + variant;
          o.mixed_top_fraction = 0.25f * variant;
        } else if (variant > 0) {
          continue;
        }
        std::vector<std::byte> enc;
        Status st = Encode(KvView{s, kv, {}}, o, enc);
        if (!st.ok()) {
          std::fprintf(stderr, "seed %s: %s\n", std::string(CodecName(c)).c_str(), st.ToString().c_str());
          return 1;
        }
        const std::string name = std::string(CodecName(c)) + "_" + std::to_string(written++) + ".bin";
        Write(out / "decode", name, enc);
        Write(out / CodecName(c), name, enc);
      }
    }
  }
  // cachegen chunks that reference the shared profile the fuzzers' resolver knows.
  for (uint32_t tokens : {1u, 7u, 20u}) {
    const KvShape s{kProfileShape.num_layers, kProfileShape.num_kv_heads, kProfileShape.head_dim, tokens, DType::kFp16};
    const std::vector<std::byte> kv = SampleKv(s, tokens + 5);
    EncodeOptions o;
    o.codec = CodecId::kCacheGen;
    o.profile = fuzz::TestProfile();
    o.max_tokens_per_stream = 8;
    o.anchor_delta = tokens == 20;
    std::vector<std::byte> enc;
    if (Status st = Encode(KvView{s, kv, {}}, o, enc); !st.ok()) {
      std::fprintf(stderr, "profile seed: %s\n", st.ToString().c_str());
      return 1;
    }
    const std::string name = "cachegen_profile_" + std::to_string(tokens) + ".bin";
    Write(out / "decode", name, enc);
    Write(out / "cachegen", name, enc);
  }
  Write(out / "profile", "profile.bin", fuzz::TestProfile()->serialized());
  std::printf("fuzz_seeds: %d containers and 1 profile in %s\n", written + 3, out.c_str());
  return 0;
}
