// Integration-test fixture: a real kvtier Server on a loopback port chosen by the OS, a real Client,
// and a raw gRPC stub for sending requests the Client would never send (malformed input).
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "kvtier/client/client.h"
#include "kvtier/kvstore/server.h"
#include "kvtier/v1/kvtier.grpc.pb.h"

namespace kvtier::testing {

ModelFingerprint TestFingerprint(uint32_t chunk_tokens = 16);  // 1 KiB of KV per token

// Deterministic payload for (key, size): any thread can verify any chunk.
std::vector<std::byte> PayloadFor(const ChunkKey& key, size_t bytes);
std::vector<uint32_t> TokensFor(const ChunkKey& key, size_t n);

// The header message of a raw put stream: `key` in `context`, RAW codec, `tokens`, size and checksum of
// `payload`. Tests change fields to send what the Client would never send.
v1::PutRequest PutHeaderFor(const v1::RequestContext& context, const ChunkKey& key, std::span<const std::byte> payload,
                            std::span<const uint32_t> tokens);

// A config for servers a test starts by hand (to see them refused): loopback port 0, no metrics, a small
// arena that is not pre-faulted.
ServerConfig SmallServerConfig();

// grpc.health.v1.Health/Check with the empty request, over a generic stub (no token, no TLS). On
// success `response` holds the serialized HealthCheckResponse.
grpc::Status CheckHealth(const std::string& address, std::string* response);

class ServerFixture : public ::testing::Test {
 protected:
  // Starts the server; `tweak` may change the config first.
  void StartServer(uint64_t capacity = 64ull << 20, const std::function<void(ServerConfig&)>& tweak = {});
  void TearDown() override;

  std::unique_ptr<Client> NewClient(const std::string& name_space = "test",
                                    const ModelFingerprint& fp = TestFingerprint());
  v1::RequestContext Context(const std::string& name_space = "test", const ModelFingerprint& fp = TestFingerprint());
  std::unique_ptr<v1::KvTier::Stub> RawStub();
  // A raw put stream: `header`, then `payload` in one data frame (written only while the stream is open).
  grpc::Status PutRaw(const v1::PutRequest& header, std::span<const std::byte> payload, v1::PutResponse* response);
  uint64_t HostUsedBytes();

  std::atomic<int64_t> now_ns_{1'000'000'000};  // the server's lease clock
  std::unique_ptr<Server> server_;
  std::unique_ptr<Client> client_;
};

}  // namespace kvtier::testing
