#include "kvtier/kvstore/admission_policy.h"

#include <algorithm>
#include <mutex>
#include <vector>

namespace kvtier {
namespace {

class AdmitAll final : public AdmissionPolicy {
 public:
  std::string_view name() const override { return "admit-all"; }
  bool Admit(const AdmissionCandidate&) override { return true; }
};

class SeenTwice final : public AdmissionPolicy {
 public:
  explicit SeenTwice(size_t slots) : refused_(std::max<size_t>(slots, 1), 0) {}
  std::string_view name() const override { return "seen-twice"; }

  bool Admit(const AdmissionCandidate& c) override {
    if (c.hits > 0) return true;
    // A direct-mapped set of fingerprints of recent refusals: a collision only admits early.
    const uint64_t fp = (c.key.hi ^ (c.key.lo * 0x9e3779b97f4a7c15ull) ^ c.ns_id) | 1;
    std::lock_guard lock(mu_);
    uint64_t& slot = refused_[fp % refused_.size()];
    if (slot == fp) {
      slot = 0;
      return true;
    }
    slot = fp;
    return false;
  }

 private:
  std::mutex mu_;
  std::vector<uint64_t> refused_;  // guarded by mu_
};

class WriteBudget final : public AdmissionPolicy {
 public:
  WriteBudget(uint64_t per_day, std::function<int64_t()> now_ns)
      : per_day_(static_cast<double>(per_day)), now_ns_(std::move(now_ns)), tokens_(per_day_), last_(now_ns_()) {}
  std::string_view name() const override { return "write-budget"; }

  bool Admit(const AdmissionCandidate& c) override {
    std::lock_guard lock(mu_);
    const int64_t now = now_ns_();
    const double day_ns = 86400e9;
    tokens_ = std::min(per_day_, tokens_ + per_day_ * static_cast<double>(now - last_) / day_ns);
    last_ = now;
    if (tokens_ < static_cast<double>(c.bytes)) return false;
    tokens_ -= static_cast<double>(c.bytes);
    return true;
  }

 private:
  const double per_day_;
  const std::function<int64_t()> now_ns_;
  std::mutex mu_;
  double tokens_;  // guarded by mu_
  int64_t last_;   // guarded by mu_
};

}  // namespace

std::unique_ptr<AdmissionPolicy> MakeAdmitAll() { return std::make_unique<AdmitAll>(); }
std::unique_ptr<AdmissionPolicy> MakeSeenTwice(size_t remembered) { return std::make_unique<SeenTwice>(remembered); }
std::unique_ptr<AdmissionPolicy> MakeWriteBudget(uint64_t bytes_per_day, std::function<int64_t()> now_ns) {
  return std::make_unique<WriteBudget>(bytes_per_day, std::move(now_ns));
}

}  // namespace kvtier
