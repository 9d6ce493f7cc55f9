// CUDA streams and events as small owning RAII types, and the handle type the kernel entry points take.
//
// StreamHandle is the CUDA runtime's cudaStream_t (the same pointer type, declared here without the CUDA
// headers so every library can include this file); nullptr is the legacy default stream. Stream and Event
// own their CUDA object and destroy it when they die; they are movable, not copyable. Without CUDA, or on a
// machine without a usable GPU, Create() answers UNAVAILABLE and nothing else can be called on them.
// One Stream or Event may be used from several threads as CUDA allows (enqueueing is thread-safe); moving
// or destroying one while another thread uses it is a race, as for any value.
#pragma once

#include "kvtier/api/status.h"

struct CUstream_st;  // the CUDA runtime's opaque stream and event types
struct CUevent_st;

namespace kvtier::gpu {

using StreamHandle = ::CUstream_st*;
using EventHandle = ::CUevent_st*;

class Stream {
 public:
  // A new non-blocking stream on the current device. UNAVAILABLE without CUDA or a GPU.
  static Result<Stream> Create();

  Stream(Stream&& other) noexcept;
  Stream& operator=(Stream&& other) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream();

  StreamHandle get() const { return handle_; }
  // Waits until all work queued so far on the stream has finished; the first error of that work.
  Status Synchronize() const;

 private:
  explicit Stream(StreamHandle handle) : handle_(handle) {}
  StreamHandle handle_ = nullptr;
};

class Event {
 public:
  // A new event; `timing` false makes it cheaper (no timestamps). UNAVAILABLE without CUDA or a GPU.
  static Result<Event> Create(bool timing = false);

  Event(Event&& other) noexcept;
  Event& operator=(Event&& other) noexcept;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  ~Event();

  EventHandle get() const { return handle_; }
  // Captures the work queued so far on `stream` (nullptr: the default stream).
  Status Record(StreamHandle stream);
  // Makes later work on `stream` wait for this event, without blocking the host.
  Status MakeStreamWait(StreamHandle stream) const;
  // Blocks the host until the captured work has finished.
  Status Synchronize() const;
  // True when the captured work has finished; never blocks.
  Result<bool> Query() const;
  // Milliseconds between `start` and `end`, both recorded with timing and finished.
  static Result<float> ElapsedMs(const Event& start, const Event& end);

 private:
  explicit Event(EventHandle handle) : handle_(handle) {}
  EventHandle handle_ = nullptr;
};

}  // namespace kvtier::gpu
