// ModelProfile::Deserialize of arbitrary bytes; a profile that parses must serialize to its input.
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvtier;
  const std::span<const std::byte> bytes{reinterpret_cast<const std::byte*>(data), size};
  auto profile = codec::ModelProfile::Deserialize(bytes);
  if (!profile.ok()) {
    const StatusCode code = profile.status().code();
    if (code != StatusCode::kInvalidArgument && code != StatusCode::kDataLoss) std::abort();
    return 0;
  }
  if (profile->num_layers() == 0 || profile->num_kv_heads() == 0 || profile->head_dim() == 0) std::abort();
  if (profile->serialized().size() != size || std::memcmp(profile->serialized().data(), data, size) != 0) std::abort();
  return 0;
}
