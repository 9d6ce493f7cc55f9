// What the gpu/ test files share: the element types every kernel and twin is tested in, and the check of an
// error's code and message.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "kvtier/api/status.h"
#include "kvtier/api/types.h"

namespace kvtier::gpu::testing {

inline constexpr DType kDTypes[] = {DType::kFp16, DType::kBf16, DType::kFp32};

inline void ExpectError(const Status& s, StatusCode code, const std::string& fragment) {
  EXPECT_EQ(s.code(), code) << s.ToString();
  EXPECT_NE(s.message().find(fragment), std::string::npos) << "message: " << s.message() << "\nwanted: " << fragment;
}

}  // namespace kvtier::gpu::testing
