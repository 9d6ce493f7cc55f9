#include "kvtier/refmodel/tokenizer.h"

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>

namespace kvtier::refmodel {
namespace {

// Reads little-endian fields off a byte buffer, remembering whether it ran out.
class Reader {
 public:
  explicit Reader(const std::vector<char>& b) : b_(b) {}
  template <typename T>
  bool Read(T& v) {
    if (b_.size() - pos_ < sizeof(T)) return false;
    std::memcpy(&v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool ReadString(size_t n, std::string& s) {
    if (b_.size() - pos_ < n) return false;
    s.assign(b_.data() + pos_, n);
    pos_ += n;
    return true;
  }

 private:
  const std::vector<char>& b_;
  size_t pos_ = 0;
};

bool IsContinuationByte(unsigned char c) { return (c & 0xC0) == 0x80; }

// "<0x41>" -> 0x41; -1 for any other piece.
int ByteOfPiece(const std::string& piece) {
  if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') return -1;
  int v = 0;
  for (int i = 3; i < 5; ++i) {
    const char c = piece[i];
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else return -1;
    v = v * 16 + d;
  }
  return v;
}

}  // namespace

Result<Tokenizer> Tokenizer::Load(const std::string& path, int vocab_size) {
  if (vocab_size < kFirstByteToken + 256) {
    return InvalidArgument("tokenizer vocab_size " + std::to_string(vocab_size) +
                           " leaves no room for the 256 byte-fallback tokens");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("cannot open tokenizer file " + path);
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Reader r(bytes);
  int32_t max_token_length = 0;
  if (!r.Read(max_token_length)) return InvalidArgument(path + ": short file: no header");
  Tokenizer t;
  t.pieces_.resize(vocab_size);
  t.scores_.resize(vocab_size);
  for (int i = 0; i < vocab_size; ++i) {
    int32_t len = 0;
    if (!r.Read(t.scores_[i]) || !r.Read(len) || len < 0 || !r.ReadString(size_t(len), t.pieces_[i])) {
      return InvalidArgument(path + ": short or corrupt file: token " + std::to_string(i) + " of " +
                             std::to_string(vocab_size) + " is cut off");
    }
    t.ids_.emplace(t.pieces_[i], i);
  }
  return t;
}

int Tokenizer::Lookup(std::string_view piece) const {
  auto it = ids_.find(std::string(piece));
  return it == ids_.end() ? -1 : it->second;
}

std::vector<int> Tokenizer::Encode(std::string_view text, bool bos, bool eos) const {
  std::vector<int> tokens;
  if (bos) tokens.push_back(kBos);
  std::vector<int> body;
  // SentencePiece's add_dummy_prefix: words at the start look like words after a space.
  if (!text.empty()) {
    if (int space = Lookup(" "); space >= 0) body.push_back(space);
  }
  for (size_t i = 0; i < text.size();) {
    // One codepoint: a lead byte plus its continuation bytes (at most 4 bytes, as llama2.c caps it).
    size_t n = 1;
    while (i + n < text.size() && n < 4 && IsContinuationByte(static_cast<unsigned char>(text[i + n]))) ++n;
    const std::string_view cp = text.substr(i, n);
    if (int id = Lookup(cp); id >= 0) {
      body.push_back(id);
    } else {
      for (unsigned char c : cp) body.push_back(kFirstByteToken + c);
    }
    i += n;
  }
  MergePairs(body);
  tokens.insert(tokens.end(), body.begin(), body.end());
  if (eos) tokens.push_back(kEos);
  return tokens;
}

// llama2.c merges the best-scoring pair, leftmost on ties, until no pair merges. It rescans all pairs
// each round; caching each pair's merge and updating only the neighbours of a merge picks the same
// pairs in the same order at linear cost per round.
void Tokenizer::MergePairs(std::vector<int>& tokens) const {
  constexpr float kNone = -std::numeric_limits<float>::infinity();
  std::vector<float> pair_score;
  std::vector<int> pair_id;
  auto eval_pair = [&](size_t i) {
    const int id = Lookup(pieces_[tokens[i]] + pieces_[tokens[i + 1]]);
    pair_id[i] = id;
    pair_score[i] = id >= 0 ? scores_[id] : kNone;
  };
  if (tokens.size() < 2) return;
  pair_score.resize(tokens.size() - 1);
  pair_id.resize(tokens.size() - 1);
  for (size_t i = 0; i + 1 < tokens.size(); ++i) eval_pair(i);
  while (!pair_score.empty()) {
    size_t best = 0;
    for (size_t i = 1; i < pair_score.size(); ++i) {
      if (pair_score[i] > pair_score[best]) best = i;
    }
    if (pair_id[best] < 0) break;
    tokens[best] = pair_id[best];
    tokens.erase(tokens.begin() + best + 1);
    pair_score.erase(pair_score.begin() + best);
    pair_id.erase(pair_id.begin() + best);
    if (best + 1 < tokens.size()) eval_pair(best);
    if (best > 0) eval_pair(best - 1);
  }
}

std::string Tokenizer::Decode(int prev_token, int token) const {
  if (token == kBos || token == kEos || token < 0 || token >= vocab_size()) return {};
  const std::string& piece = pieces_[token];
  if (const int byte = ByteOfPiece(piece); byte >= 0) return std::string(1, static_cast<char>(byte));
  // The dummy prefix space of the first word is not part of the text.
  if (prev_token == kBos && !piece.empty() && piece[0] == ' ') return piece.substr(1);
  return piece;
}

std::string Tokenizer::DecodeAll(std::span<const int> tokens) const {
  std::string out;
  int prev = -1;
  for (int t : tokens) {
    out += Decode(prev, t);
    prev = t;
  }
  return out;
}

}  // namespace kvtier::refmodel
