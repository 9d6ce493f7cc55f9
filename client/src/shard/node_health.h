// NodeHealth: a circuit breaker for one node of a sharded cluster.
//
// Closed: calls go to the node. After `failures_to_open` transport failures in a row (UNAVAILABLE,
// DEADLINE_EXCEEDED) it opens: calls skip the node (its keys are misses) for a backoff that doubles on each
// failed probe, up to a cap. When the backoff has passed, one caller gets to probe (half-open); success closes
// the breaker, failure reopens it. Thread-safe (a mutex held for a few fields).
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>

#include "kvtier/api/status.h"

namespace kvtier {

struct NodeHealthOptions {
  uint32_t failures_to_open = 3;
  std::chrono::milliseconds initial_backoff{500};
  std::chrono::milliseconds max_backoff{30000};
};

enum class CircuitState { kClosed = 0, kOpen = 1, kHalfOpen = 2 };

class NodeHealth {
 public:
  using Clock = std::chrono::steady_clock;
  explicit NodeHealth(NodeHealthOptions options) : options_(options) {}

  enum class Admission { kDeny, kAllow, kProbe };
  // Whether a call may go to the node now. In the open state, the first caller after the backoff is let
  // through as the probe (kProbe: check the node's health before sending it real work).
  Admission Admit(Clock::time_point now = Clock::now());
  bool Allow(Clock::time_point now = Clock::now()) { return Admit(now) != Admission::kDeny; }
  // The outcome of a call that was allowed. Only transport failures count against the node.
  void Record(const Status& status, Clock::time_point now = Clock::now());

  CircuitState state() const;
  uint64_t opened_count() const;  // times the breaker opened

  static bool IsTransportFailure(const Status& status);

 private:
  const NodeHealthOptions options_;
  mutable std::mutex mu_;
  CircuitState state_ = CircuitState::kClosed;  // guarded by mu_
  uint32_t consecutive_failures_ = 0;           // guarded by mu_
  std::chrono::milliseconds backoff_{0};        // guarded by mu_
  Clock::time_point retry_at_{};                // guarded by mu_
  uint64_t opened_ = 0;                         // guarded by mu_
};

}  // namespace kvtier
