#include "test_model.h"

#include <fstream>
#include <iterator>

namespace kvtier::bench {

Result<TestModel> LoadTestModel(const std::string& data_dir) {
  auto model = refmodel::Model::Load(data_dir + "/stories260K.bin");
  if (!model.ok()) return model.status();
  auto tokenizer = refmodel::Tokenizer::Load(data_dir + "/tok512.bin", model->config().vocab_size);
  if (!tokenizer.ok()) return tokenizer.status();
  const std::string corpus_path = data_dir + "/tinystories_val.txt";
  std::ifstream in(corpus_path, std::ios::binary);
  if (!in) return NotFound("cannot open " + corpus_path + " (set --data-dir to the folder with the test model)");
  std::string corpus((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return TestModel{std::move(model).value(), std::move(tokenizer).value(), std::move(corpus)};
}

}  // namespace kvtier::bench
