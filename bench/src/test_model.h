// The real test model the quality evaluations run (tests/data: stories260K, its tokenizer and the held-out
// TinyStories corpus), loaded once. Internal to kvtier_bench.
#pragma once

#include <string>

#include "kvtier/api/status.h"
#include "kvtier/refmodel/model.h"
#include "kvtier/refmodel/tokenizer.h"

namespace kvtier::bench {

struct TestModel {
  refmodel::Model model;
  refmodel::Tokenizer tokenizer;
  std::string corpus;  // tinystories_val.txt
};

// NOT_FOUND naming the file (and --data-dir) when one is missing; the loaders' errors otherwise.
Result<TestModel> LoadTestModel(const std::string& data_dir);

}  // namespace kvtier::bench
