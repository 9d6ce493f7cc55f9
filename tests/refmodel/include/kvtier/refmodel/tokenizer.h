// Tokenizer: llama2.c's SentencePiece-style BPE over a binary vocabulary (tok512.bin).
//
// File format: int32 max_token_length, then per token: float32 merge score, int32 byte length, the
// bytes. Ids 0 <unk>, 1 BOS, 2 EOS, 3..258 the byte-fallback tokens <0x00>..<0xFF>.
//
// Encode follows llama2.c exactly: a dummy-prefix " " token when the text is nonempty, one token per
// UTF-8 codepoint found in the vocabulary (else one byte-fallback token per byte), then repeated
// merging of the adjacent pair whose merged token has the highest score (leftmost on ties). Decode
// follows llama2.c too: the leading space of a piece right after BOS is dropped and <0xNN> pieces
// become the raw byte.
//
// Ownership and thread safety: a value type; const methods may be called from many threads at once.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "kvtier/api/status.h"

namespace kvtier::refmodel {

class Tokenizer {
 public:
  static constexpr int kUnk = 0;
  static constexpr int kBos = 1;
  static constexpr int kEos = 2;
  static constexpr int kFirstByteToken = 3;  // id of <0x00>

  // `vocab_size` comes from the model's config; the file must hold at least that many tokens.
  static Result<Tokenizer> Load(const std::string& path, int vocab_size);

  std::vector<int> Encode(std::string_view text, bool bos, bool eos) const;
  // Text of `token` when it follows `prev_token`. BOS and EOS decode to nothing.
  std::string Decode(int prev_token, int token) const;
  // Concatenated Decode of a token list; the first token is treated as following nothing, so a
  // sequence that starts with BOS round-trips Encode(text, /*bos=*/true, ...).
  std::string DecodeAll(std::span<const int> tokens) const;

  int vocab_size() const { return static_cast<int>(pieces_.size()); }
  const std::string& piece(int token) const { return pieces_[token]; }
  float score(int token) const { return scores_[token]; }

 private:
  Tokenizer() = default;
  int Lookup(std::string_view piece) const;  // -1 when absent
  void MergePairs(std::vector<int>& tokens) const;

  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::unordered_map<std::string, int> ids_;  // the first id of each piece
};

}  // namespace kvtier::refmodel
