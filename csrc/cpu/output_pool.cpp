#include "output_pool.h"

#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>

namespace mula::cpu {
namespace {

// glibc keeps freed blocks below its largest mmap threshold for reuse by
// itself; from there on they are the pool's.
constexpr std::size_t kPooledBytes = std::size_t{32} << 20;
constexpr std::size_t kPoolBlocks = 8;
constexpr std::size_t kAlignment = 64;  // as PyTorch's CPU allocator

struct Block {
  void* data;
  std::size_t bytes;
};

bool pool_enabled() {
  const char* setting = std::getenv("MULA_CPU_OUTPUT_POOL");  // read at every call
  return setting == nullptr || std::strcmp(setting, "0") != 0;
}

class OutputPool final : public c10::Allocator {
 public:
  // Never destroyed: tensors may be freed during the interpreter's exit.
  static OutputPool& instance() {
    static auto* pool = new OutputPool;
    return *pool;
  }

  c10::DataPtr allocate(std::size_t bytes) override {
    if (bytes < kPooledBytes || !pool_enabled()) {
      return c10::GetDefaultCPUAllocator()->allocate(bytes);
    }
    void* data = take(bytes);
    if (data == nullptr) data = allocate_new(bytes);
    return {data, new Block{data, bytes}, &release, c10::Device(c10::DeviceType::CPU)};
  }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

 private:
  static void release(void* context) {
    const auto* block = static_cast<Block*>(context);
    instance().keep(*block);
    delete block;
  }

  // The most recently freed block of exactly this size, or null.
  void* take(std::size_t bytes) {
    const std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = kept_.rbegin(); it != kept_.rend(); ++it) {
      if (it->bytes == bytes) {
        void* data = it->data;
        kept_.erase(std::next(it).base());
        return data;
      }
    }
    return nullptr;
  }

  void keep(const Block& block) {
    if (!pool_enabled()) {
      std::free(block.data);
      return;
    }
    const std::lock_guard<std::mutex> lock(mutex_);
    kept_.push_back(block);
    if (kept_.size() > kPoolBlocks) {
      std::free(kept_.front().data);
      kept_.pop_front();
    }
  }

  // Fresh memory; when the system has none, the kept blocks go back first.
  void* allocate_new(std::size_t bytes) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      void* data = nullptr;
      if (posix_memalign(&data, kAlignment, bytes) == 0) return data;
      const std::lock_guard<std::mutex> lock(mutex_);
      for (const Block& block : kept_) std::free(block.data);
      kept_.clear();
    }
    TORCH_CHECK_WITH(OutOfMemoryError, false, "dynamic_conv2d: could not allocate ", bytes,
                     " bytes for an output on the CPU");
  }

  std::mutex mutex_;
  std::deque<Block> kept_;  // oldest first
};

}  // namespace

c10::Allocator* output_allocator() { return &OutputPool::instance(); }

}  // namespace mula::cpu
