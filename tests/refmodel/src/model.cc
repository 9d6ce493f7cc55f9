#include "kvtier/refmodel/model.h"

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>

namespace kvtier::refmodel {
namespace {

// Dimensions beyond this are not a small test model; the bound also keeps size arithmetic far from
// overflow.
constexpr int64_t kMaxDim = 1 << 20;

Status CheckDims(const Config& c, const std::string& name) {
  auto bad = [&](const std::string& what) { return InvalidArgument(name + ": bad dimensions: " + what); };
  const int dims[] = {c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.seq_len};
  for (int d : dims) {
    if (d <= 0 || d > kMaxDim) return bad("every header field must be in [1, 2^20]");
  }
  if (c.dim % c.n_heads != 0) return bad("dim " + std::to_string(c.dim) + " is not a multiple of n_heads");
  if (c.n_kv_heads > c.n_heads || c.n_heads % c.n_kv_heads != 0) {
    return bad("n_heads " + std::to_string(c.n_heads) + " is not a multiple of n_kv_heads " +
               std::to_string(c.n_kv_heads));
  }
  if (c.head_size() % 2 != 0) return bad("head_size " + std::to_string(c.head_size()) + " is odd (RoPE rotates pairs)");
  return Status::Ok();
}

// Floats in the file after the header, in file order; the classifier only when it is not shared.
int64_t WeightFloats(const Config& c, bool shared_classifier) {
  const int64_t dim = c.dim, hidden = c.hidden_dim, layers = c.n_layers, kv = c.kv_dim();
  int64_t n = int64_t(c.vocab_size) * dim;                   // token embedding
  n += layers * (dim + dim * dim + 2 * dim * kv + dim * dim); // rms_att, wq, wk, wv, wo
  n += layers * (dim + 3 * dim * hidden);                    // rms_ffn, w1, w2, w3
  n += dim;                                                  // rms_final
  n += int64_t(c.seq_len) * c.head_size();                   // legacy RoPE tables (cos and sin halves)
  if (!shared_classifier) n += int64_t(c.vocab_size) * dim;
  return n;
}

// Walks the weight buffer in file order, handing out consecutive arrays.
class Cursor {
 public:
  explicit Cursor(const float* p) : p_(p) {}
  const float* Take(int64_t n) {
    const float* at = p_;
    p_ += n;
    return at;
  }

 private:
  const float* p_;
};

}  // namespace

Result<Model> Model::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("cannot open model file " + path);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return InvalidArgument("error reading model file " + path);
  return FromBytes(std::as_bytes(std::span<const char>(bytes)), path);
}

Result<Model> Model::FromBytes(std::span<const std::byte> bytes, const std::string& name) {
  if (bytes.size() < kHeaderBytes) {
    return InvalidArgument(name + ": short file: " + std::to_string(bytes.size()) +
                           " bytes, less than the 28-byte header");
  }
  int32_t h[7];
  std::memcpy(h, bytes.data(), sizeof(h));
  Model m;
  Config& c = m.config_;
  c.dim = h[0], c.hidden_dim = h[1], c.n_layers = h[2], c.n_heads = h[3], c.n_kv_heads = h[4];
  // llama2.c's convention: a negative vocab_size says the classifier is a separate matrix.
  const bool shared_classifier = h[5] > 0;
  c.vocab_size = h[5] == INT32_MIN ? 0 : (h[5] < 0 ? -h[5] : h[5]);
  c.seq_len = h[6];
  KVTIER_RETURN_IF_ERROR(CheckDims(c, name));

  const int64_t floats = WeightFloats(c, shared_classifier);
  const uint64_t expected = kHeaderBytes + uint64_t(floats) * sizeof(float);
  if (bytes.size() != expected) {
    return InvalidArgument(name + ": size mismatch: file has " + std::to_string(bytes.size()) +
                           " bytes, the header's dimensions imply " + std::to_string(expected) +
                           (bytes.size() < expected ? " (truncated?)" : " (trailing data?)"));
  }
  auto weights = std::make_shared<std::vector<float>>(floats);
  std::memcpy(weights->data(), bytes.data() + kHeaderBytes, size_t(floats) * sizeof(float));

  const int64_t dim = c.dim, hidden = c.hidden_dim, kv = c.kv_dim(), L = c.n_layers;
  Cursor cur(weights->data());
  m.token_embedding_ = cur.Take(int64_t(c.vocab_size) * dim);
  // The file stores each kind of weight for all layers together.
  const float* rms_att = cur.Take(L * dim);
  const float* wq = cur.Take(L * dim * dim);
  const float* wk = cur.Take(L * dim * kv);
  const float* wv = cur.Take(L * dim * kv);
  const float* wo = cur.Take(L * dim * dim);
  const float* rms_ffn = cur.Take(L * dim);
  const float* w1 = cur.Take(L * dim * hidden);
  const float* w2 = cur.Take(L * hidden * dim);
  const float* w3 = cur.Take(L * hidden * dim);
  m.rms_final_ = cur.Take(dim);
  cur.Take(int64_t(c.seq_len) * c.head_size());  // legacy RoPE tables: RoPE is computed instead
  m.classifier_ = shared_classifier ? m.token_embedding_ : cur.Take(int64_t(c.vocab_size) * dim);
  for (int64_t l = 0; l < L; ++l) {
    m.layers_.push_back(LayerWeights{rms_att + l * dim, wq + l * dim * dim, wk + l * dim * kv, wv + l * dim * kv,
                                     wo + l * dim * dim, rms_ffn + l * dim, w1 + l * dim * hidden,
                                     w2 + l * hidden * dim, w3 + l * hidden * dim});
  }
  m.weights_ = std::move(weights);
  return m;
}

ModelFingerprint KvFingerprint(const Config& config, uint32_t chunk_tokens) {
  ModelFingerprint fp;
  fp.model_id = "karpathy/stories260K";
  fp.num_layers = uint32_t(config.n_layers);
  fp.num_kv_heads = uint32_t(config.n_kv_heads);
  fp.head_dim = uint32_t(config.head_size());
  fp.dtype = DType::kFp32;
  fp.rope_theta = config.rope_theta;
  fp.rope_style = RopeStyle::kGptj;  // the forward pass rotates interleaved pairs (2i, 2i + 1)
  fp.rotary_dim = uint32_t(config.head_size());
  fp.keys_post_rope = true;
  fp.chunk_tokens = chunk_tokens;
  return fp;
}

}  // namespace kvtier::refmodel
