// Randomized put streams against a real server: headers with good and bad fields, frames of random
// sizes, streams cut short or cancelled, several chunks per stream. Whatever arrives, the server answers
// with a status, never stores a chunk it did not fully receive and verify, serves every acknowledged chunk
// byte-exact, and leaks no reserved space.
#include <cstring>
#include <random>
#include <thread>

#include "integration/test_server.h"
#include "kvtier/api/convert.h"

namespace kvtier::testing {
namespace {

class PutStreamFuzzTest : public ServerFixture {};

struct SentChunk {
  ChunkKey key;
  std::vector<std::byte> payload;
  bool complete = false;  // every byte was sent
  bool broken = false;    // a header field was made invalid
};

TEST_F(PutStreamFuzzTest, RandomStreamsNeverCorruptOrLeak) {
  StartServer(64ull << 20, [](ServerConfig& c) {
    c.service.max_frame_bytes = 16 << 10;
    c.store.max_chunk_bytes = 256 << 10;
  });
  const ModelFingerprint fp = TestFingerprint(256);  // 1 KiB per token, up to 256 KiB per chunk
  auto stub = RawStub();
  std::mt19937_64 rng(20261122);
  std::vector<SentChunk> all_sent;
  size_t acknowledged = 0;
  int ok_streams = 0, failed_streams = 0;

  for (int stream = 0; stream < 300; ++stream) {
    grpc::ClientContext ctx;
    v1::PutResponse response;
    auto writer = stub->Put(&ctx, &response);
    std::vector<SentChunk> sent;
    const int chunks = 1 + static_cast<int>(rng() % 3);
    bool open = true;
    bool cancelled = false;
    for (int c = 0; c < chunks && open; ++c) {
      SentChunk chunk;
      chunk.key = {static_cast<uint64_t>(stream), static_cast<uint64_t>(c) | (rng() % 4 == 0 ? 0 : 0x100)};
      const uint32_t tokens = 1 + static_cast<uint32_t>(rng() % 256);
      chunk.payload = PayloadFor(chunk.key, tokens * 1024);
      v1::PutRequest header;
      v1::PutHeader* h = header.mutable_header();
      *h->mutable_context() = Context("fuzz", fp);
      h->set_key(KeyToWire(chunk.key));
      for (uint32_t i = 0; i < tokens; ++i) h->add_token_ids(i);
      h->set_codec(v1::CODEC_RAW);
      h->set_payload_bytes(chunk.payload.size());
      h->set_checksum(Checksum64(chunk.payload));
      // One time in five, break one field.
      chunk.broken = true;
      switch (rng() % 20) {
        case 0: h->set_payload_bytes(chunk.payload.size() + 1); break;
        case 1: h->set_checksum(h->checksum() ^ 1); break;
        case 2: h->clear_token_ids(); break;
        case 3: h->set_key("short"); break;
        default: chunk.broken = false; break;
      }
      open = writer->Write(header);
      // Frames of random sizes, sometimes over the limit; sometimes the stream stops early.
      size_t off = 0;
      const bool truncate = rng() % 8 == 0;
      const size_t stop_at = truncate ? rng() % chunk.payload.size() : chunk.payload.size();
      while (open && off < stop_at) {
        size_t n = 1 + rng() % (rng() % 30 == 0 ? 20000 : 16384);
        n = std::min(n, stop_at - off);
        v1::PutRequest data;
        data.set_data(reinterpret_cast<const char*>(chunk.payload.data() + off), n);
        open = writer->Write(data);
        off += n;
      }
      chunk.complete = off == chunk.payload.size();
      sent.push_back(std::move(chunk));
      if (truncate && rng() % 2 == 0) {
        ctx.TryCancel();
        cancelled = true;
        open = false;
      }
    }
    if (open) writer->WritesDone();
    const grpc::Status status = writer->Finish();
    if (cancelled) {
      EXPECT_NE(status.error_code(), grpc::StatusCode::OK);
    }
    status.ok() ? ++ok_streams : ++failed_streams;
    // Each acknowledged result is a chunk the stream sent completely and correctly. (A stream that
    // fails after some chunks committed returns no results; those chunks are checked below.)
    for (int i = 0; i < response.results_size(); ++i) {
      ASSERT_LT(static_cast<size_t>(i), sent.size());
      ASSERT_TRUE(sent[i].complete && !sent[i].broken);
      ASSERT_EQ(response.results(i).key(), KeyToWire(sent[i].key));
      ++acknowledged;
    }
    all_sent.insert(all_sent.end(), sent.begin(), sent.end());
  }
  EXPECT_GT(ok_streams, 50);
  EXPECT_GT(failed_streams, 20);

  // Every chunk that is stored was sent completely and correctly and reads back byte-exact; the
  // space in use is exactly theirs once cancelled streams have released their reservations.
  auto client = NewClient("fuzz", fp);
  std::vector<std::byte> dest(256 << 10);
  uint64_t stored = 0, stored_bytes = 0;
  for (const SentChunk& chunk : all_sent) {
    auto got = client->Get(chunk.key, dest);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    if (!got->found) continue;
    ASSERT_TRUE(chunk.complete && !chunk.broken) << "stored a chunk that was not fully and correctly sent";
    ASSERT_EQ(got->bytes, chunk.payload.size());
    ASSERT_EQ(std::memcmp(dest.data(), chunk.payload.data(), chunk.payload.size()), 0);
    ++stored;
    const uint64_t tokens_bytes = ((chunk.payload.size() / 1024) * 4 + 63) / 64 * 64;
    stored_bytes += (tokens_bytes + chunk.payload.size() + 4095) / 4096 * 4096;
  }
  EXPECT_GE(stored, acknowledged);
  EXPECT_EQ(server_->store().Stats().tiers[0].chunks, stored);
  for (int i = 0; i < 500 && HostUsedBytes() != stored_bytes; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(HostUsedBytes(), stored_bytes) << "reserved space leaked";
}

}  // namespace
}  // namespace kvtier::testing
