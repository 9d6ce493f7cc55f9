// NcclChannel over a run-time-loaded libnccl (see nccl_channel.h). Built with nccl.h when the CUDA toolkit has
// it (KVTIER_HAVE_NCCL_HEADER); otherwise every entry point answers UNAVAILABLE.
#include "kvtier/gpu/nccl_channel.h"

#include <cstring>
#include <string>
#include <thread>
#include <utility>

#include "kvtier/gpu/device.h"
#include "peer_link_internal.h"

#if defined(KVTIER_HAVE_CUDA) && defined(KVTIER_HAVE_NCCL_HEADER)
#include <dlfcn.h>
#include <cuda_runtime.h>
#include <nccl.h>
#endif

namespace kvtier::gpu {

#if defined(KVTIER_HAVE_CUDA) && defined(KVTIER_HAVE_NCCL_HEADER)
namespace {

static_assert(sizeof(ncclUniqueId) == sizeof(NcclUniqueId::bytes), "NcclUniqueId carries ncclUniqueId's bytes");

// The NCCL entry points kvtier uses, resolved once from libnccl.so.2.
struct NcclApi {
  decltype(&::ncclGetVersion) get_version = nullptr;
  decltype(&::ncclGetUniqueId) get_unique_id = nullptr;
  decltype(&::ncclCommInitRankConfig) init_rank_config = nullptr;
  decltype(&::ncclCommGetAsyncError) get_async_error = nullptr;
  decltype(&::ncclCommFinalize) finalize = nullptr;
  decltype(&::ncclCommDestroy) destroy = nullptr;
  decltype(&::ncclCommAbort) abort = nullptr;
  decltype(&::ncclSend) send = nullptr;
  decltype(&::ncclRecv) recv = nullptr;
  decltype(&::ncclGetErrorString) error_string = nullptr;
  std::string missing;  // why it could not be loaded; empty when loaded
};

template <typename F>
bool Resolve(void* lib, const char* name, F* out) {
  *out = reinterpret_cast<F>(dlsym(lib, name));
  return *out != nullptr;
}

const NcclApi& Api() {
  static const NcclApi api = [] {
    NcclApi a;
    void* lib = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      const char* err = dlerror();
      a.missing = std::string("libnccl.so.2 not loadable: ") + (err != nullptr ? err : "unknown error");
      return a;
    }
    // The library stays loaded for the life of the process: communicators may outlive any one caller.
    const bool ok = Resolve(lib, "ncclGetVersion", &a.get_version) && Resolve(lib, "ncclGetUniqueId", &a.get_unique_id) &&
                    Resolve(lib, "ncclCommInitRankConfig", &a.init_rank_config) &&
                    Resolve(lib, "ncclCommGetAsyncError", &a.get_async_error) &&
                    Resolve(lib, "ncclCommFinalize", &a.finalize) && Resolve(lib, "ncclCommDestroy", &a.destroy) && Resolve(lib, "ncclCommAbort", &a.abort) &&
                    Resolve(lib, "ncclSend", &a.send) && Resolve(lib, "ncclRecv", &a.recv) &&
                    Resolve(lib, "ncclGetErrorString", &a.error_string);
    if (!ok) a.missing = "libnccl.so.2 lacks an entry point kvtier needs (NCCL >= 2.14 required)";
    return a;
  }();
  return api;
}

Status Ready() {
  if (!GpuAvailable()) return Unavailable("no usable GPU: " + CachedProbe().reason);
  if (!Api().missing.empty()) return Unavailable(Api().missing);
  return Status::Ok();
}

Status FromNccl(ncclResult_t r, const char* what) {
  if (r == ncclSuccess) return Status::Ok();
  return Internal(std::string(what) + ": " + Api().error_string(r));
}

// The communicator is non-blocking (so that Connect can time out), and that holds for its whole life: a call may
// answer ncclInProgress, and then nothing else may touch the communicator (or the stream) until its state
// settles. Waits for that, up to `patience`, which guards against a hung peer.
ncclResult_t Settle(ncclComm_t comm, ncclResult_t r, std::chrono::milliseconds patience) {
  const auto deadline = std::chrono::steady_clock::now() + patience;
  while (r == ncclInProgress) {
    ncclResult_t state = ncclInProgress;
    if (Api().get_async_error(comm, &state) != ncclSuccess) return ncclSystemError;
    r = state;
    if (r == ncclInProgress) {
      if (std::chrono::steady_clock::now() >= deadline) return ncclInProgress;
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
  return r;
}

}  // namespace

Result<std::string> NcclVersion() {
  KVTIER_RETURN_IF_ERROR(Ready());
  int v = 0;
  KVTIER_RETURN_IF_ERROR(FromNccl(Api().get_version(&v), "ncclGetVersion"));
  // NCCL >= 2.9 encodes major * 10000 + minor * 100 + patch.
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

Result<NcclUniqueId> NcclCreateUniqueId() {
  KVTIER_RETURN_IF_ERROR(Ready());
  ncclUniqueId id;
  KVTIER_RETURN_IF_ERROR(FromNccl(Api().get_unique_id(&id), "ncclGetUniqueId"));
  NcclUniqueId out;
  std::memcpy(out.bytes.data(), &id, sizeof(id));
  return out;
}

Result<NcclChannel> NcclChannel::Connect(const NcclUniqueId& id, int rank, std::chrono::milliseconds timeout,
                                         const std::function<bool()>& give_up) {
  if (rank != 0 && rank != 1) return InvalidArgument("NcclChannel: rank must be 0 or 1, not " + std::to_string(rank));
  KVTIER_RETURN_IF_ERROR(Ready());
  ncclUniqueId nid;
  std::memcpy(&nid, id.bytes.data(), sizeof(nid));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // return at once; the join is polled below so a missing peer cannot hang the caller
  ncclComm_t comm = nullptr;
  ncclResult_t r = Api().init_rank_config(&comm, 2, nid, rank, &config);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (r == ncclInProgress || r == ncclSuccess) {
    ncclResult_t state = ncclSuccess;
    if (comm == nullptr) break;
    r = Api().get_async_error(comm, &state);
    if (r != ncclSuccess) break;
    if (state == ncclSuccess) return NcclChannel(comm, rank, timeout);
    if (state != ncclInProgress) {
      r = state;
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      Api().abort(comm);
      return Unavailable("NcclChannel: the peer did not join within " + std::to_string(timeout.count()) + " ms");
    }
    if (give_up && give_up()) {
      Api().abort(comm);
      return Unavailable("NcclChannel: the join was given up (the peer went away)");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (comm != nullptr) Api().abort(comm);
  return FromNccl(r == ncclSuccess ? ncclInternalError : r, "ncclCommInitRankConfig");
}

namespace {
// A non-blocking communicator is finalized (its pending work flushed, polled until settled) before it is
// destroyed; one that will not settle is aborted instead.
void Destroy(void* comm, std::chrono::milliseconds patience) {
  if (comm == nullptr) return;
  auto c = static_cast<ncclComm_t>(comm);
  if (Settle(c, Api().finalize(c), patience) == ncclSuccess) {
    Api().destroy(c);
  } else {
    Api().abort(c);
  }
}
}  // namespace

NcclChannel::~NcclChannel() { Destroy(comm_, patience_); }

NcclChannel& NcclChannel::operator=(NcclChannel&& other) noexcept {
  if (this != &other) {
    Destroy(comm_, patience_);
    comm_ = std::exchange(other.comm_, nullptr);
    rank_ = other.rank_;
    patience_ = other.patience_;
  }
  return *this;
}

Status NcclChannel::Send(const void* device_data, size_t bytes, StreamHandle stream) {
  if (device_data == nullptr && bytes > 0) return InvalidArgument("NcclChannel::Send: null buffer");
  if (comm_ == nullptr) return Unavailable("NcclChannel::Send: the communicator was aborted");
  auto comm = static_cast<ncclComm_t>(comm_);
  return FromNccl(Settle(comm, Api().send(device_data, bytes, ncclUint8, 1 - rank_, comm, stream), patience_), "ncclSend");
}

Status NcclChannel::Recv(void* device_data, size_t bytes, StreamHandle stream) {
  if (device_data == nullptr && bytes > 0) return InvalidArgument("NcclChannel::Recv: null buffer");
  if (comm_ == nullptr) return Unavailable("NcclChannel::Recv: the communicator was aborted");
  auto comm = static_cast<ncclComm_t>(comm_);
  return FromNccl(Settle(comm, Api().recv(device_data, bytes, ncclUint8, 1 - rank_, comm, stream), patience_), "ncclRecv");
}

Status NcclChannel::AsyncError() const {
  if (comm_ == nullptr) return Unavailable("NcclChannel: the communicator was aborted");
  ncclResult_t state = ncclSuccess;
  KVTIER_RETURN_IF_ERROR(FromNccl(Api().get_async_error(static_cast<ncclComm_t>(comm_), &state), "ncclCommGetAsyncError"));
  return state == ncclInProgress ? Status::Ok() : FromNccl(state, "NCCL communicator");
}

void NcclChannel::Abort() {
  if (comm_ != nullptr) Api().abort(static_cast<ncclComm_t>(std::exchange(comm_, nullptr)));
}

namespace {

// Makes `device` current for the scope (-1: leaves the current one) and restores the previous one.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    if (device < 0 || cudaGetDevice(&previous_) != cudaSuccess || previous_ == device) return;
    const cudaError_t err = cudaSetDevice(device);
    if (err != cudaSuccess) {
      cudaGetLastError();  // not sticky: leave no error behind for the next launch check
      status_ = Internal("cudaSetDevice(" + std::to_string(device) + "): " + cudaGetErrorString(err));
    }
  }
  ~DeviceScope() {
    if (previous_ >= 0 && status_.ok()) cudaSetDevice(previous_);
  }
  const Status& status() const { return status_; }

 private:
  int previous_ = -1;
  Status status_;
};

// PeerLink over an NcclChannel: operations on a stream of the link's own, Wait polling an event and the
// communicator's error so that a dead peer ends in an abort, not a hang.
class NcclLink final : public PeerLink {
 public:
  NcclLink(NcclChannel channel, Stream stream, Event after, Event done, int device)
      : channel_(std::move(channel)), stream_(std::move(stream)), after_(std::move(after)), done_(std::move(done)),
        device_(device) {}

  PeerLinkKind kind() const override { return PeerLinkKind::kNccl; }

  void Abort() override {
    (void)Do([] { return Unavailable("aborted by its owner"); });
  }

  Status Send(const void* data, size_t bytes) override {
    return Do([&] { return channel_.Send(data, bytes, stream_.get()); });
  }
  Status Recv(void* data, size_t bytes) override {
    return Do([&] { return channel_.Recv(data, bytes, stream_.get()); });
  }
  Status After(StreamHandle stream) override {
    return Do([&] {
      KVTIER_RETURN_IF_ERROR(after_.Record(stream));
      return after_.MakeStreamWait(stream_.get());
    });
  }
  Status Wait(std::chrono::milliseconds timeout) override {
    return Do([&] {
      KVTIER_RETURN_IF_ERROR(done_.Record(stream_.get()));
      const auto deadline = std::chrono::steady_clock::now() + timeout;
      for (;;) {
        auto finished = done_.Query();
        if (!finished.ok()) return finished.status();
        KVTIER_RETURN_IF_ERROR(channel_.AsyncError());  // also after completion: a failed peer voids the bytes
        if (*finished) return Status::Ok();
        if (std::chrono::steady_clock::now() >= deadline) {
          channel_.Abort();
          (void)stream_.Synchronize();  // the aborted operations end; nothing touches the buffers after this
          return Unavailable("NCCL link: the peer did not complete within " + std::to_string(timeout.count()) +
                             " ms; link aborted");
        }
        std::this_thread::sleep_for(std::chrono::microseconds(20));
      }
    });
  }

 private:
  template <typename Fn>
  Status Do(Fn&& fn) {
    if (!broken_.ok()) return broken_;
    DeviceScope scope(device_);
    Status s = scope.status().ok() ? fn() : scope.status();
    if (!s.ok()) {
      broken_ = Unavailable("NCCL link broken: " + s.ToString());
      channel_.Abort();
      (void)stream_.Synchronize();  // the aborted operations end: nothing touches the buffers after this
    }
    return s;
  }

  NcclChannel channel_;
  Stream stream_;
  Event after_;
  Event done_;
  int device_;
  Status broken_;
};

}  // namespace

Result<std::unique_ptr<PeerLink>> internal::JoinNcclLink(const NcclUniqueId& id, int rank, int device,
                                                         std::chrono::milliseconds timeout,
                                                         const std::function<bool()>& give_up) {
  KVTIER_RETURN_IF_ERROR(Ready());
  // The link stays on this device whichever device its later callers have current.
  if (device < 0 && cudaGetDevice(&device) != cudaSuccess) return Internal("NCCL link: cudaGetDevice failed");
  DeviceScope scope(device);
  KVTIER_RETURN_IF_ERROR(scope.status());
  auto stream = Stream::Create();
  if (!stream.ok()) return stream.status();
  auto after = Event::Create();
  if (!after.ok()) return after.status();
  auto done = Event::Create();
  if (!done.ok()) return done.status();
  auto channel = NcclChannel::Connect(id, rank, timeout, give_up);
  if (!channel.ok()) return channel.status();
  return std::unique_ptr<PeerLink>(new NcclLink(std::move(*channel), std::move(*stream), std::move(*after),
                                                std::move(*done), device));
}

#else  // no CUDA or no nccl.h: a channel can never be created

namespace {
Status NoNccl() {
#if defined(KVTIER_HAVE_CUDA)
  return Unavailable("built without nccl.h (the CUDA toolkit used has no NCCL)");
#else
  return Unavailable("built without CUDA");
#endif
}
}  // namespace

Result<std::string> NcclVersion() { return NoNccl(); }
Result<NcclUniqueId> NcclCreateUniqueId() { return NoNccl(); }
Result<NcclChannel> NcclChannel::Connect(const NcclUniqueId&, int rank, std::chrono::milliseconds,
                                         const std::function<bool()>&) {
  if (rank != 0 && rank != 1) return InvalidArgument("NcclChannel: rank must be 0 or 1, not " + std::to_string(rank));
  return NoNccl();
}
NcclChannel::~NcclChannel() = default;
NcclChannel& NcclChannel::operator=(NcclChannel&& other) noexcept {
  comm_ = std::exchange(other.comm_, nullptr);
  rank_ = other.rank_;
  patience_ = other.patience_;
  return *this;
}
Status NcclChannel::Send(const void*, size_t, StreamHandle) { return NoNccl(); }
Status NcclChannel::Recv(void*, size_t, StreamHandle) { return NoNccl(); }
Status NcclChannel::AsyncError() const { return NoNccl(); }
void NcclChannel::Abort() {}
Result<std::unique_ptr<PeerLink>> internal::JoinNcclLink(const NcclUniqueId&, int, int, std::chrono::milliseconds,
                                                         const std::function<bool()>&) {
  return NoNccl();
}

#endif

NcclChannel::NcclChannel(NcclChannel&& other) noexcept
    : comm_(std::exchange(other.comm_, nullptr)), rank_(other.rank_), patience_(other.patience_) {}

}  // namespace kvtier::gpu
