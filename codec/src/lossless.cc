// lossless: each stream is one slice of codec_param consecutive elements, byte-shuffled into planes
// (all byte 0s, then all byte 1s, ...) and compressed as a single zstd frame. The exponent planes of
// KV compress well; the mantissa planes are near random and zstd stores them as raw blocks, so
// decoding them is a copy.
#include <emmintrin.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "codec_impl.h"
#include "quant.h"

namespace kvtier::codec::internal {
namespace {

constexpr uint64_t kSliceBytes = 1 << 20;

struct ZstdContexts {
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx{nullptr, ZSTD_freeCCtx};
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx{nullptr, ZSTD_freeDCtx};
  std::vector<std::byte> scratch;
};

// Per-thread contexts and scratch: created on a thread's first use, reused by every later call.
ZstdContexts& ThreadContexts() {
  thread_local ZstdContexts ctx;
  return ctx;
}

void Shuffle(const std::byte* src, size_t n, size_t width, std::byte* dst) {
  size_t i = 0;
  if (width == 2) {
    const __m128i low = _mm_set1_epi16(0x00ff);
    for (; i + 16 <= n; i += 16) {
      const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i + 16));
      const __m128i lo = _mm_packus_epi16(_mm_and_si128(a, low), _mm_and_si128(b, low));
      const __m128i hi = _mm_packus_epi16(_mm_srli_epi16(a, 8), _mm_srli_epi16(b, 8));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), lo);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + n + i), hi);
    }
  }
  for (; i < n; ++i) {
    for (size_t p = 0; p < width; ++p) dst[p * n + i] = src[i * width + p];
  }
}

void Unshuffle(const std::byte* src, size_t n, size_t width, std::byte* dst) {
  size_t i = 0;
  auto load = [&](size_t plane) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + plane * n + i)); };
  auto store = [&](size_t at, __m128i v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + at), v); };
  if (width == 2) {
    for (; i + 16 <= n; i += 16) {
      const __m128i lo = load(0), hi = load(1);
      store(2 * i, _mm_unpacklo_epi8(lo, hi));
      store(2 * i + 16, _mm_unpackhi_epi8(lo, hi));
    }
  } else if (width == 4) {
    for (; i + 16 <= n; i += 16) {
      const __m128i p0 = load(0), p1 = load(1), p2 = load(2), p3 = load(3);
      const __m128i a = _mm_unpacklo_epi8(p0, p1), b = _mm_unpackhi_epi8(p0, p1);
      const __m128i c = _mm_unpacklo_epi8(p2, p3), d = _mm_unpackhi_epi8(p2, p3);
      store(4 * i, _mm_unpacklo_epi16(a, c));
      store(4 * i + 16, _mm_unpackhi_epi16(a, c));
      store(4 * i + 32, _mm_unpacklo_epi16(b, d));
      store(4 * i + 48, _mm_unpackhi_epi16(b, d));
    }
  }
  for (; i < n; ++i) {
    for (size_t p = 0; p < width; ++p) dst[i * width + p] = src[p * n + i];
  }
}

std::string ZstdError(size_t code) { return ZSTD_getErrorName(code); }

}  // namespace

Status EncodeLossless(const KvView& kv, const EncodeOptions& options, EncodedStreams& out) {
  const size_t width = DTypeBytes(kv.shape.dtype);
  const uint64_t total = kv.shape.NumValues();
  const uint64_t slice = kSliceBytes / width;
  const size_t n = static_cast<size_t>((total + slice - 1) / slice);
  out.params.codec_param = static_cast<uint32_t>(slice);
  out.streams.resize(n);
  return RunParallel(options.executor, n, [&](size_t s) -> Status {
    ZstdContexts& ctx = ThreadContexts();
    if (!ctx.cctx) ctx.cctx.reset(ZSTD_createCCtx());
    if (!ctx.cctx) return Internal("lossless: cannot create a zstd compression context");
    const uint64_t first = s * slice;
    const size_t count = static_cast<size_t>(std::min(slice, total - first));
    const size_t bytes = count * width;
    if (ctx.scratch.size() < bytes) ctx.scratch.resize(bytes);
    Shuffle(kv.data.data() + first * width, count, width, ctx.scratch.data());
    auto& dst = out.streams[s];
    dst.resize(ZSTD_compressBound(bytes));
    const size_t got = ZSTD_compressCCtx(ctx.cctx.get(), dst.data(), dst.size(), ctx.scratch.data(), bytes,
                                         options.zstd_level);
    if (ZSTD_isError(got)) return Internal("lossless: zstd compression failed: " + ZstdError(got));
    dst.resize(got);
    return Status::Ok();
  });
}

Status DecodeLossless(const ParsedContainer& in, std::span<std::byte> out, const DecodeOptions& options) {
  const size_t width = DTypeBytes(in.info.shape.dtype);
  const uint64_t total = in.info.shape.NumValues();
  const uint64_t slice = in.params.codec_param;
  if (slice == 0) return InvalidArgument("lossless container has codec_param 0 (elements per stream)");
  const uint64_t want_streams = (total + slice - 1) / slice;
  if (want_streams != in.entries.size()) {
    return InvalidArgument("lossless container has " + std::to_string(in.entries.size()) + " streams, " +
                           std::to_string(total) + " elements in slices of " + std::to_string(slice) + " need " +
                           std::to_string(want_streams));
  }
  return RunParallel(options.executor, in.entries.size(), [&](size_t s) -> Status {
    auto src = StreamBytes(in, static_cast<uint32_t>(s));
    if (!src.ok()) return src.status();
    const uint64_t first = s * slice;
    const size_t count = static_cast<size_t>(std::min(slice, total - first));
    const size_t bytes = count * width;
    const unsigned long long content = ZSTD_getFrameContentSize(src->data(), src->size());
    if (content != bytes) {
      return InvalidArgument("lossless stream " + std::to_string(s) + ": zstd frame declares " +
                             (content == ZSTD_CONTENTSIZE_UNKNOWN || content == ZSTD_CONTENTSIZE_ERROR
                                  ? std::string("no valid size")
                                  : std::to_string(content) + " bytes") +
                             ", the slice has " + std::to_string(bytes));
    }
    if (ZSTD_findFrameCompressedSize(src->data(), src->size()) != src->size()) {
      return InvalidArgument("lossless stream " + std::to_string(s) + " is not exactly one zstd frame");
    }
    ZstdContexts& ctx = ThreadContexts();
    if (!ctx.dctx) ctx.dctx.reset(ZSTD_createDCtx());
    if (!ctx.dctx) return Internal("lossless: cannot create a zstd decompression context");
    if (ctx.scratch.size() < bytes) ctx.scratch.resize(bytes);
    const size_t got = ZSTD_decompressDCtx(ctx.dctx.get(), ctx.scratch.data(), bytes, src->data(), src->size());
    if (ZSTD_isError(got)) {
      return InvalidArgument("lossless stream " + std::to_string(s) + ": zstd: " + ZstdError(got));
    }
    if (got != bytes) {
      return InvalidArgument("lossless stream " + std::to_string(s) + " decompressed to " + std::to_string(got) +
                             " bytes, expected " + std::to_string(bytes));
    }
    Unshuffle(ctx.scratch.data(), count, width, out.data() + first * width);
    return Status::Ok();
  });
}

}  // namespace kvtier::codec::internal
