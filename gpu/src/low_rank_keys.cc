#include "kvtier/gpu/low_rank_keys.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "checks.h"
#include "data_path_math.h"

namespace kvtier::gpu {

Status LowRankShape::Validate() const {
  if (num_layers == 0) return InvalidArgument("num_layers is 0");
  if (num_tokens == 0) return InvalidArgument("num_tokens is 0");
  if (num_kv_heads == 0) return InvalidArgument("num_kv_heads is 0");
  if (head_dim == 0) return InvalidArgument("head_dim is 0");
  const uint64_t limit = std::min<uint64_t>(num_tokens, Channels());
  if (rank == 0 || rank > limit) {
    return InvalidArgument("rank " + std::to_string(rank) + " must be in 1..min(num_tokens, kv_heads * head_dim) = " +
                           std::to_string(limit));
  }
  return Status::Ok();
}

uint64_t LowRankShape::Channels() const { return uint64_t{num_kv_heads} * head_dim; }
uint64_t LowRankShape::AFloats() const { return uint64_t{num_layers} * num_tokens * rank; }
uint64_t LowRankShape::BFloats() const { return uint64_t{num_layers} * rank * Channels(); }

uint64_t ReconstructOutputBytes(const LowRankShape& s, const KeyBlockSelection& sel, DType dtype) {
  return uint64_t{s.num_layers} * sel.num_selected * sel.block_size * s.Channels() * DTypeBytes(dtype);
}

namespace {

// One-sided Jacobi (Hestenes) on the n columns (each m long) of `w`: rotates pairs of columns until all are
// orthogonal, accumulating the rotations in v (n x n, column-major, starts as identity). Afterwards
// w_original = w * v^T, the column norms of w are the singular values. Fixed cyclic order, deterministic.
void OneSidedJacobi(std::vector<double>& w, size_t m, size_t n, std::vector<double>& v) {
  v.assign(n * n, 0.0);
  for (size_t i = 0; i < n; ++i) v[i * n + i] = 1.0;
  constexpr int kMaxSweeps = 60;
  constexpr double kTolerance = 1e-15;
  for (int sweep = 0; sweep < kMaxSweeps; ++sweep) {
    bool rotated = false;
    for (size_t p = 0; p + 1 < n; ++p) {
      for (size_t q = p + 1; q < n; ++q) {
        double* wp = &w[p * m];
        double* wq = &w[q * m];
        double alpha = 0, beta = 0, gamma = 0;
        for (size_t k = 0; k < m; ++k) {
          alpha += wp[k] * wp[k];
          beta += wq[k] * wq[k];
          gamma += wp[k] * wq[k];
        }
        if (gamma == 0.0 || std::abs(gamma) <= kTolerance * std::sqrt(alpha * beta)) continue;
        rotated = true;
        const double zeta = (beta - alpha) / (2.0 * gamma);
        const double t = (zeta >= 0 ? 1.0 : -1.0) / (std::abs(zeta) + std::sqrt(1.0 + zeta * zeta));
        const double c = 1.0 / std::sqrt(1.0 + t * t);
        const double s = c * t;
        for (size_t k = 0; k < m; ++k) {
          const double x = wp[k], y = wq[k];
          wp[k] = c * x - s * y;
          wq[k] = s * x + c * y;
        }
        double* vp = &v[p * n];
        double* vq = &v[q * n];
        for (size_t k = 0; k < n; ++k) {
          const double x = vp[k], y = vq[k];
          vp[k] = c * x - s * y;
          vq[k] = s * x + c * y;
        }
      }
    }
    if (!rotated) break;
  }
}

// Factorizes one layer's keys k ([tokens][channels], row-major) into out.a / out.b at layer `layer`.
void FactorizeLayer(const std::vector<double>& k, uint32_t layer, LowRankKeys& out) {
  const LowRankShape& s = out.shape;
  const size_t tokens = s.num_tokens, channels = s.Channels(), rank = s.rank;
  // Orthogonalize the columns of the narrower orientation: W = K (columns = channels) when tokens >= channels,
  // else W = K^T (columns = tokens). Then K = W' V^T (or K^T = W' V^T, i.e. K = V W'^T).
  const bool by_channels = tokens >= channels;
  const size_t m = by_channels ? tokens : channels, n = by_channels ? channels : tokens;
  std::vector<double> w(m * n);  // column-major: column j is w[j * m ...]
  for (size_t t = 0; t < tokens; ++t) {
    for (size_t c = 0; c < channels; ++c) {
      if (by_channels) {
        w[c * m + t] = k[t * channels + c];
      } else {
        w[t * m + c] = k[t * channels + c];
      }
    }
  }
  std::vector<double> v;
  OneSidedJacobi(w, m, n, v);
  std::vector<double> norm2(n, 0.0);
  for (size_t j = 0; j < n; ++j) {
    for (size_t i = 0; i < m; ++i) norm2[j] += w[j * m + i] * w[j * m + i];
  }
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return norm2[x] > norm2[y]; });
  const double total = std::accumulate(norm2.begin(), norm2.end(), 0.0);
  double dropped = 0;
  for (size_t j = rank; j < n; ++j) dropped += norm2[order[j]];
  out.relative_error[layer] = total > 0 ? std::sqrt(std::max(0.0, dropped) / total) : 0.0;
  float* a = out.a.data() + size_t{layer} * tokens * rank;
  float* b = out.b.data() + size_t{layer} * rank * channels;
  for (size_t j = 0; j < rank; ++j) {
    const size_t col = order[j];
    // by_channels: K = W' V^T: a[:, j] = W'[:, col] (tokens), b[j, :] = V[:, col] (channels).
    // otherwise:   K = V W'^T: a[:, j] = V[:, col] (tokens), b[j, :] = W'[:, col] (channels).
    const double* wcol = &w[col * m];
    const double* vcol = &v[col * n];
    for (size_t t = 0; t < tokens; ++t) a[t * rank + j] = static_cast<float>(by_channels ? wcol[t] : vcol[t]);
    for (size_t c = 0; c < channels; ++c) b[j * channels + c] = static_cast<float>(by_channels ? vcol[c] : wcol[c]);
  }
}

}  // namespace

Result<LowRankKeys> FactorizeKeys(const ChunkShape& shape, std::span<const std::byte> chunk, uint32_t rank) {
  KVTIER_RETURN_IF_ERROR(shape.Validate());
  if (chunk.size() != shape.Bytes()) {
    return InvalidArgument("chunk of " + std::to_string(chunk.size()) + " bytes is not " +
                           std::to_string(shape.Bytes()) + " bytes for its shape");
  }
  LowRankKeys out;
  out.shape = LowRankShape{shape.num_layers, shape.num_tokens, shape.num_kv_heads, shape.head_dim, rank};
  KVTIER_RETURN_IF_ERROR(out.shape.Validate());
  out.a.assign(out.shape.AFloats(), 0.0f);
  out.b.assign(out.shape.BFloats(), 0.0f);
  out.relative_error.assign(shape.num_layers, 0.0);
  const uint64_t channels = out.shape.Channels();
  const uint8_t type = detail::ElementTypeOf(shape.dtype);
  const uint64_t row_bytes = channels * DTypeBytes(shape.dtype);
  const auto* base = reinterpret_cast<const unsigned char*>(chunk.data());
  std::vector<double> k(size_t{shape.num_tokens} * channels);
  for (uint32_t l = 0; l < shape.num_layers; ++l) {
    const unsigned char* keys = base + uint64_t{l} * 2 * shape.num_tokens * row_bytes;
    for (uint32_t t = 0; t < shape.num_tokens; ++t) {
      for (uint64_t c = 0; c < channels; ++c) {
        const float x = detail::LoadElement(keys + t * row_bytes, static_cast<uint32_t>(c), type);
        if (!std::isfinite(x)) {
          return InvalidArgument("key of layer " + std::to_string(l) + ", token " + std::to_string(t) +
                                 ", channel " + std::to_string(c) + " is not finite");
        }
        k[t * channels + c] = x;
      }
    }
    FactorizeLayer(k, l, out);
  }
  return out;
}

Status ReconstructKeysCpu(const LowRankKeysView& keys, const KeyBlockSelection& sel, const RopeParams& rope,
                          DType dtype, std::span<std::byte> out) {
  KVTIER_RETURN_IF_ERROR(detail::CheckReconstructCall(keys, sel, rope, dtype, out.data(), out.size(), false));
  const LowRankShape& s = keys.shape;
  const uint64_t channels = s.Channels();
  const uint32_t pairs = rope.rotary_dim / 2;
  const bool neox = rope.style == RopeStyle::kNeox;
  const uint8_t type = detail::ElementTypeOf(dtype);
  const uint64_t row_bytes = channels * DTypeBytes(dtype);
  const uint64_t head_bytes = uint64_t{s.head_dim} * DTypeBytes(dtype);
  std::vector<float> head(s.head_dim), cos(pairs), sin(pairs);
  auto* dst = reinterpret_cast<unsigned char*>(out.data());
  for (uint32_t l = 0; l < s.num_layers; ++l) {
    const float* a = keys.a + uint64_t{l} * s.num_tokens * s.rank;
    const float* b = keys.b + uint64_t{l} * s.rank * channels;
    for (uint32_t i = 0; i < sel.num_selected; ++i) {
      for (uint32_t slot = 0; slot < sel.block_size; ++slot, dst += row_bytes) {
        const uint64_t t = uint64_t{static_cast<uint32_t>(sel.block_ids[i])} * sel.block_size + slot;
        if (t >= s.num_tokens) {
          std::memset(dst, 0, row_bytes);
          continue;
        }
        RotationTable(rope, sel.first_position + static_cast<int64_t>(t), cos, sin);
        for (uint32_t h = 0; h < s.num_kv_heads; ++h) {
          for (uint32_t d = 0; d < s.head_dim; ++d) {
            head[d] = detail::LowRankElement(a + t * s.rank, b, s.rank, channels, uint64_t{h} * s.head_dim + d);
          }
          unsigned char* out_head = dst + h * head_bytes;
          for (uint32_t d = rope.rotary_dim; d < s.head_dim; ++d) detail::StoreElement(out_head, d, type, head[d]);
          for (uint32_t p = 0; p < pairs; ++p) {
            uint32_t x, y;
            detail::PairDims(neox, rope.rotary_dim, p, &x, &y);
            float rx, ry;
            detail::RotatePair(head[x], head[y], cos[p], sin[p], &rx, &ry);
            detail::StoreElement(out_head, x, type, rx);
            detail::StoreElement(out_head, y, type, ry);
          }
        }
      }
    }
  }
  return Status::Ok();
}

}  // namespace kvtier::gpu
