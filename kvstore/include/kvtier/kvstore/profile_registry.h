// ProfileRegistry: the shared cachegen profiles of each namespace (DESIGN §5), by id and by name.
//
// A profile is the frequency tables chunks reference by id instead of carrying them; the registry
// validates a profile (it must deserialize and match the fingerprint's shape) before anyone can
// reference it. Profiles are never removed while the process runs, so the pointers it hands out stay
// valid for the registry's lifetime; a later put under the same name only moves the name.
// Bounded: at most max_per_namespace profiles per namespace, each at most max_profile_bytes.
// Thread-safe (one mutex around the maps; profiles themselves are immutable).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "kvtier/api/status.h"
#include "kvtier/api/types.h"
#include "kvtier/codec/codec.h"
#include "kvtier/codec/model_profile.h"

namespace kvtier {

struct ProfileLimits {
  uint32_t max_per_namespace = 64;          // distinct profiles one namespace may hold
  uint64_t max_profile_bytes = 32ull << 20;  // largest serialized profile accepted
};

struct StoredProfile {
  const codec::ModelProfile* profile = nullptr;  // owned by the registry
  std::string name;                              // the name it was last put under
  uint64_t sequence = 0;                         // order of puts, so the newest holder of a name wins at load
  bool already_present = false;                  // Put only: the same bytes were there before
};

class ProfileRegistry {
 public:
  explicit ProfileRegistry(ProfileLimits limits) : limits_(limits) {}

  // Validates and stores `bytes` under `name` (1..128 bytes). INVALID_ARGUMENT for bytes that do
  // not deserialize or whose shape differs from `fp`; RESOURCE_EXHAUSTED past the limits.
  Result<StoredProfile> Put(uint32_t ns_id, std::string_view name, std::span<const std::byte> bytes,
                            const ModelFingerprint& fp);
  // Puts a profile read back at start with the sequence it had (the name goes to the highest).
  Status Restore(uint32_t ns_id, std::string_view name, uint64_t sequence, std::span<const std::byte> bytes);

  const codec::ModelProfile* Find(uint32_t ns_id, uint64_t id) const;
  // NOT_FOUND naming what was asked for.
  Result<StoredProfile> FindByName(uint32_t ns_id, std::string_view name) const;
  Result<StoredProfile> FindById(uint32_t ns_id, uint64_t id) const;
  // For the codec's decoder: resolves ids of this namespace.
  codec::ProfileResolver Resolver(uint32_t ns_id) const;

 private:
  struct Entry {
    std::unique_ptr<codec::ModelProfile> profile;
    std::string name;
    uint64_t sequence = 0;
  };
  using IdKey = std::pair<uint32_t, uint64_t>;
  using NameKey = std::pair<uint32_t, std::string>;

  Result<StoredProfile> Insert(uint32_t ns_id, std::string_view name, codec::ModelProfile profile, uint64_t sequence);
  StoredProfile View(const Entry& e, bool already_present) const;

  const ProfileLimits limits_;
  mutable std::mutex mu_;
  std::map<IdKey, Entry> by_id_;                  // guarded by mu_
  std::map<NameKey, uint64_t, std::less<>> names_;  // name -> id; guarded by mu_
  std::map<uint32_t, uint32_t> per_namespace_;    // profile count; guarded by mu_
  uint64_t next_sequence_ = 1;                    // guarded by mu_
};

}  // namespace kvtier
