// The lookup rows: clients ask Lookup about full 64-key prefix chains that are all cached, and the run
// reports keys looked up per wall second and per second of server CPU (the process's CPU time over the
// timed region minus the client threads' own).
#include <cstring>

#include "bench_common.h"

namespace kvtier::bench {
namespace {

constexpr uint64_t kChainKeys = 64;
constexpr uint64_t kChains = 16;
constexpr uint64_t kLookupChunk = kBytesPerToken;  // one token of one layer
constexpr char kLookupNamespace[] = "kvtier-bench-lookup";

using Chains = std::vector<std::vector<ChunkKey>>;

Chains MakeChains() {
  Chains chains(kChains);
  for (uint64_t c = 0; c < kChains; ++c) {
    for (uint64_t k = 0; k < kChainKeys; ++k) chains[c].push_back(ChunkKey{0x100c'0000'0000ull | c, k});
  }
  return chains;
}

Status PutChains(Client& client, const Chains& chains) {
  std::vector<std::byte> payload(kLookupChunk);
  FillRandom(payload, 11);
  const uint32_t token = 0;
  std::vector<ChunkPut> puts;
  for (const auto& chain : chains) {
    puts.clear();
    for (const ChunkKey& key : chain) puts.push_back(ChunkPut{key, {&token, 1}, payload, {}});
    auto r = client.PutBatch(puts);
    if (!r.ok()) return r.status();
  }
  return Status::Ok();
}

Status DeleteChains(Client& client, const Chains& chains) {
  for (const auto& chain : chains) {
    auto d = client.Delete(chain);
    if (!d.ok()) return d.status();
  }
  return Status::Ok();
}

Status LookupCell(const std::string& endpoint, const Chains& chains, int clients, uint64_t calls, bool server_cpu,
                  std::vector<BenchRow>* rows) {
  std::vector<std::unique_ptr<Client>> conns;
  for (int t = 0; t < clients; ++t) {
    auto c = ConnectBenchClient(endpoint, kLookupNamespace, kLookupChunk, LocalPathMode::kOff);
    if (!c.ok()) return c.status();
    auto warm = (*c)->Lookup(chains[0]);  // the connection exists before timing
    if (!warm.ok()) return warm.status();
    conns.push_back(std::move(c).value());
  }
  auto run = RunParallel(clients, calls, [&](int t, uint64_t i) -> Status {
    auto r = conns[t]->Lookup(chains[i % chains.size()]);
    if (!r.ok()) return r.status();
    return r->leading_hits == kChainKeys ? Status::Ok() : Internal("lookup missed a bench chain key");
  });
  if (!run.ok()) return run.status();
  const double server_seconds = run->process_cpu_seconds - run->client_cpu_seconds;
  BenchRow row = MakeRow("kvtier", "lookup", kLookupChunk, clients, std::move(run).value());
  const double keys = static_cast<double>(calls * kChainKeys);
  row.gbps = 0;
  row.keys_per_call = kChainKeys;
  row.keys_per_s = keys / row.seconds;
  if (server_cpu && server_seconds > 0) row.keys_per_s_per_core = keys / server_seconds;
  rows->push_back(row);
  return Status::Ok();
}

}  // namespace

Status BenchLookups(const std::string& endpoint, const BenchOptions& options, bool server_cpu,
                    std::vector<BenchRow>* rows, std::ostream& progress) {
  auto writer = ConnectBenchClient(endpoint, kLookupNamespace, kLookupChunk, LocalPathMode::kOff);
  if (!writer.ok()) return writer.status();
  const Chains chains = MakeChains();
  KVTIER_RETURN_IF_ERROR(PutChains(**writer, chains));
  for (int clients : options.clients) {
    progress << "lookup: " << options.lookups << " x " << kChainKeys << " keys, " << clients << " client(s)"
             << std::flush;
    Status s = LookupCell(endpoint, chains, clients, static_cast<uint64_t>(options.lookups), server_cpu, rows);
    if (!s.ok()) {
      (void)DeleteChains(**writer, chains);
      return s;
    }
    progress << " done\n";
  }
  return DeleteChains(**writer, chains);
}

}  // namespace kvtier::bench
