// tests/data, where the reference model, its tokenizer and corpus live (KVTIER_TEST_DATA, set by the test
// target), and a whole-file read, for the tests that run the model.
#pragma once

#include <fstream>
#include <iterator>
#include <string>

namespace kvtier::testing {

inline const std::string kTestDataDir = KVTIER_TEST_DATA;

// The whole file; empty when it cannot be read (the model and corpus checks then fail).
inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace kvtier::testing
