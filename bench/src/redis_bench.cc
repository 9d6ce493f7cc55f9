// The Redis rows: SET/GET of the same bytes, one hiredis connection per client thread.
#include <hiredis/hiredis.h>

#include <cstring>

#include "bench_common.h"

namespace kvtier::bench {
namespace {

struct RedisConn {
  redisContext* c = nullptr;
  ~RedisConn() {
    if (c != nullptr) redisFree(c);
  }
};

Status RedisCall(redisContext* c, int argc, const char** argv, const size_t* lens, std::byte* dest, size_t expect) {
  auto* reply = static_cast<redisReply*>(redisCommandArgv(c, argc, argv, lens));
  if (reply == nullptr) return Unavailable(std::string("redis: ") + c->errstr);
  Status s;
  if (reply->type == REDIS_REPLY_ERROR) s = Internal(std::string("redis: ") + reply->str);
  else if (dest != nullptr) {
    if (reply->type != REDIS_REPLY_STRING || static_cast<size_t>(reply->len) != expect) {
      s = Internal("redis missed a bench key");
    } else {
      std::memcpy(dest, reply->str, expect);  // a worker needs the bytes in its own buffer too
    }
  }
  freeReplyObject(reply);
  return s;
}

// kvtier's arena is pre-faulted when the server starts; Redis takes memory from the kernel as values
// arrive, and first touch of fresh memory is slow on VMs. To compare put paths rather than page faults,
// Redis first stores and deletes a working set of the same size (untimed), so its allocator holds the
// pages when the timed puts begin.
Status WarmRedis(std::vector<RedisConn>& conns, const Buffers& buf, uint64_t chunk, uint64_t keys) {
  const int clients = static_cast<int>(conns.size());
  for (const char* command : {"SET", "DEL"}) {
    auto pass = RunParallel(clients, keys, [&](int t, uint64_t i) -> Status {
      const std::string key = "warm:" + std::to_string(i);
      const char* argv[] = {command, key.data(), reinterpret_cast<const char*>(buf.payload[t].data())};
      const size_t lens[] = {3, key.size(), chunk};
      return RedisCall(conns[t].c, command[0] == 'S' ? 3 : 2, argv, lens, nullptr, 0);
    });
    if (!pass.ok()) return pass.status();
  }
  return Status::Ok();
}

}  // namespace

Status BenchRedis(int port, uint64_t chunk, int clients, uint64_t keys, int passes, std::vector<BenchRow>* rows) {
  std::vector<RedisConn> conns(clients);
  for (auto& conn : conns) {
    conn.c = redisConnect("127.0.0.1", port);
    if (conn.c == nullptr || conn.c->err != 0) return Unavailable("cannot connect to redis");
  }
  Buffers buf(clients, chunk);
  auto key_of = [](uint64_t i) { return "bench:" + std::to_string(i); };
  KVTIER_RETURN_IF_ERROR(WarmRedis(conns, buf, chunk, keys));

  auto put = RunParallel(clients, keys, [&](int t, uint64_t i) -> Status {
    const std::string key = key_of(i);
    const char* argv[] = {"SET", key.data(), reinterpret_cast<const char*>(buf.payload[t].data())};
    const size_t lens[] = {3, key.size(), chunk};
    return RedisCall(conns[t].c, 3, argv, lens, nullptr, 0);
  });
  if (!put.ok()) return put.status();
  rows->push_back(MakeRow("redis", "put", chunk, clients, std::move(put).value()));

  auto get = RunParallel(clients, keys * passes, [&](int t, uint64_t i) -> Status {
    const std::string key = key_of(i % keys);
    const char* argv[] = {"GET", key.data()};
    const size_t lens[] = {3, key.size()};
    return RedisCall(conns[t].c, 2, argv, lens, buf.dest[t].data(), chunk);
  });
  if (!get.ok()) return get.status();
  rows->push_back(MakeRow("redis", "get", chunk, clients, std::move(get).value()));
  if (buf.dest[0] != buf.payload[0]) return DataLoss("redis returned different bytes than were put");

  const char* flush[] = {"FLUSHALL"};
  const size_t flush_len[] = {8};
  return RedisCall(conns[0].c, 1, flush, flush_len, nullptr, 0);
}

}  // namespace kvtier::bench
