// The series of DESIGN §9 beyond requests and tiers, scraped over HTTP from a real server: codec bytes
// in and out, leases held, bytes in flight, build info. Each moves by exactly what was done.
#include <map>
#include <thread>

#include "integration/observability.h"
#include "integration/scrape.h"
#include "kvtier/api/convert.h"

namespace kvtier::testing {
namespace {

std::string CodecSeries(codec::CodecId id, const char* direction) {
  return "kvtier_codec_bytes_total{codec=\"" + std::string(codec::CodecName(id)) + "\",direction=\"" + direction +
         "\"}";
}

class MetricsSeriesTest : public ObservedServerTest {
 protected:
  void SetUp() override { StartObserved(/*all_tiers=*/false); }

  // Polls the scrape until `series` has `value` (bounded); returns the last value seen.
  double AwaitSample(const std::string& series, double value) {
    double seen = -1;
    for (int i = 0; i < 200 && (seen = Sample(Scrape(), series)) != value; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return seen;
  }
};

TEST_F(MetricsSeriesTest, CodecBytesCountCommittedPutsAndSentGetsByCodec) {
  const ModelFingerprint fp = TestFingerprint();
  std::map<codec::CodecId, double> in, out;
  std::vector<std::pair<codec::CodecId, ChunkKey>> stored;
  for (codec::CodecId id : codec::kAllCodecs) {
    const ChunkKey key{0xc0, static_cast<uint64_t>(id)};
    const auto kv = SmoothKv(fp, 16, static_cast<float>(id));
    codec::EncodeOptions encode;
    encode.codec = id;
    ASSERT_TRUE(CodecClient(id)->Put(key, TokensFor(key, 16), kv).ok()) << codec::CodecName(id);
    in[id] = static_cast<double>(id == codec::CodecId::kRaw ? kv.size() : EncodedKv(fp, kv, encode).size());
    stored.emplace_back(id, key);
  }
  EXPECT_LT(in[codec::CodecId::kInt8], in[codec::CodecId::kRaw]);
  // A second put of a stored key is drained, not stored: not counted.
  ASSERT_TRUE(CodecClient(codec::CodecId::kInt8)
                  ->Put(stored[2].second, TokensFor(stored[2].second, 16), SmoothKv(fp, 16, 3.0f))
                  ->already_present);
  // A plain client gets each chunk in its stored codec ...
  std::vector<std::byte> dest(16 * fp.KvBytesPerToken());
  for (const auto& [id, key] : stored) {
    ASSERT_TRUE(client_->Get(key, dest)->found);
    out[id] += in[id];
  }
  // ... a client that asks the server to decode gets raw (a raw chunk stays raw), and a miss sends nothing.
  auto decoding = CodecClient(codec::CodecId::kRaw, /*server_decode=*/true);
  ASSERT_TRUE(decoding->Get(stored[2].second, dest)->found);  // int8, decoded on the server
  ASSERT_TRUE(decoding->Get(stored[0].second, dest)->found);  // raw
  out[codec::CodecId::kRaw] += 2.0 * static_cast<double>(dest.size());
  ASSERT_FALSE(client_->Get({0xc0, 99}, dest)->found);

  const std::string text = Scrape();
  for (codec::CodecId id : codec::kAllCodecs) {
    EXPECT_EQ(Sample(text, CodecSeries(id, "in")), in[id]) << codec::CodecName(id);
    EXPECT_EQ(Sample(text, CodecSeries(id, "out")), out[id]) << codec::CodecName(id);
  }
}

TEST_F(MetricsSeriesTest, LeasesHeldFollowLookupsAndExpiry) {
  std::vector<ChunkKey> keys;
  for (uint64_t i = 0; i < 4; ++i) {
    keys.push_back({0x1ea5e, i});
    ASSERT_TRUE(client_->Put(keys.back(), TokensFor(keys.back(), 16), PayloadFor(keys.back(), 16 * 1024)).ok());
  }
  EXPECT_EQ(Sample(Scrape(), "kvtier_leases_held"), 0);
  ASSERT_EQ(client_->Lookup(keys)->leading_hits, 4u);  // no lease asked for
  EXPECT_EQ(Sample(Scrape(), "kvtier_leases_held"), 0);
  ASSERT_EQ(client_->Lookup(std::span(keys).first(3), std::chrono::seconds(2))->leading_hits, 3u);
  EXPECT_EQ(Sample(Scrape(), "kvtier_leases_held"), 3);
  ASSERT_EQ(*client_->Delete(std::vector<ChunkKey>{keys[0]}), 1u);
  EXPECT_EQ(Sample(Scrape(), "kvtier_leases_held"), 2);
  now_ns_ += 2'000'000'000;  // the server's lease clock: the leases run out
  EXPECT_EQ(Sample(Scrape(), "kvtier_leases_held"), 0);
}

TEST_F(MetricsSeriesTest, InflightPutBytesWhileAStreamIsOpen) {
  const ChunkKey key{0xf11, 1};
  const auto payload = PayloadFor(key, 16 * 1024);
  const uint64_t used_before = HostUsedBytes();
  const v1::PutRequest header = PutHeaderFor(Context(), key, payload, TokensFor(key, 16));
  v1::PutRequest half;
  half.set_data(reinterpret_cast<const char*>(payload.data()), payload.size() / 2);
  auto stub = RawStub();
  grpc::ClientContext ctx;
  v1::PutResponse response;
  auto writer = stub->Put(&ctx, &response);
  ASSERT_TRUE(writer->Write(header));
  ASSERT_TRUE(writer->Write(half));
  // 16 KiB of payload and 64 bytes of token ids, in the arena's 4 KiB units.
  const double reserved = 16 * 1024 + 4096;
  EXPECT_EQ(AwaitSample("kvtier_inflight_bytes{op=\"put\"}", reserved), reserved);
  EXPECT_EQ(HostUsedBytes() - used_before, reserved);
  writer->WritesDone();
  const grpc::Status status = writer->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_NE(status.error_message().find("nothing of it was stored"), std::string::npos) << status.error_message();
  const std::string text = Scrape();
  EXPECT_EQ(Sample(text, "kvtier_inflight_bytes{op=\"put\"}"), 0);
  EXPECT_EQ(Sample(text, CodecSeries(codec::CodecId::kRaw, "in")), 0);
  EXPECT_EQ(Sample(text, "kvtier_requests_total{code=\"INVALID_ARGUMENT\",op=\"put\"}"), 1);
}

TEST_F(MetricsSeriesTest, InflightGetBytesWhileAChunkIsOnTheWire) {
  // 32 MiB: more than gRPC's flow-control windows and the socket buffers take without the client
  // reading, so the chunk is still held after the client has read only its header.
  const ModelFingerprint fp = TestFingerprint(32 * 1024);
  auto writer = NewClient("test", fp);
  const ChunkKey key{0xb16, 1};
  const auto payload = PayloadFor(key, 32u << 20);
  ASSERT_TRUE(writer->Put(key, TokensFor(key, 32 * 1024), payload).ok());
  EXPECT_EQ(Sample(Scrape(), "kvtier_inflight_bytes{op=\"get\"}"), 0);

  v1::GetRequest request;
  *request.mutable_context() = Context("test", fp);
  request.add_keys(KeyToWire(key));
  auto stub = RawStub();
  grpc::ClientContext ctx;
  auto reader = stub->Get(&ctx, request);
  v1::GetResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  ASSERT_TRUE(msg.has_header() && msg.header().found());
  EXPECT_EQ(Sample(Scrape(), "kvtier_inflight_bytes{op=\"get\"}"), static_cast<double>(payload.size()));
  uint64_t received = 0;
  while (reader->Read(&msg)) received += msg.data().size();
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(received, payload.size());
  // gRPC lets go of the last slices shortly after the client has them.
  EXPECT_EQ(AwaitSample("kvtier_inflight_bytes{op=\"get\"}", 0), 0);
  EXPECT_EQ(Sample(Scrape(), CodecSeries(codec::CodecId::kRaw, "out")), static_cast<double>(payload.size()));
}

TEST_F(MetricsSeriesTest, BuildInfoNamesVersionAndCuda) {
#ifdef KVTIER_HAVE_CUDA
  const std::string cuda = "on";
#else
  const std::string cuda = "off";
#endif
  const std::string version = client_->Stats()->version();
  ASSERT_FALSE(version.empty());
  const std::string text = Scrape();
  EXPECT_EQ(Sample(text, "kvtier_build_info{cuda=\"" + cuda + "\",version=\"" + version + "\"}"), 1) << text;
  EXPECT_EQ(text.find("\nkvtier_build_info{"), text.rfind("\nkvtier_build_info{")) << "one build_info sample";
}

}  // namespace
}  // namespace kvtier::testing
