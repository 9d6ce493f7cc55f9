// The codec's own stream parsing behind valid checksums: the input is a container whose codec byte is
// forced to FUZZ_CODEC_NAME and whose checksums are recomputed, so a mutation of any stream byte, any
// length in the table or any header field reaches the codec's decoder instead of a checksum check.
#include <string_view>

#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvtier::codec;
  static const uint8_t codec = static_cast<uint8_t>(ParseCodecName(FUZZ_CODEC_NAME).value());
  std::vector<std::byte> c(reinterpret_cast<const std::byte*>(data), reinterpret_cast<const std::byte*>(data) + size);
  if (c.size() >= sizeof(internal::ContainerHeader)) c[offsetof(internal::ContainerHeader, codec)] = std::byte{codec};
  fuzz::FixChecksums(c);
  fuzz::DecodeOnce(c);
  return 0;
}
