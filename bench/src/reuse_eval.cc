// kvtier bench-reuse: see kvtier/bench/reuse_eval.h for what is measured and how.
#include "kvtier/bench/reuse_eval.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>

#include "kvtier/api/reuse.h"
#include "kvtier/client/blend.h"
#include "kvtier/client/cachecraft.h"
#include "kvtier/client/chunker.h"
#include "kvtier/client/client.h"
#include "kvtier/client/rope.h"
#include "kvtier/kvstore/server.h"
#include "kvtier/refmodel/blend.h"
#include "kvtier/refmodel/eval.h"
#include "kvtier/refmodel/model.h"
#include "kvtier/refmodel/session.h"
#include "kvtier/refmodel/tokenizer.h"
#include "reuse_eval_internal.h"
#include "test_model.h"

namespace kvtier::bench {
namespace {

using refmodel::KeyForm;
using refmodel::Session;

constexpr char kNamespace[] = "kvtier-bench-reuse";
constexpr int kBos = 1;

struct Passage {
  std::vector<int> tokens;        // passage_tokens
  std::vector<int> continuation;  // continuation_tokens that follow it in its piece
  ChunkKey content_key;
};

// A prompt under evaluation: BOS + passages in `order`; positions [0, n - 1) are prefilled by each
// method, the last prompt token and the continuation are scored.
struct Prompt {
  std::vector<int> order;
  std::vector<int> tokens;
  std::vector<ChunkKey> content_keys;  // of the passages, in prompt order
  int begin(size_t i, int passage_tokens) const { return 1 + int(i) * passage_tokens; }
  int prefill_tokens() const { return int(tokens.size()) - 1; }
};

struct Env {
  const ReuseEvalOptions& o;
  refmodel::Model model;
  ModelFingerprint fp;
  Chunker chunker;
  std::unique_ptr<Server> server;  // null with --endpoint
  std::unique_ptr<Client> client;
  std::vector<Passage> passages;
  std::mt19937_64 rng;
  int stored_variants = 0;
  std::vector<double> seeded_ci;
};

std::vector<uint32_t> U32(std::span<const int> tokens) { return std::vector<uint32_t>(tokens.begin(), tokens.end()); }

std::span<const std::byte> Bytes(std::span<const float> v) { return std::as_bytes(v); }
std::span<std::byte> Bytes(std::span<float> v) { return std::as_writable_bytes(v); }

// Pieces of the held-out corpus long enough for a passage and its continuation, spread over the corpus.
Status LoadPassages(Env& env, const refmodel::Tokenizer& tokenizer, const std::string& corpus) {
  const auto pieces = refmodel::SplitCorpus(corpus);
  const size_t need = size_t(env.o.passage_tokens + env.o.continuation_tokens);
  const size_t stride = std::max<size_t>(1, pieces.size() / size_t(env.o.passages * 4));
  for (size_t i = 0; i < pieces.size() && env.passages.size() < size_t(env.o.passages); i += stride) {
    std::vector<int> t = tokenizer.Encode(pieces[i], /*bos=*/false, /*eos=*/false);
    if (t.size() < need) continue;
    Passage p;
    p.tokens.assign(t.begin(), t.begin() + env.o.passage_tokens);
    p.continuation.assign(t.begin() + env.o.passage_tokens, t.begin() + long(need));
    p.content_key = env.chunker.ContentKey(U32(p.tokens));
    env.passages.push_back(std::move(p));
  }
  if (env.passages.size() < size_t(env.o.passages)) {
    return InvalidArgument("the corpus has only " + std::to_string(env.passages.size()) + " pieces of " +
                           std::to_string(need) + " tokens, " + std::to_string(env.o.passages) + " wanted");
  }
  return Status::Ok();
}

Status Connect(Env& env, std::ostream& progress) {
  std::string endpoint = env.o.endpoint;
  if (endpoint.empty()) {
    ServerConfig config;
    config.listen = "127.0.0.1:0";
    config.metrics_listen = "";
    config.log_level = LogLevel::kWarning;
    config.store.host_capacity_bytes = 256ull << 20;
    auto server = Server::Start(config);
    if (!server.ok()) return server.status();
    env.server = std::move(server).value();
    endpoint = env.server->address();
    progress << "kvtier: in-process server on " << endpoint << "\n";
  }
  ClientOptions co;
  co.endpoint = endpoint;
  co.name_space = kNamespace;
  co.fingerprint = env.fp;
  co.local_path = LocalPathMode::kOff;
  auto client = Client::Connect(co);
  if (!client.ok()) return client.status();
  env.client = std::move(client).value();
  return Status::Ok();
}

std::vector<float> ExportKv(const Session& s, int begin, int end) {
  std::vector<float> kv(size_t(end - begin) * s.KvFloatsPerToken());
  Status st = s.ExportKv(begin, end, KeyForm::kPostRope, kv);
  (void)st;  // ranges come from the prompt just run
  return kv;
}

Status PutChunk(Env& env, const ChunkKey& key, std::span<const int> tokens, std::span<const float> kv, uint32_t base,
                const v1::ReuseMetadata* reuse) {
  PutOptions po;
  po.base_position = base;
  po.reuse = reuse;
  auto put = env.client->Put(key, U32(tokens), Bytes(kv), po);
  if (!put.ok()) return put.status();
  if (reuse != nullptr && put->variant_admitted && !put->already_present) ++env.stored_variants;
  return Status::Ok();
}

v1::ReuseMetadata Metadata(const Passage& p, std::span<const ChunkKey> context, const refmodel::ChunkAttention& a) {
  v1::ReuseMetadata m;
  const auto ck = p.content_key.ToBytes();
  m.set_content_key(ck.data(), ck.size());
  for (const ChunkKey& k : context) {
    const auto b = k.ToBytes();
    m.add_context_keys(b.data(), b.size());
  }
  for (float w : a.context_attention) m.add_context_attention(w);
  m.set_context_impact(a.context_impact);
  for (float x : a.layer_context_impact) m.add_layer_context_impact(x);
  for (float x : a.token_context_attention) m.add_token_context_attention(x);
  return m;
}

// Prefills BOS + the passages in `order` with attention statistics and stores every passage as a variant
// computed behind the passages before it, plus the prompt's prefix chain.
Status StoreRequest(Env& env, std::span<const int> order) {
  const int L = env.o.passage_tokens;
  std::vector<int> tokens = {kBos};
  std::vector<refmodel::ChunkSpan> spans;
  for (int idx : order) {
    spans.push_back({int(tokens.size()), int(tokens.size()) + L});
    tokens.insert(tokens.end(), env.passages[idx].tokens.begin(), env.passages[idx].tokens.end());
  }
  Session s(env.model);
  auto stats = refmodel::PrefillWithAttentionStats(s, tokens, spans);
  if (!stats.ok()) return stats.status();
  std::vector<ChunkKey> context;
  ChunkKey parent = env.chunker.PrefixKey(ChunkKey{}, std::vector<uint32_t>{kBos});
  KVTIER_RETURN_IF_ERROR(PutChunk(env, parent, std::vector<int>{kBos}, ExportKv(s, 0, 1), 0, nullptr));
  for (size_t i = 0; i < order.size(); ++i) {
    const Passage& p = env.passages[order[i]];
    const auto kv = ExportKv(s, spans[i].begin, spans[i].end);
    const v1::ReuseMetadata meta = Metadata(p, context, (*stats)[i]);
    if (!context.empty()) env.seeded_ci.push_back((*stats)[i].context_impact);
    KVTIER_RETURN_IF_ERROR(PutChunk(env, VariantKey(p.content_key, context), p.tokens, kv, uint32_t(spans[i].begin), &meta));
    parent = env.chunker.PrefixKey(parent, U32(p.tokens));
    KVTIER_RETURN_IF_ERROR(PutChunk(env, parent, p.tokens, kv, uint32_t(spans[i].begin), nullptr));
    context.push_back(p.content_key);
  }
  return Status::Ok();
}

std::vector<int> RandomOrder(Env& env) {
  std::uniform_int_distribution<int> count(env.o.min_passages, env.o.max_passages);
  std::vector<int> all(env.passages.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = int(i);
  std::shuffle(all.begin(), all.end(), env.rng);
  all.resize(size_t(count(env.rng)));
  return all;
}

Prompt MakePrompt(const Env& env, std::vector<int> order) {
  Prompt p;
  p.order = std::move(order);
  p.tokens = {kBos};
  for (int idx : p.order) {
    p.tokens.insert(p.tokens.end(), env.passages[idx].tokens.begin(), env.passages[idx].tokens.end());
    p.content_keys.push_back(env.passages[idx].content_key);
  }
  return p;
}

// Writes one chunk's KV ([layer][K|V][token][row]) into a buffer of `total` positions of the same layout.
void PlaceChunk(std::span<const float> chunk, int tokens, int begin, int total, int layers, int row,
                std::span<float> all) {
  const size_t block = size_t(tokens) * size_t(row), all_block = size_t(total) * size_t(row);
  for (int l = 0; l < layers; ++l) {
    for (int kv = 0; kv < 2; ++kv) {
      const float* src = chunk.data() + (size_t(l) * 2 + kv) * block;
      float* dst = all.data() + (size_t(l) * 2 + kv) * all_block + size_t(begin) * size_t(row);
      std::copy_n(src, block, dst);
    }
  }
}

// The leading `usable` tokens of a chunk of `tokens` tokens, in the chunk layout.
std::vector<float> Head(std::span<const float> chunk, int tokens, int usable, const refmodel::Config& c) {
  const size_t row = size_t(c.kv_dim());
  std::vector<float> head(size_t(usable) * size_t(c.n_layers) * 2 * row);
  for (size_t b = 0; b < size_t(c.n_layers) * 2; ++b) {
    std::copy_n(chunk.data() + b * size_t(tokens) * row, size_t(usable) * row, head.data() + b * size_t(usable) * row);
  }
  return head;
}

// Cached KV for a prompt's prefill: every passage's chunk (re-rotated from its base position to its place);
// BOS has none and is computed.
struct CachedPrompt {
  std::vector<float> kv;
  std::vector<uint8_t> has_cached;
  int reusable = 0;
};

Status Assemble(const Env& env, const Prompt& prompt, std::vector<std::vector<float>>& chunks,
                std::span<const uint32_t> bases, CachedPrompt& out) {
  const int n = prompt.prefill_tokens(), L = env.o.passage_tokens;
  const refmodel::Config& c = env.model.config();
  out.kv.assign(size_t(n) * size_t(c.n_layers) * 2 * size_t(c.kv_dim()), 0.0f);
  out.has_cached.assign(size_t(n), 0);
  out.reusable = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const int begin = prompt.begin(i, L);
    const int64_t shift = int64_t(begin) - int64_t(bases[i]);
    KVTIER_RETURN_IF_ERROR(RerotateKeys(env.fp, uint32_t(L), shift, Bytes(std::span<float>(chunks[i]))));
    const int usable = std::min(L, n - begin);  // the prompt's last token is scored, not prefilled
    if (usable < L) {
      PlaceChunk(Head(chunks[i], L, usable, c), usable, begin, n, c.n_layers, c.kv_dim(), out.kv);
    } else {
      PlaceChunk(chunks[i], L, begin, n, c.n_layers, c.kv_dim(), out.kv);
    }
    std::fill_n(out.has_cached.begin() + begin, usable, uint8_t(1));
    out.reusable += usable;
  }
  return Status::Ok();
}

// One float buffer per chunk and the byte spans a get writes into.
struct ChunkBuffers {
  std::vector<std::vector<float>> floats;
  std::vector<std::span<std::byte>> dests;
  ChunkBuffers(size_t chunks, size_t floats_per_chunk) : floats(chunks, std::vector<float>(floats_per_chunk)) {
    for (auto& f : floats) dests.push_back(Bytes(std::span<float>(f)));
  }
};

size_t ChunkFloats(const Env& env) {
  return size_t(env.o.passage_tokens) * size_t(env.model.config().n_layers) * 2 * size_t(env.model.config().kv_dim());
}

Status Blend(const Env& env, const Prompt& prompt, const CachedPrompt& cached, const refmodel::BlendOptions& options,
             const std::string& method, double param, Evaluator& eval) {
  Session s(env.model);
  std::span<const int> prefill = std::span<const int>(prompt.tokens).first(size_t(prompt.prefill_tokens()));
  auto stats = refmodel::BlendPrefill(s, prefill, cached.kv, cached.has_cached, options);
  if (!stats.ok()) return stats.status();
  return eval.Score(method, param, s, stats->recomputed, stats->reusable, stats->flops);
}

// Prefix caching: the leading chunks of the prompt's prefix chain that hit in kvtier, the rest computed.
Status EvaluatePrefix(Env& env, const Prompt& prompt, Evaluator& eval) {
  const int n = prompt.prefill_tokens(), L = env.o.passage_tokens;
  const refmodel::Config& c = env.model.config();
  std::vector<ChunkKey> chain = {env.chunker.PrefixKey(ChunkKey{}, std::vector<uint32_t>{kBos})};
  for (int idx : prompt.order) chain.push_back(env.chunker.PrefixKey(chain.back(), U32(env.passages[idx].tokens)));
  auto lookup = env.client->Lookup(chain);
  if (!lookup.ok()) return lookup.status();
  const size_t hits = lookup->leading_hits;
  Session s(env.model);
  int reused = 0;
  if (hits > 0) {
    ChunkBuffers buffers(hits, ChunkFloats(env));
    auto got = env.client->GetBatch(std::span<const ChunkKey>(chain).first(hits), buffers.dests);
    if (!got.ok()) return got.status();
    for (size_t i = 0; i < hits && reused < n; ++i) {
      const int tokens = i == 0 ? 1 : L;
      if (!(*got)[i].found) return DataLoss("prefix chunk " + std::to_string(i) + " hit in Lookup, missed in Get");
      const int usable = std::min(tokens, n - reused);
      const auto head = Head(buffers.floats[i], tokens, usable, c);
      KVTIER_RETURN_IF_ERROR(s.InjectKv(reused, head, usable, KeyForm::kPostRope));
      reused += usable;
    }
  }
  if (reused < n) {
    std::span<const int> rest = std::span<const int>(prompt.tokens).subspan(size_t(reused), size_t(n - reused));
    if (auto r = s.ForwardMany(rest); !r.ok()) return r.status();
  }
  const double flops = refmodel::PrefillFlops(c, n) - refmodel::PrefillFlops(c, reused);
  return eval.Score("prefix", 0, s, n - std::max(reused, 1), n - 1, flops);
}

CacheBlendOptions CacheBlendConfig(const ReuseEvalOptions& o, double ratio) {
  CacheBlendOptions cb;
  cb.metric = o.cacheblend_metric == "key" ? DeviationMetric::kKey : DeviationMetric::kValue;
  cb.check_layers.assign(o.cacheblend_check_layers.begin(), o.cacheblend_check_layers.end());
  cb.ratios.clear();
  const size_t k = cb.check_layers.size();
  for (size_t i = 0; i < k; ++i) cb.ratios.push_back(std::min(1.0, ratio * std::pow(o.cacheblend_taper, double(k - 1 - i))));
  return cb;
}

// Naive reuse and CacheBlend: every passage as computed alone behind BOS, moved to its new position. Those
// chunks are read by their prefix-mode keys (BOS chunk, passage): the variant policy may have replaced the
// alone variant in its group by then.
Status EvaluateAlone(Env& env, const Prompt& prompt, Evaluator& eval) {
  const ChunkKey bos = env.chunker.PrefixKey(ChunkKey{}, std::vector<uint32_t>{kBos});
  std::vector<ChunkKey> keys;
  for (int idx : prompt.order) keys.push_back(env.chunker.PrefixKey(bos, U32(env.passages[size_t(idx)].tokens)));
  ChunkBuffers buffers(keys.size(), ChunkFloats(env));
  auto got = env.client->GetBatch(keys, buffers.dests);
  if (!got.ok()) return got.status();
  std::vector<uint32_t> bases;
  for (size_t i = 0; i < got->size(); ++i) {
    if (!(*got)[i].found) return DataLoss("the alone variant of passage " + std::to_string(prompt.order[i]) + " is missing");
    bases.push_back((*got)[i].base_position);
  }
  CachedPrompt cached;
  KVTIER_RETURN_IF_ERROR(Assemble(env, prompt, buffers.floats, bases, cached));
  KVTIER_RETURN_IF_ERROR(Blend(env, prompt, cached, refmodel::BlendOptions{}, "naive", 0, eval));
  for (double ratio : env.o.cacheblend_ratios) {
    CacheBlendOptions cb = CacheBlendConfig(env.o, ratio);
    Status selector_status;
    refmodel::BlendOptions options;
    options.check_layers.assign(cb.check_layers.begin(), cb.check_layers.end());
    options.select = [&](const refmodel::CheckLayerView& view) {
      std::vector<float> dev(view.positions.size());
      const bool key = cb.metric == DeviationMetric::kKey;
      Status st = SquaredDeviation(key ? view.fresh_key : view.fresh_value, key ? view.cached_key : view.cached_value,
                                   size_t(view.kv_dim), dev);
      auto kept = st.ok() ? SelectByDeviation(cb, size_t(view.check_index), view.positions, dev, view.must_recompute,
                                              size_t(cached.reusable))
                          : Result<std::vector<int>>(st);
      if (!kept.ok()) {
        selector_status = kept.status();
        return std::vector<int>(view.positions.begin(), view.positions.end());
      }
      return std::move(kept).value();
    };
    KVTIER_RETURN_IF_ERROR(Blend(env, prompt, cached, options, "cacheblend", ratio, eval));
    KVTIER_RETURN_IF_ERROR(selector_status);
  }
  return Status::Ok();
}

// Cache-Craft: the server's best variant of each passage for the new context, and a plan from its metadata.
Status EvaluateBestVariants(Env& env, const Prompt& prompt, Evaluator& eval, double default_ci, double* match_sum,
                            int* alone, int* chosen) {
  ChunkBuffers buffers(prompt.content_keys.size(), ChunkFloats(env));
  auto got = env.client->GetBestVariants(prompt.content_keys, prompt.content_keys, buffers.dests);
  if (!got.ok()) return got.status();
  std::vector<uint32_t> bases;
  for (size_t i = 0; i < got->size(); ++i) {
    const VariantGetResult& v = (*got)[i];
    if (!v.chunk.found) return DataLoss("no variant of passage " + std::to_string(prompt.order[i]));
    bases.push_back(v.chunk.base_position);
    *match_sum += v.context_match;
    *alone += v.reuse.context_keys_size() == 0;
    ++*chosen;
  }
  CachedPrompt cached;
  KVTIER_RETURN_IF_ERROR(Assemble(env, prompt, buffers.floats, bases, cached));
  const int n = prompt.prefill_tokens();
  for (double alpha : env.o.cachecraft_alphas) {
    CacheCraftOptions cc;
    cc.alpha = alpha;
    cc.default_context_impact = default_ci;
    refmodel::BlendOptions options;
    for (size_t i = 0; i < got->size(); ++i) {
      const VariantGetResult& v = (*got)[i];
      VariantReuse in;
      in.num_tokens = uint32_t(env.o.passage_tokens);
      in.computed_alone = v.reuse.context_keys_size() == 0;
      in.context_impact = std::clamp(double(v.reuse.context_impact()), 0.0, 1.0);
      in.token_context_attention = std::span<const float>(v.reuse.token_context_attention().data(),
                                                          size_t(v.reuse.token_context_attention_size()));
      in.context_match = std::clamp(v.context_match, 0.0, 1.0);
      in.fallback_token_scores = v.group_token_context_attention;
      auto plan = PlanRecompute(cc, in);
      if (!plan.ok()) return plan.status();
      for (uint32_t t : plan->tokens) {
        const int pos = prompt.begin(i, env.o.passage_tokens) + int(t);
        if (pos < n) options.selected.push_back(pos);
      }
    }
    KVTIER_RETURN_IF_ERROR(Blend(env, prompt, cached, options, "cachecraft", alpha, eval));
  }
  return Status::Ok();
}

// What the options ask of the model: the prompt fits its context, the check layers exist.
Status CheckAgainstModel(const ReuseEvalOptions& o, const refmodel::Config& c) {
  if (1 + o.max_passages * o.passage_tokens + o.continuation_tokens > c.seq_len) {
    return InvalidArgument("a prompt of " + std::to_string(o.max_passages) + " passages of " +
                           std::to_string(o.passage_tokens) + " tokens plus the continuation exceeds the model's " +
                           std::to_string(c.seq_len) + " positions");
  }
  return CacheBlendConfig(o, 1.0).Validate(uint32_t(c.n_layers));
}

double Mean(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  return v.empty() ? 0 : sum / double(v.size());
}

}  // namespace

std::string DefaultReuseDataDir() { return KVTIER_TEST_DATA_DIR; }

Status ReuseEvalOptions::Validate() const {
  if (passages < 2 || passage_tokens < 1 || continuation_tokens < 2 || prompts < 1 || seed_prompts < 0) {
    return InvalidArgument("bench-reuse needs >= 2 passages, >= 1 passage token, >= 2 continuation tokens, >= 1 prompt");
  }
  if (min_passages < 1 || max_passages < min_passages || max_passages > passages) {
    return InvalidArgument("passages per prompt must satisfy 1 <= min <= max <= pool size");
  }
  for (double r : cacheblend_ratios) {
    if (!(r > 0 && r <= 1)) return InvalidArgument("CacheBlend ratios must be in (0, 1]");
  }
  if (cacheblend_metric != "key" && cacheblend_metric != "value") {
    return InvalidArgument("CacheBlend metric must be key or value, not '" + cacheblend_metric + "'");
  }
  if (!(cacheblend_taper >= 1.0)) return InvalidArgument("CacheBlend taper must be >= 1");
  for (int l : cacheblend_check_layers) {
    if (l < 0) return InvalidArgument("CacheBlend check layers must be >= 0");
  }
  for (double a : cachecraft_alphas) {
    if (!(a > 0)) return InvalidArgument("Cache-Craft alphas must be > 0");
  }
  return Status::Ok();
}

Result<ReuseEvalReport> RunReuseEval(const ReuseEvalOptions& o, std::ostream& progress) {
  KVTIER_RETURN_IF_ERROR(o.Validate());
  auto loaded = LoadTestModel(o.data_dir);
  if (!loaded.ok()) return loaded.status();
  KVTIER_RETURN_IF_ERROR(CheckAgainstModel(o, loaded->model.config()));
  const ModelFingerprint fp = refmodel::KvFingerprint(loaded->model.config(), uint32_t(o.passage_tokens));
  Env env{o, loaded->model, fp, Chunker(fp), nullptr, nullptr, {}, std::mt19937_64(o.seed), 0, {}};
  KVTIER_RETURN_IF_ERROR(LoadPassages(env, loaded->tokenizer, loaded->corpus));
  KVTIER_RETURN_IF_ERROR(Connect(env, progress));

  progress << "storing " << o.passages << " passages computed alone and " << o.seed_prompts
           << " earlier requests' variants\n";
  for (int i = 0; i < o.passages; ++i) KVTIER_RETURN_IF_ERROR(StoreRequest(env, std::vector<int>{i}));
  for (int i = 0; i < o.seed_prompts; ++i) KVTIER_RETURN_IF_ERROR(StoreRequest(env, RandomOrder(env)));

  const double default_ci = o.cachecraft_default_ci;
  progress << "kvtier admitted " << env.stored_variants << " variants; their measured context impact averages "
           << Mean(env.seeded_ci) << "; Cache-Craft assumes " << default_ci << " for variants computed alone\n";
  Evaluator eval(env.model);
  double match_sum = 0;
  int alone = 0, chosen = 0;
  for (int i = 0; i < o.prompts; ++i) {
    const Prompt prompt = MakePrompt(env, RandomOrder(env));
    const Passage& last = env.passages[size_t(prompt.order.back())];
    std::vector<int> scored = {prompt.tokens.back()};
    scored.insert(scored.end(), last.continuation.begin(), last.continuation.end());
    KVTIER_RETURN_IF_ERROR(eval.Begin(std::span<const int>(prompt.tokens).first(size_t(prompt.prefill_tokens())), scored));
    KVTIER_RETURN_IF_ERROR(EvaluatePrefix(env, prompt, eval));
    KVTIER_RETURN_IF_ERROR(EvaluateAlone(env, prompt, eval));
    KVTIER_RETURN_IF_ERROR(EvaluateBestVariants(env, prompt, eval, default_ci, &match_sum, &alone, &chosen));
    if ((i + 1) % 16 == 0 || i + 1 == o.prompts) progress << "  " << (i + 1) << "/" << o.prompts << " prompts\n";
  }
  ReuseEvalReport report = eval.Finish();
  report.stored_variants = env.stored_variants;
  report.default_ci = default_ci;
  report.mean_variant_match = chosen > 0 ? match_sum / chosen : 0;
  report.alone_variant_share = chosen > 0 ? double(alone) / chosen : 0;
  return report;
}

}  // namespace kvtier::bench
