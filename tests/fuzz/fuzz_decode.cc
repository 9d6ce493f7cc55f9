// Decode of arbitrary bytes, checksums and all, with a resolver that knows one shared profile.
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kvtier::codec::fuzz::DecodeOnce({reinterpret_cast<const std::byte*>(data), size});
  return 0;
}
