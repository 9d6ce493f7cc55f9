// The fixtures of the PagedKvTransfer integration tests (paged_transfer_test.cc, paged_transfer_decode_test.cc):
// a real server, the transfer's CPU twin over host paged caches, chunks put out of one cache and compared with
// another row by row; and a server with a shared arena for the same-host (zero-copy) path.
#pragma once

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "integration/paged_cache.h"
#include "integration/test_server.h"
#include "kvtier/client/paged_transfer.h"
#include "kvtier/kvstore/host_arena.h"

namespace kvtier::testing {

inline constexpr uint32_t kChunkTokens = 16;

inline gpu::PagedKvShape CacheShape(const ModelFingerprint& fp) {
  gpu::PagedKvShape s;
  s.num_layers = fp.num_layers;
  s.num_blocks = 16;
  s.block_size = 8;
  s.num_kv_heads = fp.num_kv_heads;
  s.head_dim = fp.head_dim;
  s.dtype = fp.dtype;
  return s;
}

inline PagedTransferOptions HostOptions() {
  PagedTransferOptions o;
  o.placement = TransferPlacement::kHost;
  o.staging_bytes = 1 << 20;
  return o;
}

inline PagedTarget Target(const HostPagedCache& c, uint32_t first_token) {
  return PagedTarget{c.View(), c.block_table.data(), static_cast<uint32_t>(c.block_table.size()), first_token};
}

class PagedTransferTest : public ServerFixture {
 protected:
  void SetUp() override { StartServer(); }

  // Puts `sizes.size()` chunks of `source` from `first_token` under keys 1, 2, ...
  std::vector<ChunkKey> PutChunks(PagedKvTransfer& t, const HostPagedCache& source, uint32_t first_token,
                                  const std::vector<uint32_t>& sizes) {
    std::vector<ChunkKey> keys;
    for (size_t i = 0; i < sizes.size(); ++i) keys.push_back(ChunkKey{0x5eed, 100 + i});
    tokens_.clear();
    for (size_t i = 0; i < sizes.size(); ++i) tokens_.push_back(TokensFor(keys[i], sizes[i]));
    std::vector<std::span<const uint32_t>> spans(tokens_.begin(), tokens_.end());
    auto put = t.PutFromDevice(keys, spans, Target(source, first_token), nullptr);
    EXPECT_TRUE(put.ok()) << put.status().ToString();
    if (put.ok()) {
      EXPECT_EQ(put->size(), sizes.size());
    }
    return keys;
  }

  // Every row of positions [from, to) equal in both caches; every other row of `dest` still `poison`.
  void ExpectPlaced(const HostPagedCache& source, const HostPagedCache& dest, uint32_t from, uint32_t to,
                    uint8_t poison) {
    const uint64_t row = dest.shape.RowBytes();
    std::vector<std::byte> poisoned(row, std::byte{poison});
    const uint32_t positions = dest.shape.num_blocks * dest.shape.block_size;
    for (uint32_t l = 0; l < dest.shape.num_layers; ++l) {
      for (int kv = 0; kv < 2; ++kv) {
        for (uint32_t p = 0; p < positions; ++p) {
          const bool placed = p >= from && p < to;
          const std::byte* want = placed ? source.Row(l, kv, p) : poisoned.data();
          ASSERT_EQ(std::memcmp(dest.Row(l, kv, p), want, row), 0)
              << "layer " << l << (kv ? " V" : " K") << " position " << p << (placed ? " (placed)" : " (untouched)");
        }
      }
    }
  }

  std::vector<std::vector<uint32_t>> tokens_;
};

// The server's host: the transfer reads chunks straight from the namespace's shared arena.
class PagedTransferSharedMemoryTest : public PagedTransferTest {
 protected:
  static constexpr const char* kShared = "workers";
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("kvtier-paged-" + std::to_string(getpid()) + "-" +
                                                     std::to_string(reinterpret_cast<uintptr_t>(this)));
    std::filesystem::create_directories(dir_);
    StartServer(4ull << 20, [&](ServerConfig& c) {
      c.store.host_prefault = false;
      c.store.shared_arena_bytes[kShared] = 2ull << 20;
      c.shared_memory.socket_path = (dir_ / "kvtier.sock").string();
      c.shared_memory.put_window_bytes = 1ull << 20;
    });
  }
  void TearDown() override {
    ServerFixture::TearDown();
    std::filesystem::remove_all(dir_);
  }
  std::unique_ptr<Client> SharedClient(LocalPathMode mode, const codec::EncodeOptions& encode = {},
                                       uint32_t chunk_tokens = kChunkTokens) {
    ClientOptions o;
    o.endpoint = server_->address();
    o.name_space = kShared;
    o.fingerprint = TestFingerprint(chunk_tokens);
    o.local_path = mode;
    o.local_retry = std::chrono::milliseconds(0);
    o.encode = encode;
    auto c = Client::Connect(o);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return std::move(c).value();
  }
  // Flips `mask` in the byte `at` of the chunk whose stored bytes are `stored`, found in the namespace's arena
  // by its bytes, as failing DRAM would.
  void FlipStoredBit(std::span<const std::byte> stored, size_t at, std::byte mask) {
    const HostArena* arena = server_->store().SharedArenaOf(kShared);
    ASSERT_NE(arena, nullptr);
    const std::byte* begin = arena->data();
    const std::byte* found = std::search(begin, begin + arena->size(), stored.begin(), stored.end());
    ASSERT_NE(found, begin + arena->size());
    arena->data()[(found - begin) + at] ^= mask;
  }
  // The load placed chunk 0 only (16 tokens): chunk 1 was corrupt, is a miss, and the server dropped it.
  // `failures`: the server's checksum failures so far, this one included.
  void ExpectCorruptSecondChunkDropped(Client& client, const LayerwiseLoad& load, std::span<const ChunkKey> keys,
                                       uint64_t failures = 1) {
    EXPECT_EQ(load.placed_chunks, 1u);
    EXPECT_EQ(load.placed_tokens, 16u);
    EXPECT_FALSE(load.results[1].found) << "a corrupt chunk is a miss";
    EXPECT_EQ(server_->store().Stats().checksum_failures, failures);
    auto exists = client.Exists(keys.subspan(1, 1));
    ASSERT_TRUE(exists.ok());
    EXPECT_FALSE((*exists)[0]) << "dropped by the server";
  }
  std::filesystem::path dir_;
};

}  // namespace kvtier::testing
