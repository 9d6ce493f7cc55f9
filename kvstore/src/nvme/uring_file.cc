#include <fcntl.h>
#include <liburing.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "kvtier/kvstore/block_file.h"
#include "kvtier/kvstore/log.h"

namespace kvtier {
namespace {

constexpr uint64_t kMaxFixedBytes = 1ull << 30;  // the kernel's limit per registered buffer

Status ErrnoStatus(const char* what, int err) {
  if (err == ENOSPC) return ResourceExhausted(std::string(what) + ": ENOSPC: no space left on device");
  return Internal(std::string(what) + ": " + strerrorname_np(err) + ": " + std::strerror(err));
}

class UringFile final : public BlockFile {
 public:
  UringFile(int fd, uint64_t size, bool direct, const UringFileOptions& options)
      : fd_(fd), size_(size), direct_(direct), options_(options), rings_(options.rings) {}

  ~UringFile() override {
    for (Ring& r : rings_) {
      if (r.ready) io_uring_queue_exit(&r.ring);
    }
    close(fd_);
  }

  Status Init() {
    for (Ring& r : rings_) {
      const int rc = io_uring_queue_init(options_.queue_depth, &r.ring, 0);
      if (rc < 0) return Unavailable(std::string("io_uring_queue_init: ") + std::strerror(-rc));
      r.ready = true;
    }
    return Status::Ok();
  }

  uint64_t size() const override { return size_; }
  bool direct_io() const override { return direct_; }

  Status Register(std::span<std::byte> memory) {
    std::vector<iovec> iov;
    for (uint64_t off = 0; off < memory.size(); off += kMaxFixedBytes) {
      iov.push_back({memory.data() + off, std::min<uint64_t>(kMaxFixedBytes, memory.size() - off)});
    }
    for (Ring& r : rings_) {
      std::lock_guard lock(r.mu);
      const int rc = io_uring_register_buffers(&r.ring, iov.data(), static_cast<unsigned>(iov.size()));
      if (rc < 0) return Unavailable(std::string("io_uring_register_buffers: ") + std::strerror(-rc));
    }
    fixed_base_ = memory.data();
    fixed_size_ = memory.size();
    return Status::Ok();
  }

  Status Submit(std::span<const DiskOp> ops) override {
    // Split large ops so one submission keeps up to queue_depth I/Os in flight.
    std::vector<DiskOp> pieces;
    for (const DiskOp& op : ops) {
      if (op.offset + op.length > size_ || op.offset + op.length < op.offset) {
        return InvalidArgument("disk op past the end of the file");
      }
      for (size_t off = 0; off < op.length; off += options_.max_io_bytes) {
        pieces.push_back({op.kind, op.offset + off, op.buffer + off,
                          std::min<size_t>(options_.max_io_bytes, op.length - off)});
      }
    }
    Ring& ring = AcquireRing();
    std::lock_guard lock(ring.mu, std::adopt_lock);
    Status first_error;
    for (size_t begin = 0; begin < pieces.size(); begin += options_.queue_depth) {
      const size_t end = std::min(pieces.size(), begin + options_.queue_depth);
      Status s = RunBatch(&ring.ring, std::span(pieces).subspan(begin, end - begin));
      if (!s.ok() && first_error.ok()) first_error = s;
    }
    return first_error;
  }

  Status Sync() override {
    if (fdatasync(fd_) != 0) return ErrnoStatus("fdatasync", errno);
    return Status::Ok();
  }

 private:
  struct Ring {
    std::mutex mu;
    io_uring ring{};
    bool ready = false;
  };

  Ring& AcquireRing() {
    for (;;) {
      for (Ring& r : rings_) {
        if (r.mu.try_lock()) return r;
      }
      // All busy: wait on one (spread by thread).
      Ring& r = rings_[std::hash<std::thread::id>{}(std::this_thread::get_id()) % rings_.size()];
      r.mu.lock();
      return r;
    }
  }

  int FixedIndex(const DiskOp& op) const {
    if (fixed_base_ == nullptr || op.buffer < fixed_base_ || op.buffer + op.length > fixed_base_ + fixed_size_) {
      return -1;
    }
    const uint64_t begin = static_cast<uint64_t>(op.buffer - fixed_base_);
    const uint64_t end = begin + op.length - 1;
    if (begin / kMaxFixedBytes != end / kMaxFixedBytes) return -1;  // straddles two registrations
    return static_cast<int>(begin / kMaxFixedBytes);
  }

  void Prep(io_uring* ring, const DiskOp& op, size_t done, uint64_t tag) {
    io_uring_sqe* sqe = io_uring_get_sqe(ring);
    const int fixed = FixedIndex(op);
    std::byte* buf = op.buffer + done;
    const unsigned len = static_cast<unsigned>(op.length - done);
    const uint64_t off = op.offset + done;
    if (op.kind == DiskOp::kRead) {
      if (fixed >= 0) io_uring_prep_read_fixed(sqe, fd_, buf, len, off, fixed);
      else io_uring_prep_read(sqe, fd_, buf, len, off);
    } else {
      if (fixed >= 0) io_uring_prep_write_fixed(sqe, fd_, buf, len, off, fixed);
      else io_uring_prep_write(sqe, fd_, buf, len, off);
    }
    io_uring_sqe_set_data64(sqe, tag);
  }

  // Runs at most queue_depth ops to completion, resubmitting the rest of short transfers.
  Status RunBatch(io_uring* ring, std::span<const DiskOp> ops) {
    std::vector<size_t> done(ops.size(), 0);
    size_t pending = ops.size();
    for (size_t i = 0; i < ops.size(); ++i) Prep(ring, ops[i], 0, i);
    Status error;
    while (pending > 0) {
      const int rc = io_uring_submit_and_wait(ring, 1);
      if (rc < 0 && rc != -EINTR) return ErrnoStatus("io_uring_submit", -rc);
      io_uring_cqe* cqe = nullptr;
      while (io_uring_peek_cqe(ring, &cqe) == 0) {
        const size_t i = static_cast<size_t>(io_uring_cqe_get_data64(cqe));
        const int res = cqe->res;
        io_uring_cqe_seen(ring, cqe);
        const char* what = ops[i].kind == DiskOp::kRead ? "read" : "write";
        if (res < 0) {
          if (error.ok()) error = ErrnoStatus(what, -res);
          --pending;
        } else if (res == 0) {
          if (error.ok()) error = Internal(std::string(what) + " made no progress (end of file?)");
          --pending;
        } else {
          done[i] += static_cast<size_t>(res);
          if (done[i] < ops[i].length) Prep(ring, ops[i], done[i], i);  // short transfer: continue
          else --pending;
        }
      }
    }
    return error;
  }

  const int fd_;
  const uint64_t size_;
  const bool direct_;
  const UringFileOptions options_;
  std::vector<Ring> rings_;
  std::byte* fixed_base_ = nullptr;  // set once before concurrent use
  uint64_t fixed_size_ = 0;
};

}  // namespace

Result<std::unique_ptr<BlockFile>> OpenUringFile(const std::string& path, const UringFileOptions& options) {
  if (options.size == 0 || options.size % kDiskAlign != 0) {
    return InvalidArgument("disk file size must be a positive multiple of 4096");
  }
  if (options.queue_depth == 0 || options.rings == 0 || options.max_io_bytes % kDiskAlign != 0) {
    return InvalidArgument("bad io_uring options");
  }
  bool direct = options.try_direct;
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | (direct ? O_DIRECT : 0), 0600);
  if (fd < 0 && direct && errno == EINVAL) {
    KVTIER_LOG(kWarning) << path << ": O_DIRECT refused by the filesystem; using buffered I/O";
    direct = false;
    fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  }
  if (fd < 0) return ErrnoStatus(("open " + path).c_str(), errno);
  struct stat st {};
  fstat(fd, &st);
  if (!S_ISBLK(st.st_mode)) {
    const int rc = posix_fallocate(fd, 0, static_cast<off_t>(options.size));
    if (rc != 0) {
      close(fd);
      return ErrnoStatus(("preallocate " + path).c_str(), rc);
    }
  }
  auto file = std::make_unique<UringFile>(fd, options.size, direct, options);
  KVTIER_RETURN_IF_ERROR(file->Init());
  return std::unique_ptr<BlockFile>(std::move(file));
}

Status RegisterUringBuffers(BlockFile* file, std::span<std::byte> memory) {
  auto* uring = dynamic_cast<UringFile*>(file);
  if (uring == nullptr) return Status::Ok();
  return uring->Register(memory);
}

}  // namespace kvtier
