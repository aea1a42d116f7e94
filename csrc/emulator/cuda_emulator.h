// A CUDA execution emulator: lets device code written for nvcc compile with a
// host compiler and run on the CPU, so the kernels can be tested (and run under
// ASan/UBSan/TSan) on machines without a GPU.
//
// Faithful where it matters for catching bugs:
// - the threads of a block are threads of their own: in TSan builds real
//   std::threads running concurrently, so a missing __syncthreads is a data
//   race TSan reports; elsewhere fibers (fibers.h), each running up to
//   its next barrier in turn, so a missing __syncthreads reads shared memory
//   that no thread has written yet, on every run;
// - __syncthreads is a real barrier (with real threads a mutex + condition
//   variable, which TSan understands);
// - dynamic shared memory is allocated per block with exactly the requested
//   size, so an out-of-bounds index is a heap overflow ASan reports;
// - warp shuffles and __syncwarp exchange values through a per-warp barrier.
// Blocks run one after another, in an order shuffled anew for every launch
// (any order is a valid CUDA schedule, and a GPU's differs from run to run),
// so a kernel whose result depends on block order gives different results on
// repeated launches; MULA_EMULATOR_SEED picks the sequence. Static __shared__
// arrays are not supported: kernels declare shared memory with
// MULA_DYNAMIC_SHARED. While a CostModel (cost_model.h) is active, launches
// also count what the kernels' accesses would cost on a GPU.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

// Real threads where TSan must see them race, fibers elsewhere.
#if defined(__SANITIZE_THREAD__)
#define MULA_EMULATOR_OS_THREADS 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MULA_EMULATOR_OS_THREADS 1
#endif
#endif

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__ __restrict

#include "../half_rounding.h"
#include "cost_model.h"
#include "cuda_runtime_emulated.h"
#if !MULA_EMULATOR_OS_THREADS
#include "fibers.h"
#endif

// ---------------------------------------------------------------------------
// Half types with CUDA's names and conversion functions, rounding as the CPU
// kernels do (csrc/half_rounding.h: round to nearest even).
struct __half {
  std::uint16_t bits;
};
struct __nv_bfloat16 {
  std::uint16_t bits;
};

inline float __half2float(__half value) { return mula::half_to_float(value.bits); }
inline __half __float2half_rn(float value) { return {mula::float_to_half(value)}; }
inline float __bfloat162float(__nv_bfloat16 value) { return mula::bfloat16_to_float(value.bits); }
inline __nv_bfloat16 __float2bfloat16_rn(float value) { return {mula::float_to_bfloat16(value)}; }

namespace mula::emu {

constexpr unsigned int kWarpSize = 32;

// A reusable barrier for a fixed number of threads.
#if MULA_EMULATOR_OS_THREADS
class Barrier {
 public:
  explicit Barrier(unsigned int count) : count_(count) {}
  void arrive_and_wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    const std::uint64_t generation = generation_;
    if (++arrived_ == count_) {
      arrived_ = 0;
      ++generation_;
      lock.unlock();  // waking waiters that would block on the mutex at once is slow
      condition_.notify_all();
      return;
    }
    condition_.wait(lock, [&] { return generation_ != generation; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable condition_;
  const unsigned int count_;
  unsigned int arrived_ = 0;
  std::uint64_t generation_ = 0;
};
#else
class Barrier {
 public:
  explicit Barrier(unsigned int count) : count_(count) {}
  void arrive_and_wait() {
    Fibers::progress();
    const std::uint64_t generation = generation_;
    if (++arrived_ == count_) {
      arrived_ = 0;
      ++generation_;
      return;
    }
    while (generation_ == generation) Fibers::yield();
  }

 private:
  const unsigned int count_;
  unsigned int arrived_ = 0;
  std::uint64_t generation_ = 0;
};
#endif

struct Warp {
  explicit Warp(unsigned int lanes) : barrier(lanes) {}
  Barrier barrier;
  std::uint64_t slots[kWarpSize] = {};  // shuffle exchange, one per lane
};

struct Block {
  Block(unsigned int threads, std::size_t shared_bytes_, bool profiled)
      : barrier(threads),
        // Exactly the requested size, so ASan flags any access past the end.
        shared(new unsigned char[shared_bytes_ == 0 ? 1 : shared_bytes_]),
        shared_bytes(shared_bytes_),
        logs(profiled ? threads : 0) {
    for (unsigned int first = 0; first < threads; first += kWarpSize) {
      const unsigned int lanes = threads - first < kWarpSize ? threads - first : kWarpSize;
      warps.push_back(std::make_unique<Warp>(lanes));
    }
  }
  Barrier barrier;
  std::unique_ptr<unsigned char[]> shared;
  std::size_t shared_bytes;
  std::vector<ThreadLog> logs;  // per thread, while profiling
  std::vector<std::unique_ptr<Warp>> warps;
};

struct ThreadContext {
  dim3 thread_idx, block_idx, block_dim, grid_dim;
  Block* block = nullptr;
  unsigned int linear_thread = 0;
};
inline thread_local ThreadContext context;

// Runs run(t) for every thread t of a block, concurrently: each real thread
// has its own thread_locals, and each fiber its own context and cost log.
template <typename Run>
void run_block_threads(unsigned int count, Run& run) {
#if MULA_EMULATOR_OS_THREADS
  std::vector<std::thread> workers;
  workers.reserve(count - 1);
  for (unsigned int t = 1; t < count; ++t) workers.emplace_back(run, t);
  run(0);
  for (auto& worker : workers) worker.join();
#else
  Fibers::run(count, run, std::tie(context, current_log));
#endif
}

inline Warp& current_warp() { return *context.block->warps[context.linear_thread / kWarpSize]; }
inline unsigned int lane_id() { return context.linear_thread % kWarpSize; }
inline unsigned char* block_shared_memory() { return context.block->shared.get(); }

// The order in which one launch runs its blocks: a permutation of the linear
// block indices, seeded by MULA_EMULATOR_SEED (default 0) and the launch's
// number in this process, so every launch has its own and runs reproduce.
inline std::vector<std::uint64_t> block_order(std::uint64_t blocks) {
  static std::atomic<std::uint64_t> launches{0};
  const char* seed = std::getenv("MULA_EMULATOR_SEED");
  const std::uint64_t base = seed != nullptr ? std::strtoull(seed, nullptr, 10) : 0;
  std::seed_seq sequence{base, std::uint64_t{launches.fetch_add(1)}};
  std::mt19937_64 generator(sequence);
  std::vector<std::uint64_t> order(blocks);
  std::iota(order.begin(), order.end(), std::uint64_t{0});
  std::shuffle(order.begin(), order.end(), generator);
  return order;
}

// Runs kernel(args...) over the grid, one block after another in the order
// above. The block's threads (real threads or fibers) are created once per
// launch and reused for every block; each block gets fresh barriers, warps and
// shared memory. While a CostModel is active only its share of the blocks
// runs, each warp's leader costs the warp's requests after the block, and
// the launch's cost is appended to the model.
template <typename Kernel, typename... Args>
cudaError_t launch(dim3 grid, dim3 block_dim, std::size_t shared_bytes, Kernel kernel,
                   Args... args) {
  const std::uint64_t threads = std::uint64_t(block_dim.x) * block_dim.y * block_dim.z;
  if (threads == 0 || threads > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
      grid.y > 65535 || grid.z > 65535 || shared_bytes > 48 * 1024) {
    return cudaErrorInvalidConfiguration;
  }
  const std::uint64_t blocks = std::uint64_t(grid.x) * grid.y * grid.z;
  CostModel* const model = CostModel::active();
  LaunchCost cost;
  if (model != nullptr) {
    cost.kernel = kernel_name(reinterpret_cast<const void*>(kernel));
    cost.grid_blocks = blocks;
    cost.profiled_blocks = model->profiled_blocks(blocks);
    cost.threads_per_block = threads;
    cost.shared_bytes = shared_bytes;
  }
  const std::vector<std::uint64_t> order = block_order(model ? cost.profiled_blocks : blocks);
  const auto thread_count = static_cast<unsigned int>(threads);
  Barrier between_blocks(thread_count);
  std::unique_ptr<Block> block;
  auto run = [&](unsigned int t) {
    context.linear_thread = t;
    context.block_dim = block_dim;
    context.grid_dim = grid;
    context.thread_idx =
        dim3(t % block_dim.x, (t / block_dim.x) % block_dim.y, t / (block_dim.x * block_dim.y));
    for (const std::uint64_t b : order) {
      if (t == 0) block = std::make_unique<Block>(thread_count, shared_bytes, model != nullptr);
      between_blocks.arrive_and_wait();  // the block's state is ready
      context.block = block.get();
      current_log = model ? &block->logs[t] : nullptr;
      context.block_idx = dim3(static_cast<unsigned int>(b % grid.x),
                               static_cast<unsigned int>(b / grid.x % grid.y),
                               static_cast<unsigned int>(b / (std::uint64_t(grid.x) * grid.y)));
      kernel(args...);
      between_blocks.arrive_and_wait();  // every thread has left the block
      if (model != nullptr) {
        current_log = nullptr;
        if (t % kWarpSize == 0) {
          const auto begin = reinterpret_cast<std::uintptr_t>(block->shared.get());
          analyse_warp(&block->logs[t], std::min(kWarpSize, thread_count - t), begin,
                       begin + block->shared_bytes, cost, model->mutex);
        }
        between_blocks.arrive_and_wait();  // the block's logs are costed
      }
    }
    context = ThreadContext{};
  };
  run_block_threads(thread_count, run);
  if (model != nullptr) {
    cost.distinct_global_bytes = 32 * cost_detail::distinct(cost.sectors);
    cost.sectors = {};
    model->launches.push_back(std::move(cost));
  }
  return cudaSuccess;
}

}  // namespace mula::emu

// ---------------------------------------------------------------------------
// Device built-ins
#define threadIdx (::mula::emu::context.thread_idx)
#define blockIdx (::mula::emu::context.block_idx)
#define blockDim (::mula::emu::context.block_dim)
#define gridDim (::mula::emu::context.grid_dim)
#define warpSize (32)

inline void __syncthreads() {
  if (mula::emu::current_log != nullptr) ++mula::emu::current_log->operations.barriers;
  mula::emu::context.block->barrier.arrive_and_wait();
}
inline void __syncwarp(unsigned int /*mask*/ = 0xffffffffu) {
  mula::emu::current_warp().barrier.arrive_and_wait();
}

namespace mula::emu {
// Every lane publishes its value, then reads the one of lane `source` (its
// own when `source` is outside the warp). Two warp barriers: all values are
// published before any is read, and read before the next shuffle reuses the slots.
template <typename T>
T shuffle(T value, unsigned int source) {
  static_assert(sizeof(T) <= sizeof(std::uint64_t), "shuffle of a type wider than 64 bits");
  if (current_log != nullptr) ++current_log->operations.shuffles;
  auto& warp = current_warp();
  std::memcpy(&warp.slots[lane_id()], &value, sizeof(T));
  warp.barrier.arrive_and_wait();
  T result = value;
  if (source < kWarpSize) std::memcpy(&result, &warp.slots[source], sizeof(T));
  warp.barrier.arrive_and_wait();
  return result;
}
}  // namespace mula::emu

template <typename T>
T __shfl_down_sync(unsigned int /*mask*/, T value, unsigned int delta) {
  return mula::emu::shuffle(value, mula::emu::lane_id() + delta);
}

template <typename T>
T __shfl_xor_sync(unsigned int /*mask*/, T value, unsigned int lane_mask) {
  return mula::emu::shuffle(value, mula::emu::lane_id() ^ lane_mask);
}

// Atomics serialise on one mutex: slow, but exact, and visible to TSan.
namespace mula::emu {
inline std::mutex& atomics_mutex() {
  static std::mutex mutex;
  return mutex;
}
}  // namespace mula::emu

template <typename T>
T atomicAdd(T* address, T value) {
  const std::lock_guard<std::mutex> lock(mula::emu::atomics_mutex());
  const T old = *address;
  *address = old + value;
  return old;
}

template <typename T>
T __ldg(const T* address) {
  return *address;
}

// Dynamic shared memory of the current block, typed.
#define MULA_DYNAMIC_SHARED(type, name) \
  type* name = reinterpret_cast<type*>(::mula::emu::block_shared_memory())
