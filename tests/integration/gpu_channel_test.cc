// The GPU channel (KvTier.GpuChannel, client/gpu_channel.h) through a real server whose GPU tier is the
// emulated device: the link is NCCL's loopback twin, so the protocol, the holds and the fallbacks run in CI.
// Chunks arrive byte-exact, only the leading raw GPU copies travel, refusals say why, a failed send ends the
// channel and frees what it held, and PagedKvTransfer's twin places chunks received over the channel exactly
// as over gRPC, mixing both within one call. The NCCL link itself needs two GPUs (nccl_kernel_test.cc).
#include "kvtier/client/gpu_channel.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "integration/paged_transfer_fixture.h"
#include "integration/test_server.h"
#include "kvstore/emulated_device_memory.h"
#include "kvtier/api/convert.h"
#include "kvtier/gpu/nccl_channel.h"

namespace kvtier::testing {
namespace {

constexpr uint64_t kTestChunkBytes = 16 * 1024;  // TestFingerprint(): 16 tokens of 1 KiB

class GpuChannelTest : public PagedTransferTest {
 protected:
  void SetUp() override {}  // each test starts the server it needs

  void StartWithGpu(const std::string& placement = "on-request", uint32_t max_channels = 16,
                    uint32_t link_timeout_ms = 30000) {
    StartServer(4ull << 20, [&](ServerConfig& c) {
      c.store.host_prefault = false;
      c.store.gpu.capacity_bytes = 1ull << 20;
      c.store.gpu.placement = placement;
      c.store.gpu.open_device = OpenEmulatedDevice(knobs_);
      c.service.max_gpu_channels = max_channels;
      c.service.gpu_link_timeout_ms = link_timeout_ms;
    });
  }

  void Put(const ChunkKey& key, bool to_gpu) {
    PutOptions o;
    if (to_gpu) o.prefer_tier = v1::TIER_GPU;
    auto put = client_->Put(key, TokensFor(key, 16), PayloadFor(key, kTestChunkBytes), o);
    ASSERT_TRUE(put.ok()) << put.status().ToString();
  }

  std::unique_ptr<GpuChannel> Open() {
    auto channel = client_->OpenGpuChannel(gpu::PeerLinkKind::kLoopback, std::chrono::seconds(10));
    EXPECT_TRUE(channel.ok()) << channel.status().ToString();
    return channel.ok() ? std::move(channel).value() : nullptr;
  }

  // Host buffers standing in for device memory (the loopback link copies into them), poisoned.
  struct Buffers {
    explicit Buffers(size_t n) : bytes(n, std::vector<std::byte>(kTestChunkBytes, std::byte{0xEE})) {
      for (auto& b : bytes) pointers.push_back(b.data());
    }
    std::vector<std::vector<std::byte>> bytes;
    std::vector<std::byte*> pointers;
  };

  std::shared_ptr<DeviceFaultKnobs> knobs_ = std::make_shared<DeviceFaultKnobs>();
};

TEST_F(GpuChannelTest, TheLeadingGpuCopiesArriveOverTheLinkByteExact) {
  StartWithGpu();
  const std::vector<ChunkKey> keys = {{0xc4, 1}, {0xc4, 2}, {0xc4, 3}, {0xc4, 4}, {0xc4, 5}};
  Put(keys[0], true);
  Put(keys[1], true);
  Put(keys[2], true);
  Put(keys[3], false);  // DRAM only: the link stops here
  Put(keys[4], true);
  auto channel = Open();
  ASSERT_NE(channel, nullptr);
  EXPECT_EQ(channel->link_kind(), gpu::PeerLinkKind::kLoopback);
  EXPECT_EQ(channel->server_device(), "emulated GPU (device 0)");

  Buffers dest(keys.size());
  auto got = channel->Get(keys, dest.pointers, kTestChunkBytes, nullptr);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_EQ(got->received.size(), 3u);
  EXPECT_FALSE(got->stopped_at_miss) << "the fourth key is a hit the link does not carry";
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(got->received[i].found);
    EXPECT_EQ(got->received[i].bytes, kTestChunkBytes);
    EXPECT_EQ(got->received[i].num_tokens, 16u);
    EXPECT_EQ(got->received[i].tier, v1::TIER_GPU);
    EXPECT_EQ(dest.bytes[i], PayloadFor(keys[i], kTestChunkBytes)) << i;
  }
  EXPECT_EQ(dest.bytes[3], std::vector<std::byte>(kTestChunkBytes, std::byte{0xEE})) << "nothing past the answer";
  EXPECT_EQ(knobs_->sends.load(), 3u);

  // A miss after a GPU copy: one chunk and the miss named. The same channel serves every get.
  const std::vector<ChunkKey> with_miss = {keys[4], {0xc4, 99}, keys[0]};
  Buffers more(with_miss.size());
  got = channel->Get(with_miss, more.pointers, kTestChunkBytes, nullptr);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_EQ(got->received.size(), 1u);
  EXPECT_TRUE(got->stopped_at_miss);
  EXPECT_EQ(more.bytes[0], PayloadFor(keys[4], kTestChunkBytes));

  // A chunk larger than the caller's buffers is not sent.
  got = channel->Get(std::span(keys).first(1), more.pointers, kTestChunkBytes - 1, nullptr);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(got->received.empty());
  EXPECT_FALSE(got->stopped_at_miss);

  // Fewer buffers than keys: refused here, and the channel stays usable.
  got = channel->Get(keys, std::span(more.pointers).first(2), kTestChunkBytes, nullptr);
  EXPECT_EQ(got.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(got.status().message(), "GpuChannel::Get: 2 destinations for 5 keys");
  got = channel->Get(std::span(keys).first(1), more.pointers, kTestChunkBytes, nullptr);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->received.size(), 1u);
}

TEST_F(GpuChannelTest, TheHoldsEndWithTheGetSoTheCopiesCanBeEvictedAfter) {
  StartWithGpu();
  const ChunkKey key{0xc5, 1};
  Put(key, true);
  auto channel = Open();
  ASSERT_NE(channel, nullptr);
  Buffers dest(1);
  auto got = channel->Get(std::span(&key, 1), dest.pointers, kTestChunkBytes, nullptr);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_EQ(got->received.size(), 1u);
  // Two GPU tiers' worth of GPU puts: a copy still held would stay on the GPU.
  for (uint64_t i = 0; i < 120; ++i) Put(ChunkKey{0xf00, i}, true);
  got = channel->Get(std::span(&key, 1), dest.pointers, kTestChunkBytes, nullptr);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(got->received.empty()) << "the copy was released and evicted; the chunk lives on in DRAM";
  std::vector<std::byte> bytes(kTestChunkBytes);
  auto read = client_->Get(key, bytes);
  ASSERT_TRUE(read.ok() && read->found);
  EXPECT_EQ(bytes, PayloadFor(key, kTestChunkBytes));
}

TEST_F(GpuChannelTest, RefusalsSayWhy) {
  StartServer();  // no GPU tier
  auto channel = client_->OpenGpuChannel(gpu::PeerLinkKind::kLoopback);
  EXPECT_EQ(channel.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(channel.status().message(), "gpu channel: this server has no GPU tier");
  server_.reset();

  StartWithGpu("on-request", /*max_channels=*/1);
  // NCCL: refused here already when this process cannot make an NCCL id (no NCCL, CUDA or GPU), else by the
  // server, whose emulated tier sends over loopback.
  channel = client_->OpenGpuChannel(gpu::PeerLinkKind::kNccl);
  EXPECT_EQ(channel.status().code(), StatusCode::kFailedPrecondition);
  if (!gpu::NcclCreateUniqueId().ok()) {
    EXPECT_EQ(channel.status().message().rfind("gpu channel: this process cannot make a nccl link: ", 0), 0u)
        << channel.status().message();
  } else {
    EXPECT_EQ(channel.status().message(), "gpu channel: this server's GPU tier sends over loopback, not nccl");
  }

  auto first = Open();
  ASSERT_NE(first, nullptr);
  channel = client_->OpenGpuChannel(gpu::PeerLinkKind::kLoopback);
  EXPECT_EQ(channel.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(channel.status().message(), "gpu channel: 1 channels are open already (gpu_tier.max_channels)");
  first.reset();  // closing one frees its slot (the server's handler returns shortly after)
  for (int attempt = 0; attempt < 500 && !channel.ok(); ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    channel = client_->OpenGpuChannel(gpu::PeerLinkKind::kLoopback);
  }
  ASSERT_TRUE(channel.ok()) << channel.status().ToString();

  // A get the server refuses ends the channel with the server's reason.
  const ChunkKey key{0xc6, 1};
  Buffers dest(1);
  auto got = (*channel)->Get(std::span(&key, 1), dest.pointers, /*max_payload_bytes=*/0, nullptr);
  EXPECT_EQ(got.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(got.status().message(), "gpu channel: get.max_payload_bytes must be > 0");
  got = (*channel)->Get(std::span(&key, 1), dest.pointers, kTestChunkBytes, nullptr);
  EXPECT_EQ(got.status().message(), "gpu channel: get.max_payload_bytes must be > 0") << "a broken channel stays so";
  channel->reset();

  // The wire itself: the first message must open, with a known link kind, a link id and a fingerprint.
  auto raw = [&](const v1::GpuChannelRequest& first) {
    auto stub = RawStub();
    grpc::ClientContext ctx;
    auto stream = stub->GpuChannel(&ctx);
    stream->Write(first);
    stream->WritesDone();
    v1::GpuChannelResponse response;
    while (stream->Read(&response)) {
    }
    return stream->Finish();
  };
  v1::GpuChannelRequest get;
  get.mutable_get()->add_keys(KeyToWire(key));
  grpc::Status s = raw(get);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "gpu channel: the first message must be open");
  v1::GpuChannelRequest open;
  *open.mutable_open()->mutable_context() = Context();
  s = raw(open);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "gpu channel: open.link must be GPU_LINK_NCCL or GPU_LINK_LOOPBACK");
  open.mutable_open()->set_link(v1::GPU_LINK_LOOPBACK);
  open.mutable_open()->set_link_id("short");
  s = raw(open);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "gpu channel: open.link_id has 5 bytes, not 128");
  open.mutable_open()->set_link(v1::GPU_LINK_NCCL);
  open.mutable_open()->set_link_id(std::string(128, 'x'));
  s = raw(open);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(s.error_message(), "gpu channel: this server's GPU tier sends over loopback, not nccl");
  open.mutable_open()->set_link(v1::GPU_LINK_LOOPBACK);
  open.mutable_open()->mutable_context()->clear_fingerprint();
  s = raw(open);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "request context has no model fingerprint");
}

// A client that opens and then never joins the link (it died, or cannot reach the server's GPU) must not keep
// its slot until the join's timeout (here 10 minutes): cancelling the stream ends the server's wait.
TEST_F(GpuChannelTest, AClientThatNeverJoinsGivesItsSlotBackWhenItGoesAway) {
  StartWithGpu("on-request", /*max_channels=*/1, /*link_timeout_ms=*/600000);
  {
    auto stub = RawStub();
    grpc::ClientContext ctx;
    auto stream = stub->GpuChannel(&ctx);
    v1::GpuChannelRequest open;
    *open.mutable_open()->mutable_context() = Context();
    open.mutable_open()->set_link(v1::GPU_LINK_LOOPBACK);
    open.mutable_open()->set_link_id(std::string(128, 'n'));  // nobody else joins this one
    ASSERT_TRUE(stream->Write(open));
    v1::GpuChannelResponse opened;
    ASSERT_TRUE(stream->Read(&opened));
    ASSERT_TRUE(opened.has_opened());
    EXPECT_EQ(opened.opened().device(), "emulated GPU (device 0)");
    auto refused = client_->OpenGpuChannel(gpu::PeerLinkKind::kLoopback);
    EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted) << "the joining channel holds the slot";
    ctx.TryCancel();
    (void)stream->Finish();
  }
  // The bound (60 s) only guards against a hang: a slot kept until the join timed out would take 10 minutes.
  auto channel = client_->OpenGpuChannel(gpu::PeerLinkKind::kLoopback);
  for (int attempt = 0; attempt < 6000 && !channel.ok(); ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    channel = client_->OpenGpuChannel(gpu::PeerLinkKind::kLoopback);
  }
  EXPECT_TRUE(channel.ok()) << channel.status().ToString();
}

TEST_F(GpuChannelTest, AFailedSendEndsTheChannelAndReleasesWhatItHeld) {
  StartWithGpu();
  const std::vector<ChunkKey> keys = {{0xc7, 1}, {0xc7, 2}};
  Put(keys[0], true);
  Put(keys[1], true);
  auto channel = Open();
  ASSERT_NE(channel, nullptr);
  knobs_->fail_sends = 1;  // the first send fails, as a broken NCCL communicator would
  Buffers dest(keys.size());
  auto got = channel->Get(keys, dest.pointers, kTestChunkBytes, nullptr);
  EXPECT_EQ(got.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(got.status().message(),
            "gpu channel: receiving over the link failed: loopback link: the peer closed the link");
  channel.reset();

  // The copies it held are free again (120 GPU puts evict them), and a new channel works.
  for (uint64_t i = 0; i < 120; ++i) Put(ChunkKey{0xf00, i}, true);
  channel = Open();
  ASSERT_NE(channel, nullptr);
  got = channel->Get(keys, dest.pointers, kTestChunkBytes, nullptr);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(got->received.empty()) << "both copies were evicted: nothing held them";
  const ChunkKey fresh{0xc7, 3};
  Put(fresh, true);
  got = channel->Get(std::span(&fresh, 1), dest.pointers, kTestChunkBytes, nullptr);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_EQ(got->received.size(), 1u);
  EXPECT_EQ(dest.bytes[0], PayloadFor(fresh, kTestChunkBytes));
}

// PagedKvTransfer's twin from "another node" (no shared memory): chunks with a GPU copy come over the channel,
// the others over gRPC within the same call, and the cache ends up as a gRPC-only load leaves it. The channel
// carries the leading run of GPU copies; the gRPC round that picks up after it takes the rest of the keys.
TEST_F(GpuChannelTest, PagedTransferMixesChunksFromTheChannelAndFromGrpc) {
  StartWithGpu();
  const ModelFingerprint fp = TestFingerprint(kChunkTokens);
  auto t = PagedKvTransfer::Create(client_.get(), CacheShape(fp), HostOptions());
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  HostPagedCache source(CacheShape(fp), 1);
  source.FillRandom(5);
  // Chunks 0, 1 and 4 on the GPU; 2 and 3 in DRAM only.
  std::vector<ChunkKey> keys = PutChunks(**t, source, 0, {16, 16, 16, 16, 7});
  PutOptions to_gpu;
  to_gpu.prefer_tier = v1::TIER_GPU;
  for (size_t i : {0, 1, 4}) {
    std::vector<std::byte> chunk(CacheShape(fp).ChunkBytes(i == 4 ? 7 : 16));
    ASSERT_TRUE(client_->Get(keys[i], chunk).ok());
    ASSERT_TRUE(client_->Delete(std::span(&keys[i], 1)).ok());
    auto put = client_->Put(keys[i], tokens_[i], chunk, [&] {
      PutOptions o = to_gpu;
      o.base_position = static_cast<uint32_t>(16 * i);
      return o;
    }());
    ASSERT_TRUE(put.ok()) << i;
  }

  HostPagedCache dest(CacheShape(fp), 9);
  dest.Poison(0xEE);
  auto load = (*t)->GetToDevice(keys, Target(dest, 0), nullptr);
  ASSERT_TRUE(load.ok()) << load.status().ToString();
  EXPECT_EQ(load->placed_chunks, 5u);
  EXPECT_EQ(load->placed_tokens, 71u);
  ExpectPlaced(source, dest, 0, 71, 0xEE);
  const PagedTransferStats stats = (*t)->stats();
  EXPECT_EQ(stats.nccl_chunks, 2u);    // chunks 0 and 1
  EXPECT_EQ(stats.staged_chunks, 3u);  // 2, 3 and (in the same gRPC round) 4
  EXPECT_EQ(stats.nccl_off, "");
  EXPECT_EQ(load->results[0].tier, v1::TIER_GPU);
  EXPECT_EQ(load->results[2].tier, v1::TIER_HOST);

  // A miss after a GPU chunk: the channel names it and the load stops there.
  ASSERT_TRUE(client_->Delete(std::span(&keys[1], 1)).ok());
  dest.Poison(0xEE);
  load = (*t)->GetToDevice(keys, Target(dest, 0), nullptr);
  ASSERT_TRUE(load.ok()) << load.status().ToString();
  EXPECT_EQ(load->placed_chunks, 1u);
  EXPECT_FALSE(load->results[1].found);
  ExpectPlaced(source, dest, 0, 16, 0xEE);
  EXPECT_EQ((*t)->stats().nccl_chunks, 3u);
}

TEST_F(GpuChannelTest, PagedTransferFallsBackToGrpcWhenTheChannelBreaksOrIsRefused) {
  StartWithGpu("all");  // every put gets a GPU copy
  const ModelFingerprint fp = TestFingerprint(kChunkTokens);
  auto t = PagedKvTransfer::Create(client_.get(), CacheShape(fp), HostOptions());
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  HostPagedCache source(CacheShape(fp), 2);
  source.FillRandom(6);
  const std::vector<ChunkKey> keys = PutChunks(**t, source, 0, {16, 16, 16});
  knobs_->fail_sends = 1;
  HostPagedCache dest(CacheShape(fp), 3);
  dest.Poison(0xEE);
  auto load = (*t)->GetToDevice(keys, Target(dest, 0), nullptr);
  ASSERT_TRUE(load.ok()) << load.status().ToString();
  EXPECT_EQ(load->placed_chunks, 3u);
  ExpectPlaced(source, dest, 0, 48, 0xEE);
  PagedTransferStats stats = (*t)->stats();
  EXPECT_EQ(stats.nccl_chunks, 0u);
  EXPECT_EQ(stats.staged_chunks, 3u);
  EXPECT_EQ(stats.nccl_off,
            "the GPU channel broke: UNAVAILABLE: gpu channel: receiving over the link failed: loopback link: the "
            "peer closed the link");

  // A server without a GPU tier: the channel is refused once, every round goes over gRPC.
  t->reset();
  server_.reset();
  StartServer();
  auto plain = PagedKvTransfer::Create(client_.get(), CacheShape(fp), HostOptions());
  ASSERT_TRUE(plain.ok());
  const std::vector<ChunkKey> again = PutChunks(**plain, source, 0, {16, 16});
  dest.Poison(0xEE);
  load = (*plain)->GetToDevice(again, Target(dest, 0), nullptr);
  ASSERT_TRUE(load.ok()) << load.status().ToString();
  ExpectPlaced(source, dest, 0, 32, 0xEE);
  stats = (*plain)->stats();
  EXPECT_EQ(stats.staged_chunks, 2u);
  EXPECT_EQ(stats.nccl_off,
            "the server's GPU channel cannot be opened: FAILED_PRECONDITION: gpu channel: this server has no GPU "
            "tier");
}

// A channel refused for now (every slot taken) is tried again after nccl_retry; one refused for good is not.
TEST_F(GpuChannelTest, PagedTransferRetriesAChannelRefusedForNow) {
  StartWithGpu("all", /*max_channels=*/1);
  const ModelFingerprint fp = TestFingerprint(kChunkTokens);
  PagedTransferOptions options = HostOptions();
  options.nccl_retry = std::chrono::milliseconds(0);
  auto t = PagedKvTransfer::Create(client_.get(), CacheShape(fp), options);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  HostPagedCache source(CacheShape(fp), 4);
  source.FillRandom(7);
  const std::vector<ChunkKey> keys = PutChunks(**t, source, 0, {16, 16});
  auto other = Open();  // takes the only slot
  ASSERT_NE(other, nullptr);
  HostPagedCache dest(CacheShape(fp), 5);
  dest.Poison(0xEE);
  auto load = (*t)->GetToDevice(keys, Target(dest, 0), nullptr);
  ASSERT_TRUE(load.ok()) << load.status().ToString();
  ExpectPlaced(source, dest, 0, 32, 0xEE);
  EXPECT_EQ((*t)->stats().staged_chunks, 2u);
  EXPECT_EQ((*t)->stats().nccl_off,
            "the server's GPU channel cannot be opened: RESOURCE_EXHAUSTED: gpu channel: 1 channels are open already "
            "(gpu_tier.max_channels)");
  other.reset();
  // The slot comes back once the server's handler ended (bounded by a hang guard of 60 s).
  uint64_t over_link = 0;
  for (int attempt = 0; attempt < 6000 && over_link == 0; ++attempt) {
    dest.Poison(0xEE);
    load = (*t)->GetToDevice(keys, Target(dest, 0), nullptr);
    ASSERT_TRUE(load.ok()) << load.status().ToString();
    ExpectPlaced(source, dest, 0, 32, 0xEE);
    over_link = (*t)->stats().nccl_chunks;
    if (over_link == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(over_link, 2u);
  EXPECT_EQ((*t)->stats().nccl_off, "");
}

}  // namespace
}  // namespace kvtier::testing
