// Inspect of arbitrary bytes: the header and table checks alone.
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvtier;
  auto info = codec::Inspect({reinterpret_cast<const std::byte*>(data), size});
  if (info.ok() && (info->encoded_bytes != size || info->shape.Validate().code() != StatusCode::kOk)) std::abort();
  if (!info.ok() && info.status().code() != StatusCode::kInvalidArgument &&
      info.status().code() != StatusCode::kDataLoss) {
    std::abort();
  }
  return 0;
}
