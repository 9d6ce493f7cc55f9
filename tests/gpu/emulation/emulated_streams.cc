// Streams and events of the emulated device (emulated_streams.h): each stream a queue of work that runs in
// order, as late as CUDA allows; each event a position in one stream's queue.
#include "emulated_streams.h"

#include <cstdint>
#include <deque>
#include <memory>
#include <set>
#include <utility>
#include <vector>

#include "emulated_kernel.h"
#include "kvtier/gpu/stream.h"

namespace {

// One stream's work: `completed` of the `enqueued` items have run; the rest wait in `pending`, in order.
struct WorkQueue;
std::set<WorkQueue*>& LiveQueues() {
  static auto* queues = new std::set<WorkQueue*>;  // never destroyed: queues may outlive static destruction
  return *queues;
}

struct WorkQueue {
  WorkQueue() { LiveQueues().insert(this); }
  ~WorkQueue() { LiveQueues().erase(this); }
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  std::deque<std::function<void()>> pending;
  uint64_t enqueued = 0;
  uint64_t completed = 0;
};

// Runs the queue's work up to position `until` (a count of items enqueued). An item taken off the queue counts
// as completed before it runs: a wait it holds may run other queues, never this one (a wait refers to work
// enqueued before it).
void RunUntil(WorkQueue& queue, uint64_t until) {
  while (queue.completed < until) {
    std::function<void()> work = std::move(queue.pending.front());
    queue.pending.pop_front();
    ++queue.completed;
    work();
  }
}

}  // namespace

// Shared: an event (and a wait on it) keeps its stream's queue, so it can be waited for after the stream is gone.
struct CUstream_st {
  std::shared_ptr<WorkQueue> queue = std::make_shared<WorkQueue>();
};
struct CUevent_st {
  std::shared_ptr<WorkQueue> queue;  // null until recorded: an event never recorded is complete
  uint64_t position = 0;             // complete once the queue has run this many items
};

namespace {

std::mutex device_mutex;

CUstream_st& StreamOf(cudaStream_t stream) {
  static auto* legacy = new CUstream_st;  // the legacy default stream, for launches and copies given none
  return stream != nullptr ? *stream : *legacy;
}

bool Complete(const CUevent_st& event) { return !event.queue || event.queue->completed >= event.position; }

}  // namespace

namespace emu {

std::unique_lock<std::mutex> LockDevice() { return std::unique_lock(device_mutex); }

void EnqueueLocked(cudaStream_t stream, std::function<void()> work) {
  WorkQueue& queue = *StreamOf(stream).queue;
  queue.pending.push_back(std::move(work));
  ++queue.enqueued;
}

void SynchronizeLocked(cudaStream_t stream) {
  WorkQueue& queue = *StreamOf(stream).queue;
  RunUntil(queue, queue.enqueued);
}

void SynchronizeDeviceLocked() {
  // Running work enqueues none, so one pass empties every queue. It may end a queue (a wait holding the last
  // reference to a destroyed stream's): the pass goes over a snapshot and skips queues gone meanwhile.
  const std::vector<WorkQueue*> queues(LiveQueues().begin(), LiveQueues().end());
  for (WorkQueue* queue : queues) {
    if (LiveQueues().count(queue) != 0) RunUntil(*queue, queue->enqueued);
  }
}

void Enqueue(cudaStream_t stream, std::function<void()> work) {
  auto lock = LockDevice();
  EnqueueLocked(stream, std::move(work));
}

}  // namespace emu

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  auto lock = emu::LockDevice();
  emu::SynchronizeLocked(stream);
  return cudaSuccess;
}

namespace kvtier::gpu {

Result<Stream> Stream::Create() {
  auto lock = emu::LockDevice();
  return Stream(new CUstream_st);
}
Stream::Stream(Stream&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
Stream& Stream::operator=(Stream&& other) noexcept {
  if (this != &other) {
    Stream old(handle_);
    handle_ = std::exchange(other.handle_, nullptr);
  }
  return *this;
}
// cudaStreamDestroy returns at once and the queued work still completes: run it now, the latest it may run.
Stream::~Stream() {
  if (handle_ == nullptr) return;
  auto lock = emu::LockDevice();
  emu::SynchronizeLocked(handle_);
  delete handle_;
}
Status Stream::Synchronize() const {
  cudaStreamSynchronize(handle_);
  return Status::Ok();
}

Result<Event> Event::Create(bool /*timing*/) {
  auto lock = emu::LockDevice();
  return Event(new CUevent_st);
}
Event::Event(Event&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
Event& Event::operator=(Event&& other) noexcept {
  if (this != &other) {
    Event old(handle_);
    handle_ = std::exchange(other.handle_, nullptr);
  }
  return *this;
}
Event::~Event() {
  if (handle_ == nullptr) return;
  auto lock = emu::LockDevice();
  delete handle_;  // the queue it held stays while a wait on it is queued
}
// The event completes when the stream's work queued so far has run.
Status Event::Record(StreamHandle stream) {
  auto lock = emu::LockDevice();
  handle_->queue = StreamOf(stream).queue;
  handle_->position = handle_->queue->enqueued;
  return Status::Ok();
}
// The wait refers to the event as recorded now (a later record does not move it), as cudaStreamWaitEvent does.
Status Event::MakeStreamWait(StreamHandle stream) const {
  auto lock = emu::LockDevice();
  if (Complete(*handle_)) return Status::Ok();
  emu::EnqueueLocked(stream, [queue = handle_->queue, position = handle_->position] { RunUntil(*queue, position); });
  return Status::Ok();
}
Status Event::Synchronize() const {
  auto lock = emu::LockDevice();
  if (handle_->queue) RunUntil(*handle_->queue, handle_->position);
  return Status::Ok();
}
// A poll must see progress: the work it asks about runs now, and the event is complete.
Result<bool> Event::Query() const {
  KVTIER_RETURN_IF_ERROR(Synchronize());
  return true;
}
// Both events must be complete, as for cudaEventElapsedTime; no time passes on the emulated device.
Result<float> Event::ElapsedMs(const Event& start, const Event& end) {
  auto lock = emu::LockDevice();
  if (!Complete(*start.handle_) || !Complete(*end.handle_)) {
    return Internal("cudaEventElapsedTime: device not ready (an event has not completed)");
  }
  return 0.0f;
}

}  // namespace kvtier::gpu
