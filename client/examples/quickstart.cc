// Quickstart: what an inference worker does with kvtier.
//   kvtier_client_example [host:port]
// Puts the KV cache of a 3-chunk prompt, asks how much of a longer prompt is cached, and fetches the
// cached chunks back into its own buffer. Exits non-zero if anything does not round-trip.
#include <cstdio>
#include <cstring>
#include <vector>

#include "kvtier/client/chunker.h"
#include "kvtier/client/client.h"

int main(int argc, char** argv) {
  kvtier::ModelFingerprint fp;
  fp.model_id = "example/llama-tiny";
  fp.num_layers = 4;
  fp.num_kv_heads = 2;
  fp.head_dim = 64;
  fp.dtype = kvtier::DType::kFp16;
  fp.rope_style = kvtier::RopeStyle::kNeox;
  fp.rope_theta = 10000.0;
  fp.rotary_dim = 64;
  fp.keys_post_rope = true;
  fp.chunk_tokens = 16;

  kvtier::ClientOptions options;
  options.endpoint = argc > 1 ? argv[1] : "127.0.0.1:7070";
  options.name_space = "example";
  options.fingerprint = fp;
  auto client = kvtier::Client::Connect(options);
  if (!client.ok()) {
    std::fprintf(stderr, "connect: %s\n", client.status().ToString().c_str());
    return 1;
  }

  // A prompt of 48 tokens is 3 chunks of 16; keys chain in prefix mode.
  std::vector<uint32_t> prompt(48);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<uint32_t>(1000 + i);
  kvtier::Chunker chunker(fp);
  const auto chunks = chunker.Split(prompt, kvtier::KeyMode::kPrefix);

  // The engine's KV for each chunk, in kvtier's layout [layer][K|V][token][kv_head][head_dim].
  const size_t chunk_bytes = fp.chunk_tokens * fp.KvBytesPerToken();
  std::vector<std::vector<std::byte>> kv(chunks.size(), std::vector<std::byte>(chunk_bytes));
  for (size_t c = 0; c < chunks.size(); ++c) {
    for (size_t i = 0; i < chunk_bytes; ++i) kv[c][i] = static_cast<std::byte>((c * 131 + i * 7) & 0xff);
    const auto tokens = std::span(prompt).subspan(chunks[c].begin, chunks[c].end - chunks[c].begin);
    auto put = (*client)->Put(chunks[c].key, tokens, kv[c], {.base_position = static_cast<uint32_t>(chunks[c].begin)});
    if (!put.ok()) {
      std::fprintf(stderr, "put: %s\n", put.status().ToString().c_str());
      return 1;
    }
  }

  // A new request shares the first 48 tokens and adds 16 more: 3 of its 4 chunks are cached.
  std::vector<uint32_t> request = prompt;
  for (uint32_t t = 0; t < 16; ++t) request.push_back(5000 + t);
  const auto request_chunks = chunker.Split(request, kvtier::KeyMode::kPrefix);
  std::vector<kvtier::ChunkKey> keys;
  for (const auto& c : request_chunks) keys.push_back(c.key);
  auto lookup = (*client)->Lookup(keys, std::chrono::seconds(10));  // lease them until we fetch
  if (!lookup.ok() || lookup->leading_hits != 3) {
    std::fprintf(stderr, "lookup: expected 3 leading hits\n");
    return 1;
  }

  // Fetch the cached prefix straight into the worker's buffer (prefetch asynchronously).
  std::vector<std::byte> buffer(lookup->leading_hits * chunk_bytes);
  std::vector<std::future<kvtier::Result<kvtier::GetResult>>> pending;
  for (uint32_t c = 0; c < lookup->leading_hits; ++c) {
    pending.push_back((*client)->GetAsync(keys[c], std::span(buffer).subspan(c * chunk_bytes, chunk_bytes)));
  }
  for (uint32_t c = 0; c < pending.size(); ++c) {
    auto got = pending[c].get();
    if (!got.ok() || !got->found || std::memcmp(buffer.data() + c * chunk_bytes, kv[c].data(), chunk_bytes) != 0) {
      std::fprintf(stderr, "get: chunk %u did not round-trip\n", c);
      return 1;
    }
  }
  std::printf("reused %u of %zu chunks (%zu bytes of KV) instead of recomputing them\n", lookup->leading_hits,
              keys.size(), buffer.size());
  return 0;
}
