// The emulated device's ordering (emulation/emulated_streams.h): work runs only when it is waited for, so the
// transfer and kernel tests on it fail where the host or a stream does not wait as CUDA requires. These tests
// pin that behaviour down; on a real GPU their early reads would be races, so they exist only here.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "kvtier/gpu/async_copy.h"
#include "kvtier/gpu/device_buffer.h"
#include "kvtier/gpu/host_gather.h"
#include "kvtier/gpu/stream.h"

namespace kvtier::gpu {
namespace {

constexpr size_t kBytes = 8192;
constexpr std::byte kFresh{0xa5};  // what the emulated cudaMalloc leaves in new device memory

// Host memory of its own pages, so that registering one never overlaps another.
struct PageBuffer {
  explicit PageBuffer(std::byte fill) : data(static_cast<std::byte*>(std::aligned_alloc(4096, kBytes))) {
    std::memset(data.get(), static_cast<int>(fill), kBytes);
  }
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  std::unique_ptr<std::byte, Free> data;
};

std::vector<std::byte> Filled(std::byte value) { return std::vector<std::byte>(kBytes, value); }

std::vector<std::byte> Read(const DeviceBuffer& buffer) {
  std::vector<std::byte> bytes(buffer.size());
  EXPECT_TRUE(buffer.CopyToHost(bytes).ok());
  return bytes;
}

class EmulatedOrder : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(Assign(Stream::Create(), first_));
    ASSERT_TRUE(Assign(Stream::Create(), second_));
    ASSERT_TRUE(Assign(DeviceBuffer::Allocate(kBytes), device_));
  }
  template <typename T>
  static bool Assign(Result<T> result, std::optional<T>& into) {
    if (!result.ok()) return false;
    into.emplace(std::move(result).value());
    return true;
  }
  std::optional<Stream> first_, second_;
  std::optional<DeviceBuffer> device_;
};

TEST_F(EmulatedOrder, ACopyLandsWhenItsStreamIsWaitedFor) {
  const std::vector<std::byte> source = Filled(std::byte{1});
  ASSERT_TRUE(CopyAsync(device_->data(), source.data(), kBytes, first_->get()).ok());
  EXPECT_EQ(Read(*device_), Filled(kFresh)) << "cudaMemcpy on the default stream does not wait for other streams";
  ASSERT_TRUE(first_->Synchronize().ok());
  EXPECT_EQ(Read(*device_), source);
}

TEST_F(EmulatedOrder, APinnedSourceIsReadWhenTheCopyRunsAPageableOneAtTheCall) {
  PageBuffer pinned(std::byte{1});
  std::vector<std::byte> pageable = Filled(std::byte{2});
  Result<HostRegistration> pin = HostRegistration::Register(pinned.data.get(), kBytes);
  ASSERT_TRUE(pin.ok()) << pin.status().ToString();
  std::optional<DeviceBuffer> second;
  ASSERT_TRUE(Assign(DeviceBuffer::Allocate(kBytes), second));

  ASSERT_TRUE(CopyAsync(device_->data(), pinned.data.get(), kBytes, first_->get()).ok());
  ASSERT_TRUE(CopyAsync(second->data(), pageable.data(), kBytes, first_->get()).ok());
  std::memset(pinned.data.get(), 3, kBytes);  // reused before the copy was waited for
  std::fill(pageable.begin(), pageable.end(), std::byte{4});
  ASSERT_TRUE(first_->Synchronize().ok());
  EXPECT_EQ(Read(*device_), Filled(std::byte{3}));
  EXPECT_EQ(Read(*second), Filled(std::byte{2}));
}

TEST_F(EmulatedOrder, ACopyIntoPageableMemoryIsCompleteOnReturn) {
  ASSERT_TRUE(device_->Fill(7).ok());
  std::vector<std::byte> pageable = Filled(std::byte{0});
  ASSERT_TRUE(CopyAsync(pageable.data(), device_->data(), kBytes, first_->get()).ok());
  EXPECT_EQ(pageable, Filled(std::byte{7}));
}

// The second stream reads what the first one writes: only its wait on the first's event makes it see it, and a
// later record of the event does not move a wait already made.
TEST_F(EmulatedOrder, AnEventWaitOrdersAnotherStream) {
  const std::vector<std::byte> one = Filled(std::byte{1}), two = Filled(std::byte{2});
  std::vector<std::byte> unordered(kBytes), ordered(kBytes);
  Result<Event> event = Event::Create();
  ASSERT_TRUE(event.ok());

  ASSERT_TRUE(CopyAsync(device_->data(), one.data(), kBytes, first_->get()).ok());
  ASSERT_TRUE(CopyAsync(unordered.data(), device_->data(), kBytes, second_->get()).ok());
  EXPECT_EQ(unordered, Filled(kFresh)) << "no wait: the second stream ran before the first";

  ASSERT_TRUE(event->Record(first_->get()).ok());
  ASSERT_TRUE(event->MakeStreamWait(second_->get()).ok());
  ASSERT_TRUE(CopyAsync(device_->data(), two.data(), kBytes, first_->get()).ok());
  ASSERT_TRUE(event->Record(first_->get()).ok());
  ASSERT_TRUE(CopyAsync(ordered.data(), device_->data(), kBytes, second_->get()).ok());
  EXPECT_EQ(ordered, one);
  ASSERT_TRUE(event->Synchronize().ok());
  EXPECT_EQ(Read(*device_), two);
}

TEST_F(EmulatedOrder, AKernelRunsWhenItsStreamIsWaitedFor) {
  PageBuffer blocks(std::byte{9});
  Result<HostRegistration> pin = HostRegistration::Register(blocks.data.get(), kBytes);
  ASSERT_TRUE(pin.ok()) << pin.status().ToString();
  const std::vector<int32_t> ids = {1, 0};
  std::optional<DeviceBuffer> device_ids;
  ASSERT_TRUE(Assign(DeviceBuffer::Allocate(sizeof(int32_t) * ids.size()), device_ids));
  ASSERT_TRUE(device_ids->CopyFromHost(std::as_bytes(std::span(ids))).ok());
  const BlockGather gather{static_cast<const std::byte*>(pin->device_pointer()), 2, kBytes / 2,
                           reinterpret_cast<const int32_t*>(device_ids->data()), 2};

  ASSERT_TRUE(GatherBlocks(gather, device_->span(), first_->get()).ok());
  EXPECT_EQ(Read(*device_), Filled(kFresh));
  ASSERT_TRUE(first_->Synchronize().ok());
  EXPECT_EQ(Read(*device_), Filled(std::byte{9}));
}

// cudaFree waits for the whole device, so freeing any buffer runs the work queued on every stream.
TEST_F(EmulatedOrder, FreeingDeviceMemoryRunsTheQueuedWork) {
  const std::vector<std::byte> source = Filled(std::byte{5});
  ASSERT_TRUE(CopyAsync(device_->data(), source.data(), kBytes, first_->get()).ok());
  { Result<DeviceBuffer> freed = DeviceBuffer::Allocate(64); }
  EXPECT_EQ(Read(*device_), source);
}

}  // namespace
}  // namespace kvtier::gpu
