#include "kvtier/kvstore/profile_registry.h"

#include <cstdio>

namespace kvtier {
namespace {

std::string IdHex(uint64_t id) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(id));
  return buf;
}

Status CheckName(std::string_view name) {
  if (name.empty() || name.size() > 128) return InvalidArgument("profile name must be 1..128 bytes");
  return Status::Ok();
}

}  // namespace

Result<StoredProfile> ProfileRegistry::Put(uint32_t ns_id, std::string_view name, std::span<const std::byte> bytes,
                                           const ModelFingerprint& fp) {
  KVTIER_RETURN_IF_ERROR(CheckName(name));
  if (bytes.size() > limits_.max_profile_bytes) {
    return ResourceExhausted("profile of " + std::to_string(bytes.size()) + " bytes exceeds max_profile_bytes " +
                             std::to_string(limits_.max_profile_bytes));
  }
  auto profile = codec::ModelProfile::Deserialize(bytes);
  if (!profile.ok()) return InvalidArgument("profile does not parse: " + profile.status().message());
  if (profile->num_layers() != fp.num_layers || profile->num_kv_heads() != fp.num_kv_heads ||
      profile->head_dim() != fp.head_dim) {
    return InvalidArgument("profile shape (" + std::to_string(profile->num_layers()) + " layers, " +
                           std::to_string(profile->num_kv_heads()) + " heads, " +
                           std::to_string(profile->head_dim()) + " dims) does not match the fingerprint " +
                           fp.ShortString());
  }
  return Insert(ns_id, name, std::move(profile).value(), 0);
}

Status ProfileRegistry::Restore(uint32_t ns_id, std::string_view name, uint64_t sequence,
                                std::span<const std::byte> bytes) {
  KVTIER_RETURN_IF_ERROR(CheckName(name));
  auto profile = codec::ModelProfile::Deserialize(bytes);
  if (!profile.ok()) return profile.status();
  auto stored = Insert(ns_id, name, std::move(profile).value(), sequence);
  return stored.ok() ? Status::Ok() : stored.status();
}

Result<StoredProfile> ProfileRegistry::Insert(uint32_t ns_id, std::string_view name, codec::ModelProfile profile,
                                              uint64_t sequence) {
  std::lock_guard lock(mu_);
  const bool restoring = sequence != 0;
  if (restoring) next_sequence_ = std::max(next_sequence_, sequence + 1);
  else sequence = next_sequence_++;
  const IdKey id{ns_id, profile.id()};
  auto it = by_id_.find(id);
  const bool present = it != by_id_.end();
  if (!present) {
    uint32_t& count = per_namespace_[ns_id];
    if (!restoring && count >= limits_.max_per_namespace) {
      return ResourceExhausted("namespace already holds max_profiles_per_namespace = " +
                               std::to_string(limits_.max_per_namespace) + " profiles");
    }
    ++count;
    it = by_id_.emplace(id, Entry{std::make_unique<codec::ModelProfile>(std::move(profile)), "", 0}).first;
  }
  // The name moves to the newest put; at load, to the highest sequence.
  auto name_it = names_.find(NameKey{ns_id, std::string(name)});
  const bool newer = name_it == names_.end() || by_id_.at({ns_id, name_it->second}).sequence <= sequence;
  if (sequence >= it->second.sequence) {
    it->second.name = std::string(name);
    it->second.sequence = sequence;
  }
  if (newer) names_[NameKey{ns_id, std::string(name)}] = id.second;
  return View(it->second, present);
}

StoredProfile ProfileRegistry::View(const Entry& e, bool already_present) const {
  return StoredProfile{e.profile.get(), e.name, e.sequence, already_present};
}

const codec::ModelProfile* ProfileRegistry::Find(uint32_t ns_id, uint64_t id) const {
  std::lock_guard lock(mu_);
  auto it = by_id_.find({ns_id, id});
  return it == by_id_.end() ? nullptr : it->second.profile.get();
}

Result<StoredProfile> ProfileRegistry::FindById(uint32_t ns_id, uint64_t id) const {
  std::lock_guard lock(mu_);
  auto it = by_id_.find({ns_id, id});
  if (it == by_id_.end()) return NotFound("no profile with id " + IdHex(id) + " in this namespace");
  return View(it->second, true);
}

Result<StoredProfile> ProfileRegistry::FindByName(uint32_t ns_id, std::string_view name) const {
  std::lock_guard lock(mu_);
  auto it = names_.find(NameKey{ns_id, std::string(name)});
  if (it == names_.end()) return NotFound("no profile named '" + std::string(name) + "' in this namespace");
  return View(by_id_.at({ns_id, it->second}), true);
}

codec::ProfileResolver ProfileRegistry::Resolver(uint32_t ns_id) const {
  return [this, ns_id](uint64_t id) { return Find(ns_id, id); };
}

}  // namespace kvtier
