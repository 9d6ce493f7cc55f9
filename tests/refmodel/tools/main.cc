// kvtier-refmodel: runs the reference model from the command line (greedy generation, corpus
// perplexity). A thin main over kvtier::refmodel; see tests/refmodel/README.md.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "kvtier/refmodel/eval.h"
#include "kvtier/refmodel/model.h"
#include "kvtier/refmodel/session.h"
#include "kvtier/refmodel/tokenizer.h"

namespace {

using namespace kvtier::refmodel;

constexpr const char* kUsage = R"(usage: kvtier-refmodel [--data DIR] COMMAND [OPTIONS]

Runs the stories260K reference model (DIR/stories260K.bin, DIR/tok512.bin; DIR defaults to the
source tree's tests/data).

commands:
  generate [--prompt TEXT] [--max N]
      Greedy decoding behind BOS (and TEXT, when given) until BOS or EOS comes up or N tokens
      (default 1000, capped by the context) were generated. Prints the text, then the token count.
  perplexity [--corpus FILE] [--max-tokens N]
      Splits FILE (default DIR/tinystories_val.txt) at blank lines into pieces of at most 900
      characters, scores each piece from BOS and prints the perplexity over the first N scored
      tokens (default: all), with progress on stderr.
  --help
      This text.
)";

struct Args {
  std::string data = KVTIER_REFMODEL_DATA;
  std::string command;
  std::string prompt;
  std::string corpus;
  long max = 1000;
  long max_tokens = -1;
};

int Fail(const std::string& msg) {
  std::fprintf(stderr, "kvtier-refmodel: %s\n", msg.c_str());
  return 1;
}

// Parses argv into `args`; returns an error message, empty on success.
std::string Parse(int argc, char** argv, Args& args) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](std::string& out) -> bool {
      if (i + 1 >= argc) return false;
      out = argv[++i];
      return true;
    };
    auto number = [&](long& out) -> bool {
      std::string s;
      if (!value(s)) return false;
      char* end = nullptr;
      out = std::strtol(s.c_str(), &end, 10);
      return end != s.c_str() && *end == '\0';
    };
    bool ok = true;
    if (a == "--help" || a == "-h") args.command = "help";
    else if (a == "--data") ok = value(args.data);
    else if (a == "--prompt") ok = value(args.prompt);
    else if (a == "--corpus") ok = value(args.corpus);
    else if (a == "--max") ok = number(args.max);
    else if (a == "--max-tokens") ok = number(args.max_tokens);
    else if (a.rfind("--", 0) != 0 && args.command.empty()) args.command = a;
    else return "unknown argument " + a;
    if (!ok) return "missing or bad value for " + a;
  }
  if (args.command.empty()) return "no command (try --help)";
  return {};
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

int Generate(const Args& args, const Model& model, const Tokenizer& tok) {
  Session session(model);
  const std::vector<int> prompt = tok.Encode(args.prompt, /*bos=*/true, /*eos=*/false);
  const long room = session.capacity() - long(prompt.size()) + 1;
  const int max_new = int(std::min(args.max, room));
  const auto start = std::chrono::steady_clock::now();
  auto out = Greedy(session, prompt, max_new, Tokenizer::kBos);
  if (!out.ok()) return Fail(out.status().ToString());
  // Stop at EOS too; Greedy stops at one token only.
  std::vector<int> gen = *out;
  for (size_t i = 0; i < gen.size(); ++i) {
    if (gen[i] == Tokenizer::kEos) gen.resize(i);
  }
  std::vector<int> all = prompt;
  all.insert(all.end(), gen.begin(), gen.end());
  std::printf("%s\n", tok.DecodeAll(all).c_str());
  std::fprintf(stderr, "%zu prompt tokens (with BOS), %zu generated, %.3f s\n", prompt.size(), gen.size(),
               Seconds(start));
  return 0;
}

int Perplexity(const Args& args, const Model& model, const Tokenizer& tok) {
  const std::string path = args.corpus.empty() ? args.data + "/tinystories_val.txt" : args.corpus;
  std::ifstream in(path, std::ios::binary);
  if (!in) return Fail("cannot open corpus " + path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::vector<std::string> pieces = SplitCorpus(text);
  std::fprintf(stderr, "%s: %zu bytes, %zu pieces of <= 900 characters\n", path.c_str(), text.size(),
               pieces.size());
  Session session(model);
  const auto start = std::chrono::steady_clock::now();
  int64_t next_report = 0;
  auto progress = [&](const PerplexityResult& r) {
    if (r.tokens < next_report) return;
    next_report = r.tokens + 50000;
    std::fprintf(stderr, "  %lld tokens, perplexity %.4f, %.1f s\n", (long long)r.tokens, r.perplexity(),
                 Seconds(start));
  };
  auto r = CorpusPerplexity(session, tok, pieces, args.max_tokens, progress);
  if (!r.ok()) return Fail(r.status().ToString());
  std::printf("perplexity %.4f over %lld tokens (mean loss %.4f nats/token) in %.1f s\n", r->perplexity(),
              (long long)r->tokens, r->mean_nll(), Seconds(start));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  if (std::string err = Parse(argc, argv, args); !err.empty()) {
    std::fprintf(stderr, "kvtier-refmodel: %s\n\n%s", err.c_str(), kUsage);
    return 2;
  }
  if (args.command == "help") {
    std::printf("%s", kUsage);
    return 0;
  }
  if (args.command != "generate" && args.command != "perplexity") {
    std::fprintf(stderr, "kvtier-refmodel: unknown command %s\n\n%s", args.command.c_str(), kUsage);
    return 2;
  }
  auto model = Model::Load(args.data + "/stories260K.bin");
  if (!model.ok()) return Fail(model.status().ToString());
  auto tok = Tokenizer::Load(args.data + "/tok512.bin", model->config().vocab_size);
  if (!tok.ok()) return Fail(tok.status().ToString());
  return args.command == "generate" ? Generate(args, *model, *tok) : Perplexity(args, *model, *tok);
}
