#include "shard/node_health.h"

#include <algorithm>

namespace kvtier {

bool NodeHealth::IsTransportFailure(const Status& status) {
  return status.code() == StatusCode::kUnavailable || status.code() == StatusCode::kDeadlineExceeded;
}

NodeHealth::Admission NodeHealth::Admit(Clock::time_point now) {
  std::lock_guard lock(mu_);
  switch (state_) {
    case CircuitState::kClosed: return Admission::kAllow;
    case CircuitState::kHalfOpen: return Admission::kDeny;  // a probe is in flight
    case CircuitState::kOpen:
      if (now < retry_at_) return Admission::kDeny;
      state_ = CircuitState::kHalfOpen;
      return Admission::kProbe;
  }
  return Admission::kDeny;
}

void NodeHealth::Record(const Status& status, Clock::time_point now) {
  std::lock_guard lock(mu_);
  if (!IsTransportFailure(status)) {
    state_ = CircuitState::kClosed;
    consecutive_failures_ = 0;
    backoff_ = std::chrono::milliseconds(0);
    return;
  }
  ++consecutive_failures_;
  if (state_ == CircuitState::kClosed && consecutive_failures_ < options_.failures_to_open) return;
  // Open (again): a failed probe doubles the wait.
  backoff_ = backoff_.count() == 0 ? options_.initial_backoff : std::min(backoff_ * 2, options_.max_backoff);
  if (state_ != CircuitState::kOpen) ++opened_;
  state_ = CircuitState::kOpen;
  retry_at_ = now + backoff_;
}

CircuitState NodeHealth::state() const {
  std::lock_guard lock(mu_);
  return state_;
}

uint64_t NodeHealth::opened_count() const {
  std::lock_guard lock(mu_);
  return opened_;
}

}  // namespace kvtier
