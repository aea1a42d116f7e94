// Device code of the dynamic convolution: forward and the fused backward
// (grad_input, grad_weight, grad_bias). No torch includes: compiled by nvcc, or by the host
// compiler against the CUDA emulator (csrc/emulator) for tests and sanitizers.
//
// Every kernel works on one plane tile per block. A block is 32 x 8 threads;
// thread (x, y) owns tile column x and rows y, y + 8, y + 16, y + 24 (register
// blocking), so a tile is at most 32 x 32 outputs. Operands are staged in
// shared memory in the accumulation type (float for half types); filters live
// in registers when the kernel size is a compile-time constant (3, 5, 7).
// No kernel returns before a barrier, and no float atomics are used. Every
// memory access and floating-point operation goes through device_memory.cuh,
// so that the emulator's cost model sees it.
//
// The kernels read the operator's 64-bit ConvShape (../dynamic_conv_problem.h)
// and narrow the sizes within a plane to int where they use them, so in-plane
// index arithmetic stays 32-bit; the CUDA backend's preparation
// (dynamic_conv_cuda_backend.h) has checked that they fit. Offsets across
// planes are 64-bit.
#pragma once

#include "device_memory.cuh"
#include "device_platform.cuh"
#include "dynamic_conv_launch.h"
#include "warp_reductions.cuh"

namespace mula::cuda {

constexpr int kBlockX = 32;
constexpr int kBlockY = 8;
constexpr int kThreads = kBlockX * kBlockY;
constexpr int kWarps = kThreads / 32;
constexpr int kRowsPerThread = 4;
constexpr int kMaxTileW = kBlockX;
constexpr int kMaxTileH = kBlockY * kRowsPerThread;

// Tile geometry of one launch, chosen on the host (see dynamic_conv_launchers.cuh).
struct Tiling {
  int tile_h, tile_w;            // outputs (or grad_input pixels) per block
  int tiles_h, tiles_w;          // tiles per plane
  int staged_rows, staged_cols;  // the staged operand, halo included
  int threads_x;                 // blocked_forward_kernel: threads along a tile row
};

// N values loaded or stored as one 8- or 16-byte access (LDS.64/128, STG.64).
template <typename T, int N>
struct alignas(sizeof(T) * N) Packed {
  T v[N];
};

// N consecutive elements of a row at p, of which the first `valid` exist
// (0 to N): one packed access when all exist and p is aligned to the pack
// (even row widths and offsets), one access per existing element otherwise.
// The rest read as zero / are not written.
template <int N, typename T>
__device__ __forceinline__ void read_pixels(const T* p, int valid, T (&out)[N]) {
  const bool packed =
      valid == N && reinterpret_cast<std::uintptr_t>(p) % sizeof(Packed<T, N>) == 0;
  const Packed<T, N> all = read_if(packed, reinterpret_cast<const Packed<T, N>*>(p));
#pragma unroll
  for (int e = 0; e < N; ++e) {
    const T single = read_if(!packed && e < valid, p + e);  // every lane reaches both reads
    out[e] = packed ? all.v[e] : single;
  }
}
template <int N, typename T>
__device__ __forceinline__ void write_pixels(T* p, int valid, const T (&values)[N]) {
  const bool packed =
      valid == N && reinterpret_cast<std::uintptr_t>(p) % sizeof(Packed<T, N>) == 0;
  Packed<T, N> all;
#pragma unroll
  for (int e = 0; e < N; ++e) all.v[e] = values[e];
  write_if(packed, reinterpret_cast<Packed<T, N>*>(p), all);
#pragma unroll
  for (int e = 0; e < N; ++e) write_if(!packed && e < valid, p + e, values[e]);
}

// Accumulation type and conversions per storage type.
template <typename T>
struct Numeric {
  using acc_t = T;
  __device__ __forceinline__ static acc_t load(T value) { return value; }
  __device__ __forceinline__ static T store(acc_t value) { return value; }
};
template <>
struct Numeric<__half> {
  using acc_t = float;
  __device__ __forceinline__ static float load(__half value) { return __half2float(value); }
  __device__ __forceinline__ static __half store(float value) { return __float2half_rn(value); }
};
template <>
struct Numeric<__nv_bfloat16> {
  using acc_t = float;
  __device__ __forceinline__ static float load(__nv_bfloat16 value) {
    return __bfloat162float(value);
  }
  __device__ __forceinline__ static __nv_bfloat16 store(float value) {
    return __float2bfloat16_rn(value);
  }
};

__host__ __device__ __forceinline__ int floor_div(int a, int b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

// Copies plane[y0 : y0 + rows, x0 : x0 + cols] (zero outside the plane) into
// shared memory, a row per warp at a time: consecutive lanes read consecutive
// columns (coalesced). thread / threads: the caller's linear index and block
// size (a multiple of 32). Both loops are warp-uniform (device_memory.cuh's rule).
// kUpsample = 2 stages the plane with a zero between neighbours instead:
// staged (r, c) is plane[(y0 + r) / 2, (x0 + c) / 2] where both are even, else 0
// (the stride-2 backward's grad_output, gathered like a stride-1 one).
template <int kUpsample = 1, typename scalar_t, typename acc_t>
__device__ __forceinline__ void stage_tile(acc_t* staged, int rows, int cols,
                                           const scalar_t* __restrict__ plane, int height,
                                           int width, int y0, int x0, int thread, int threads) {
#ifdef MULA_INJECT_SHARED_OOB  // sanitizer self-test only: each element one place on, past the end
  constexpr int kSkew = 1;
#else
  constexpr int kSkew = 0;
#endif
  const int lane = thread % 32;
  for (int r = thread / 32; r < rows; r += threads / 32) {
    const int u = y0 + r;
    const int y = u / kUpsample;
    const bool row_inside = u >= 0 && u % kUpsample == 0 && y < height;
    for (int c0 = 0; c0 < cols; c0 += 32) {
      const int c = c0 + lane;
      const int v = x0 + c;
      const int x = v / kUpsample;
      const bool inside = row_inside && v >= 0 && v % kUpsample == 0 && x < width;
      const acc_t value =
          Numeric<scalar_t>::load(read_if(inside, plane + (std::int64_t(y) * width + x)));
      write_if(c < cols, staged + (r * cols + c + kSkew), value);
    }
  }
}

template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void stage_filter(acc_t* filter, const scalar_t* __restrict__ weight,
                                             int taps) {
  const int thread = threadIdx.y * kBlockX + threadIdx.x;
  for (int i0 = 0; i0 < taps; i0 += kThreads) {
    const int i = i0 + thread;
    write_if(i < taps, filter + i, Numeric<scalar_t>::load(read_if(i < taps, weight + i)));
  }
}

// The barrier between staging a tile and reading it.
#ifdef MULA_INJECT_MISSING_BARRIER  // sanitizer self-test only
#define MULA_STAGED_BARRIER()
#else
#define MULA_STAGED_BARRIER() __syncthreads()
#endif

// One filter row in registers when the kernel size is a compile-time constant
// (K > 0), read from shared memory otherwise. Loading a row per kh (rather than
// the whole filter) keeps register pressure low enough for two blocks per SM.
template <typename acc_t, int K>
struct FilterRow {
  acc_t taps[K];
  __device__ __forceinline__ explicit FilterRow(const acc_t* row) {
#pragma unroll
    for (int i = 0; i < K; ++i) taps[i] = read(row + i);
  }
  __device__ __forceinline__ acc_t operator[](int i) const { return taps[i]; }
};
template <typename acc_t>
struct FilterRow<acc_t, 0> {
  const acc_t* taps;
  __device__ __forceinline__ explicit FilterRow(const acc_t* row) : taps(row) {}
  __device__ __forceinline__ acc_t operator[](int i) const { return read(taps + i); }
};

// output[n, co] = bias + sum over the group's input channels of the input
// plane correlated with weight[n, co, ci]. One block per (plane, tile).
template <typename scalar_t, int K>
__global__ void __launch_bounds__(kThreads, 2)
    forward_kernel(ConvShape s, Tiling t, const scalar_t* __restrict__ input,
                   const scalar_t* __restrict__ weight, const scalar_t* __restrict__ bias,
                   std::int64_t bias_batch_stride, scalar_t* __restrict__ output) {
  using acc_t = typename Numeric<scalar_t>::acc_t;
  MULA_DYNAMIC_SHARED(acc_t, staged);
  const int tx = threadIdx.x;
  const int ty = threadIdx.y;
  acc_t* filter = staged + t.staged_rows * t.staged_cols;
  const int kernel_h = K > 0 ? K : int(s.kernel_h);
  const int kernel_w = K > 0 ? K : int(s.kernel_w);
  const int taps = kernel_h * kernel_w;

  const int tiles = t.tiles_h * t.tiles_w;
  const std::int64_t plane = blockIdx.x / tiles;  // n * C_out + co
  const int tile = blockIdx.x % tiles;
  const std::int64_t n = plane / s.out_channels;
  const std::int64_t co = plane % s.out_channels;
  const int oy0 = tile / t.tiles_w * t.tile_h;
  const int ox0 = tile % t.tiles_w * t.tile_w;
  const std::int64_t in_per_group = s.in_channels / s.groups;
  const std::int64_t first_in = co / (s.out_channels / s.groups) * in_per_group;
  const int plane_size = int(s.in_height) * int(s.in_width);

  const int rows = (t.tile_h - ty + kBlockY - 1) / kBlockY;  // rows of the tile this thread owns
  acc_t acc[kRowsPerThread] = {};
  for (std::int64_t ci = 0; ci < in_per_group; ++ci) {
    __syncthreads();  // the previous channel's tiles have been read
    stage_tile(staged, t.staged_rows, t.staged_cols,
               input + (n * s.in_channels + first_in + ci) * plane_size, int(s.in_height),
               int(s.in_width), oy0 * int(s.stride_h) - int(s.pad_h),
               ox0 * int(s.stride_w) - int(s.pad_w), ty * kBlockX + tx, kThreads);
    stage_filter(filter, weight + (plane * in_per_group + ci) * taps, taps);
    MULA_STAGED_BARRIER();
    if (tx < t.tile_w) {
      // kh outermost and not unrolled keeps few values live (no spills):
      // each iteration holds one filter row in registers for 4 x kW FMAs.
#pragma unroll 1
      for (int kh = 0; kh < kernel_h; ++kh) {
        const FilterRow<acc_t, K> f(filter + kh * kernel_w);
        const acc_t* tap_row = staged +
                               (ty * int(s.stride_h) + kh * int(s.dilation_h)) * t.staged_cols +
                               tx * int(s.stride_w);
#pragma unroll
        for (int r = 0; r < kRowsPerThread; ++r) {
          if (r >= rows) continue;
          const acc_t* in_row = tap_row + r * kBlockY * int(s.stride_h) * t.staged_cols;
#pragma unroll
          for (int kw = 0; kw < kernel_w; ++kw) {
            acc[r] = multiply_add(read(in_row + kw * int(s.dilation_w)), f[kw], acc[r]);
          }
        }
      }
    }
  }

  const acc_t bias_value =
      bias != nullptr ? Numeric<scalar_t>::load(read(bias + (n * bias_batch_stride + co)))
                      : acc_t(0);
  const int ox = ox0 + tx;
#pragma unroll
  for (int r = 0; r < kRowsPerThread; ++r) {
    const int ly = ty + r * kBlockY;
    const int oy = oy0 + ly;
    write_if(tx < t.tile_w && ly < t.tile_h && oy < int(s.out_height) && ox < int(s.out_width),
             output + ((plane * int(s.out_height) + oy) * int(s.out_width) + ox),
             Numeric<scalar_t>::store(add(acc[r], bias_value)));
  }
}

// The register-blocked forward for square K x K filters (3, 5, 7) at stride S
// and dilation D known at compile time (launched for float, half and
// bfloat16; float64 takes forward_kernel). A block is t.threads_x x groups
// threads (1-D, a multiple of 32); thread (x, g) computes the kRows x 2
// outputs at tile rows g kRows + [0, kRows) and columns 2x, 2x + 1, with the
// whole filter in registers (read from global memory: every lane of a warp
// reads the same tap, one sector). For each of the kStagedRows input rows its
// outputs read, it loads the row's kSpan values once, packed (8 or 16 bytes,
// so the lanes of a half or quarter warp read one row contiguously: no bank
// conflicts), and feeds every (output row, tap) that reads them: K = 7 at
// stride 1 loads 10 rows x 8 values for 4 x 2 x 49 FMAs (0.2 shared words per
// FMA, against 1.25 in forward_kernel).
template <int K, int S, int D>
struct ForwardBlocking {
  static constexpr int kRows = K == 3 || D > 1 ? 8 : 4;  // output rows per thread
  static constexpr int kCols = 2;                         // output columns per thread
  static constexpr int kVector = kCols * S;  // a thread's first staged column is a multiple
  static constexpr int kSpan = (kCols - 1) * S + (K - 1) * D + 1;
  static constexpr int kLoads = (kSpan + kVector - 1) / kVector;
  static constexpr int kStagedRows = (kRows - 1) * S + (K - 1) * D + 1;
};

template <typename scalar_t, int K, int S, int D>
__global__ void __launch_bounds__(kThreads, 2)
    blocked_forward_kernel(ConvShape s, Tiling t, const scalar_t* __restrict__ input,
                           const scalar_t* __restrict__ weight, const scalar_t* __restrict__ bias,
                           std::int64_t bias_batch_stride, scalar_t* __restrict__ output) {
  using acc_t = typename Numeric<scalar_t>::acc_t;
  using B = ForwardBlocking<K, S, D>;
  using Row = Packed<acc_t, B::kVector>;
  MULA_DYNAMIC_SHARED(acc_t, staged);
  const int thread = threadIdx.x;
  const int tx = thread % t.threads_x;
  const int group = thread / t.threads_x;

  const int tiles = t.tiles_h * t.tiles_w;
  const std::int64_t plane = blockIdx.x / tiles;  // n * C_out + co
  const int tile = blockIdx.x % tiles;
  const std::int64_t n = plane / s.out_channels;
  const std::int64_t co = plane % s.out_channels;
  const int oy0 = tile / t.tiles_w * t.tile_h;
  const int ox0 = tile % t.tiles_w * t.tile_w;
  const std::int64_t in_per_group = s.in_channels / s.groups;
  const std::int64_t first_in = co / (s.out_channels / s.groups) * in_per_group;
  const int plane_size = int(s.in_height) * int(s.in_width);
  const int ly0 = group * B::kRows;  // the thread's first output row and column in the tile
  const int lx0 = tx * B::kCols;

  acc_t acc[B::kRows][B::kCols] = {};
  for (std::int64_t ci = 0; ci < in_per_group; ++ci) {
    __syncthreads();  // the previous channel's tile has been read
    stage_tile(staged, t.staged_rows, t.staged_cols,
               input + (n * s.in_channels + first_in + ci) * plane_size, int(s.in_height),
               int(s.in_width), oy0 * S - int(s.pad_h), ox0 * S - int(s.pad_w), thread,
               int(blockDim.x));
    const scalar_t* taps = weight + (plane * in_per_group + ci) * (K * K);
    acc_t f[K][K];
#pragma unroll
    for (int kh = 0; kh < K; ++kh) {
#pragma unroll
      for (int kw = 0; kw < K; ++kw) f[kh][kw] = Numeric<scalar_t>::load(read(taps + kh * K + kw));
    }
    MULA_STAGED_BARRIER();
    const acc_t* first = staged + ly0 * S * t.staged_cols + lx0 * S;
#pragma unroll
    for (int i = 0; i < B::kStagedRows; ++i) {
      acc_t v[B::kLoads * B::kVector];
#pragma unroll
      for (int l = 0; l < B::kLoads; ++l) {
        const Row packed =
            read(reinterpret_cast<const Row*>(first + i * t.staged_cols + l * B::kVector));
#pragma unroll
        for (int e = 0; e < B::kVector; ++e) v[l * B::kVector + e] = packed.v[e];
      }
#pragma unroll
      for (int r = 0; r < B::kRows; ++r) {
        const int offset = i - r * S;  // kh * D for the output row r that reads input row i
        if (offset < 0 || offset % D != 0 || offset / D >= K) continue;  // compile-time
#pragma unroll
        for (int c = 0; c < B::kCols; ++c) {
#pragma unroll
          for (int kw = 0; kw < K; ++kw) {
            acc[r][c] = multiply_add(v[c * S + kw * D], f[offset / D][kw], acc[r][c]);
          }
        }
      }
    }
  }

  const acc_t bias_value =
      bias != nullptr ? Numeric<scalar_t>::load(read(bias + (n * bias_batch_stride + co)))
                      : acc_t(0);
  const int ox = ox0 + lx0;
  const int columns = ox < int(s.out_width) ? int(s.out_width) - ox : 0;
#pragma unroll
  for (int r = 0; r < B::kRows; ++r) {
    const int oy = oy0 + ly0 + r;
    const bool row = ly0 + r < t.tile_h && oy < int(s.out_height);
    scalar_t values[B::kCols];
#pragma unroll
    for (int c = 0; c < B::kCols; ++c)
      values[c] = Numeric<scalar_t>::store(add(acc[r][c], bias_value));
    write_pixels(output + ((plane * int(s.out_height) + oy) * int(s.out_width) + ox),
                 row ? (columns < B::kCols ? columns : B::kCols) : 0, values);
  }
}

// The address of element `offset` of an optional buffer (null stays null:
// no arithmetic on a null pointer).
template <typename T>
__device__ __forceinline__ T* element(T* buffer, std::int64_t offset) {
  return buffer != nullptr ? buffer + offset : buffer;
}

// Stores (when `store`) the reduced value of tap `tap` of weight plane `plane`
// ((n * C_out + co) * C_in/groups + ci); tap == taps is the bias.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void store_weight_grad(const ConvShape& s, std::int64_t plane, int tap,
                                                  int taps, acc_t value, bool store,
                                                  scalar_t* __restrict__ grad_weight,
                                                  scalar_t* __restrict__ grad_bias) {
  const std::int64_t in_per_group = s.in_channels / s.groups;
  write_if(store && tap < taps && grad_weight != nullptr, element(grad_weight, plane * taps + tap),
           Numeric<scalar_t>::store(value));
  write_if(store && tap == taps && grad_bias != nullptr && plane % in_per_group == 0,
           element(grad_bias, plane / in_per_group), Numeric<scalar_t>::store(value));
}

// The sum of grad_output[oy, ox] over rows [by0, by1) and columns [bx0, bx1)
// of one plane, this thread's share: rows group, group + groups, ...;
// columns x, x + threads_x, ... (both loops warp-uniform).
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ acc_t bias_share(const scalar_t* __restrict__ grad_plane, int width,
                                            int by0, int by1, int bx0, int bx1, int x, int group,
                                            int threads_x, int groups) {
  acc_t sum = 0;
  for (int oy0 = by0; oy0 < by1; oy0 += groups) {
    const int oy = oy0 + group;
    for (int ox0 = bx0; ox0 < bx1; ox0 += threads_x) {
      const int ox = ox0 + x;
      sum = add(sum, Numeric<scalar_t>::load(
                         read_if(oy < by1 && ox < bx1, grad_plane + (oy * width + ox))));
    }
  }
  return sum;
}

// After a barrier: adds the block's warp_sums (warps rows of taps + 1) in
// warp order and stores them: the weight gradient (and the bias's at tap ==
// taps) when the plane is one tile, else this tile's partial sums, which
// grad_weight_finalize_kernel adds in tile order.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void store_block_sums(const ConvShape& s, const acc_t* warp_sums,
                                                 int warps, int taps, std::int64_t weight_plane,
                                                 int tile, int tiles, int thread, int threads,
                                                 acc_t* __restrict__ partial,
                                                 scalar_t* __restrict__ grad_weight,
                                                 scalar_t* __restrict__ grad_bias) {
#pragma unroll 1  // one copy of the body: taps + 1 <= threads for the register kernels
  for (int i0 = 0; i0 <= taps; i0 += threads) {  // warp-uniform
    const int i = i0 + thread;
    const bool active = i <= taps;
    acc_t total = 0;
    // A constant trip count (predicated): nvcc unrolls it once, not into remainder copies.
#pragma unroll
    for (int w = 0; w < kWarps; ++w)
      total = add(total, read_if(active && w < warps, warp_sums + (w * (taps + 1) + i)));
#ifdef MULA_INJECT_BLOCK_ORDER_DEPENDENCE  // emulator self-test only: right only if tile 0 ran
                                           // first
    if (partial != nullptr && active && tile == tiles - 1 && tiles > 1) {
      partial[weight_plane * tiles * (taps + 1) + i] += total;
      total = 0;
    }
#endif
    // Branch-free between the two destinations, so the loop is not duplicated.
    write_if(partial != nullptr && active,
             element(partial, (weight_plane * tiles + tile) * (taps + 1) + i), total);
    store_weight_grad(s, weight_plane, i, taps, total, partial == nullptr, grad_weight, grad_bias);
  }
}

// The staged grad_output value that tap (kh, kw) gathers into pixel (y, x):
// the output (oy, ox) with oy * stride = y + pad - kh * dilation, or 0 when
// no output reaches the pixel through this tap. Quotients outside the output
// plane land on the staged zero halo. kUnitStride (stride 1 x 1, known at
// compile time) drops the integer divisions.
template <bool kUnitStride, typename acc_t>
__device__ __forceinline__ acc_t gathered(const ConvShape& s, const Tiling& t, const acc_t* staged,
                                          int y, int x, int kh, int kw, int oy_first,
                                          int ox_first) {
  const int row = y + int(s.pad_h) - kh * int(s.dilation_h);
  const int col = x + int(s.pad_w) - kw * int(s.dilation_w);
  if constexpr (kUnitStride) {
    return read(staged + ((row - oy_first) * t.staged_cols + col - ox_first));
  } else {
    const bool reached = row % int(s.stride_h) == 0 && col % int(s.stride_w) == 0;
    return read_if(reached, staged + ((row / int(s.stride_h) - oy_first) * t.staged_cols +
                                      col / int(s.stride_w) - ox_first));
  }
}

// The fused backward. One block per (input plane n * C_in + ci, tile of that
// plane). For each output channel co of ci's group it stages the grad_output
// tile with the halo its pixels gather from, and every value a thread gathers
// for pixel (y, x) through tap (kh, kw) feeds both gradients:
//   grad_input[n, ci, y, x]          += dy[n, co, oy, ox] * weight[n, co, ci, kh, kw]
//   grad_weight[n, co, ci, kh, kw]   += dy[n, co, oy, ox] * input[n, ci, y, x]
// (the transposed convolution as a gather: no scatter). Input tiles partition
// the plane, so each (output pixel, tap) pair that reads the input is counted
// by exactly one block; pairs that read padding add nothing to grad_weight.
// grad_bias[n, co] sums dy over the output plane split into the same
// tiles_h x tiles_w grid (blocks of the group's first input channel only).
// The tap sums are reduced in the block with warp shuffles and shared memory
// in a fixed order, then stored (one tile per plane) or written as partial
// sums that grad_weight_finalize_kernel adds up in tile order. No atomics:
// bitwise reproducible. A null grad_input, or null grad_weight and grad_bias,
// skips that part's stores (and the reduction). K > 0 (a filter row and its
// tap sums in registers) is launched for stride 1 x 1 only; any other shape
// takes the generic kernel (K = 0).
template <typename scalar_t, int K>
__global__ void __launch_bounds__(kThreads, 2)
    backward_kernel(ConvShape s, Tiling t, const scalar_t* __restrict__ grad_output,
                    const scalar_t* __restrict__ input, const scalar_t* __restrict__ weight,
                    typename Numeric<scalar_t>::acc_t* __restrict__ partial,
                    scalar_t* __restrict__ grad_input, scalar_t* __restrict__ grad_weight,
                    scalar_t* __restrict__ grad_bias) {
  using acc_t = typename Numeric<scalar_t>::acc_t;
  MULA_DYNAMIC_SHARED(acc_t, staged);
  const int tx = threadIdx.x;
  const int ty = threadIdx.y;
  const int kernel_h = K > 0 ? K : int(s.kernel_h);
  const int kernel_w = K > 0 ? K : int(s.kernel_w);
  const int taps = kernel_h * kernel_w;
  acc_t* filter = staged + t.staged_rows * t.staged_cols;
  acc_t* warp_sums = filter + taps;  // kWarps x (taps + 1)

  const int tiles = t.tiles_h * t.tiles_w;
  const std::int64_t plane = blockIdx.x / tiles;  // n * C_in + ci
  const int tile = blockIdx.x % tiles;
  const int tile_row = tile / t.tiles_w;
  const int tile_col = tile % t.tiles_w;
  const std::int64_t n = plane / s.in_channels;
  const std::int64_t ci = plane % s.in_channels;
  const std::int64_t in_per_group = s.in_channels / s.groups;
  const std::int64_t out_per_group = s.out_channels / s.groups;
  const std::int64_t first_out = ci / in_per_group * out_per_group;
  const std::int64_t ci_in_group = ci % in_per_group;
  const int y0 = tile_row * t.tile_h;
  const int x0 = tile_col * t.tile_w;
  // First output row/column any pixel of the tile gathers from.
  const int oy_first =
      floor_div(y0 + int(s.pad_h) - (kernel_h - 1) * int(s.dilation_h), int(s.stride_h));
  const int ox_first =
      floor_div(x0 + int(s.pad_w) - (kernel_w - 1) * int(s.dilation_w), int(s.stride_w));
  const int out_plane_size = int(s.out_height) * int(s.out_width);
  const bool want_sums = grad_weight != nullptr || grad_bias != nullptr;
  // This block's share of the output plane for the bias sum.
  const int bias_rows = (int(s.out_height) + t.tiles_h - 1) / t.tiles_h;
  const int bias_cols = (int(s.out_width) + t.tiles_w - 1) / t.tiles_w;
  const int by0 = tile_row * bias_rows;
  const int bx0 = tile_col * bias_cols;
  const int by_end = by0 + bias_rows < int(s.out_height) ? by0 + bias_rows : int(s.out_height);
  const int by1 = grad_bias != nullptr && ci_in_group == 0 ? by_end : 0;  // empty otherwise
  const int bx1 = bx0 + bias_cols < int(s.out_width) ? bx0 + bias_cols : int(s.out_width);

  const int lane = (ty * kBlockX + tx) % 32;
  const int warp = (ty * kBlockX + tx) / 32;
  const bool has_column = tx < t.tile_w;
  const int rows = (t.tile_h - ty + kBlockY - 1) / kBlockY;  // rows of the tile this thread owns
  const int x = x0 + tx;
  // The thread's own input pixels (zero outside the plane): the weight-sum operands.
  acc_t pixel[kRowsPerThread];
#pragma unroll
  for (int r = 0; r < kRowsPerThread; ++r) {
    const int y = y0 + ty + r * kBlockY;
    pixel[r] = Numeric<scalar_t>::load(
        read_if(want_sums && has_column && r < rows && y < int(s.in_height) && x < int(s.in_width),
                input + ((plane * int(s.in_height) + y) * int(s.in_width) + x)));
  }

  acc_t acc[kRowsPerThread] = {};
  for (std::int64_t j = 0; j < out_per_group; ++j) {
    const std::int64_t out_plane = n * s.out_channels + first_out + j;
    const std::int64_t weight_plane = out_plane * in_per_group + ci_in_group;
    const scalar_t* grad_plane = grad_output + out_plane * out_plane_size;
    __syncthreads();  // the previous channel's tiles and sums have been read
    stage_tile(staged, t.staged_rows, t.staged_cols, grad_plane, int(s.out_height),
               int(s.out_width), oy_first, ox_first, ty * kBlockX + tx, kThreads);
    stage_filter(filter, weight + weight_plane * taps, taps);
    MULA_STAGED_BARRIER();

    const acc_t bias_sum = bias_share<scalar_t, acc_t>(grad_plane, int(s.out_width), by0, by1, bx0,
                                                       bx1, tx, ty, kBlockX, kBlockY);
    if constexpr (K > 0) {
      // One filter row at a time (kh not unrolled keeps few values live):
      // its K tap sums, padded to a power of two, reduced across the warp.
      constexpr int kRowSums = K <= 4 ? 4 : 8;
#pragma unroll 1
      for (int kh = 0; kh < K; ++kh) {
        acc_t row_sums[kRowSums] = {};
        if (has_column) {
          const FilterRow<acc_t, K> f(filter + kh * K);
#pragma unroll
          for (int r = 0; r < kRowsPerThread; ++r) {
            if (r >= rows) continue;
            const int y = y0 + ty + r * kBlockY;
#pragma unroll
            for (int kw = 0; kw < K; ++kw) {
              const acc_t g = gathered<true>(s, t, staged, y, x, kh, kw, oy_first, ox_first);
              acc[r] = multiply_add(g, f[kw], acc[r]);
              row_sums[kw] = multiply_add(g, pixel[r], row_sums[kw]);
            }
          }
        }
        if (want_sums) {
          const acc_t total = warp_scatter_sum(row_sums, lane);
          write_if(lane < K, warp_sums + (warp * (taps + 1) + kh * K + lane), total);
        }
      }
    } else {
      for (int i = 0; i < taps; ++i) {  // one tap at a time: the count is not known
        const int kh = i / kernel_w;
        const int kw = i % kernel_w;
        acc_t sum = 0;
        if (has_column) {
#pragma unroll  // constant indices keep acc and pixel in registers
          for (int r = 0; r < kRowsPerThread; ++r) {
            if (r >= rows) continue;
            const acc_t g =
                gathered<false>(s, t, staged, y0 + ty + r * kBlockY, x, kh, kw, oy_first, ox_first);
            acc[r] = multiply_add(g, read(filter + i), acc[r]);
            sum = multiply_add(g, pixel[r], sum);
          }
        }
        if (want_sums) {
          const acc_t total = warp_sum(sum);
          write_if(lane == 0, warp_sums + (warp * (taps + 1) + i), total);
        }
      }
    }
    if (want_sums) {
      const acc_t total = warp_sum(bias_sum);
      write_if(lane == 0, warp_sums + (warp * (taps + 1) + taps), total);
    }
    if (!want_sums) continue;
    __syncthreads();  // every warp's sums are in shared memory
    store_block_sums(s, warp_sums, kWarps, taps, weight_plane, tile, tiles, ty * kBlockX + tx,
                     kThreads, partial, grad_weight, grad_bias);
  }

  if (grad_input == nullptr) return;  // after the last barrier
#pragma unroll
  for (int r = 0; r < kRowsPerThread; ++r) {
    const int ly = ty + r * kBlockY;
    const int y = y0 + ly;
    write_if(has_column && ly < t.tile_h && y < int(s.in_height) && x < int(s.in_width),
             grad_input + ((plane * int(s.in_height) + y) * int(s.in_width) + x),
             Numeric<scalar_t>::store(acc[r]));
  }
}

// The register-blocked fused backward for square K x K filters (3, 5, 7) at
// stride 1 and dilation D (1 or 2), or stride S = 2 at dilation 1, known at
// compile time (float, half, bfloat16). At stride 2 the staged grad_output
// is upsampled (a zero between neighbours), which makes the gather and the
// weight sums exactly those of stride 1, at 4x the FMAs (a quarter of them
// on staged zeros) but the same loads per FMA and no integer divisions.
// A block is t.threads_x x groups threads (1-D); thread (x, g) owns kRows x
// kCols = 16 pixels: consecutive rows g kRows + [0, kRows),
// columns kCols x + [0, kCols), so that 256 threads cover a 64 x 64 plane and
// its weight gradient is reduced inside one block, in one pass. Every staged
// grad_output value a thread loads (packed, 8 or 16 bytes: conflict-free)
// feeds the grad_input FMA of every pixel that gathers it and the same
// pixels' grad_weight FMA, and the tap sums cover all the thread's pixels
// before the warp reduces them. The filter is taken kChunk rows at a time
// (all 25 or 49 taps and their sums would not fit the registers): the
// chunk's taps and tap sums live in registers, and each staged row is loaded
// once for every (pixel row, filter row) of the chunk that reads it. K = 7,
// D = 1: 35 staged row spans of 8 values for 8 x 2 x 49 x 2 FMAs (0.18
// shared words per FMA).
template <int K, int D>
struct BackwardBlocking {
  static constexpr int kCols = 2 * D;  // kCols / D pixels read each value through every tap
  static constexpr int kRows = 16 / kCols;  // 16 pixels per thread
  static constexpr int kSpan = kCols + (K - 1) * D;  // a multiple of kCols (K odd)
  // Filter rows whose taps and sums are in registers at once: more would
  // spill (all 25 of K = 5 do on sm_75 and sm_80).
  static constexpr int kChunk = K <= 5 ? 3 : D == 1 ? 2 : 1;
  // A chunk's tap sums, padded to warp_scatter_sum's power of two.
  static constexpr int kSums = kChunk * K <= 8 ? 8 : kChunk * K <= 16 ? 16 : 32;
};

// Loads the kSpan staged values at row (kCols-aligned), packed.
template <typename B, typename acc_t>
__device__ __forceinline__ void read_span(const acc_t* row, acc_t (&v)[B::kSpan]) {
  using Span = Packed<acc_t, B::kCols>;
#pragma unroll
  for (int l = 0; l < B::kSpan / B::kCols; ++l) {
    const Span packed = read(reinterpret_cast<const Span*>(row + l * B::kCols));
#pragma unroll
    for (int e = 0; e < B::kCols; ++e) v[l * B::kCols + e] = packed.v[e];
  }
}

template <typename scalar_t, int K, int S, int D>
__global__ void __launch_bounds__(kThreads, 2)
    blocked_backward_kernel(ConvShape s, Tiling t, const scalar_t* __restrict__ grad_output,
                            const scalar_t* __restrict__ input, const scalar_t* __restrict__ weight,
                            typename Numeric<scalar_t>::acc_t* __restrict__ partial,
                            scalar_t* __restrict__ grad_input, scalar_t* __restrict__ grad_weight,
                            scalar_t* __restrict__ grad_bias) {
  using acc_t = typename Numeric<scalar_t>::acc_t;
  using B = BackwardBlocking<K, D>;
  constexpr int taps = K * K;
  MULA_DYNAMIC_SHARED(acc_t, staged);
  acc_t* warp_sums = staged + t.staged_rows * t.staged_cols;  // warps x (taps + 1)
  const int thread = threadIdx.x;
  const int threads = int(blockDim.x);
  const int tx = thread % t.threads_x;
  const int group = thread / t.threads_x;
  const int groups = threads / t.threads_x;
  const int lane = thread % 32;
  const int warp = thread / 32;

  const int tiles = t.tiles_h * t.tiles_w;
  const std::int64_t plane = blockIdx.x / tiles;  // n * C_in + ci
  const int tile = blockIdx.x % tiles;
  const int tile_row = tile / t.tiles_w;
  const int tile_col = tile % t.tiles_w;
  const std::int64_t n = plane / s.in_channels;
  const std::int64_t ci = plane % s.in_channels;
  const std::int64_t in_per_group = s.in_channels / s.groups;
  const std::int64_t out_per_group = s.out_channels / s.groups;
  const std::int64_t first_out = ci / in_per_group * out_per_group;
  const std::int64_t ci_in_group = ci % in_per_group;
  const int y0 = tile_row * t.tile_h;
  const int x0 = tile_col * t.tile_w;
  // The staged tile's origin (in the upsampled grad_output plane for S = 2).
  const int oy_first = y0 + int(s.pad_h) - (K - 1) * D;
  const int ox_first = x0 + int(s.pad_w) - (K - 1) * D;
  const int out_plane_size = int(s.out_height) * int(s.out_width);
  const bool want_sums = grad_weight != nullptr || grad_bias != nullptr;
  const int bias_rows = (int(s.out_height) + t.tiles_h - 1) / t.tiles_h;
  const int bias_cols = (int(s.out_width) + t.tiles_w - 1) / t.tiles_w;
  const int by0 = tile_row * bias_rows;
  const int bx0 = tile_col * bias_cols;
  const int by_end = by0 + bias_rows < int(s.out_height) ? by0 + bias_rows : int(s.out_height);
  const int by1 = grad_bias != nullptr && ci_in_group == 0 ? by_end : 0;  // empty otherwise
  const int bx1 = bx0 + bias_cols < int(s.out_width) ? bx0 + bias_cols : int(s.out_width);

  const int ly0 = group * B::kRows;  // the thread's first pixel row in the tile
  const int lx0 = tx * B::kCols;
  const int x = x0 + lx0;
  const int columns = x < int(s.in_width) ? int(s.in_width) - x : 0;
  const int valid_columns = columns < B::kCols ? columns : B::kCols;
  // The thread's own input pixels (zero outside the plane): the weight-sum operands.
  acc_t pixel[B::kRows][B::kCols];
#pragma unroll
  for (int r = 0; r < B::kRows; ++r) {
    const int y = y0 + ly0 + r;
    scalar_t values[B::kCols];
    read_pixels(input + ((plane * int(s.in_height) + y) * int(s.in_width) + x),
                want_sums && y < int(s.in_height) ? valid_columns : 0, values);
#pragma unroll
    for (int c = 0; c < B::kCols; ++c) pixel[r][c] = Numeric<scalar_t>::load(values[c]);
  }

  acc_t acc[B::kRows][B::kCols] = {};
  for (std::int64_t j = 0; j < out_per_group; ++j) {
    const std::int64_t out_plane = n * s.out_channels + first_out + j;
    const std::int64_t weight_plane = out_plane * in_per_group + ci_in_group;
    const scalar_t* grad_plane = grad_output + out_plane * out_plane_size;
    const scalar_t* filter = weight + weight_plane * taps;
    __syncthreads();  // the previous channel's tile and sums have been read
    stage_tile<S>(staged, t.staged_rows, t.staged_cols, grad_plane, int(s.out_height),
                  int(s.out_width), oy_first, ox_first, thread, threads);
    MULA_STAGED_BARRIER();
    const acc_t bias_sum = bias_share<scalar_t, acc_t>(grad_plane, int(s.out_width), by0, by1, bx0,
                                                       bx1, tx, group, t.threads_x, groups);
    // Pixel row r gathers through filter row kh the staged row ly0 + r + (K - 1 - kh) D, and
    // pixel column c through tap kw the span's value c + (K - 1 - kw) D.
    // Equal chunks share a loop unrolled twice (fully unrolled, K = 7 at D = 2
    // spills); unequal ones are unrolled so that every chunk's size is a constant.
    constexpr bool kEqualChunks = K % B::kChunk == 0;
#pragma unroll(kEqualChunks ? 2 : K)
    for (int kh0 = 0; kh0 < K; kh0 += B::kChunk) {
      const int rows_in_chunk =
          kEqualChunks || kh0 + B::kChunk <= K ? B::kChunk : K - kh0;  // compile-time
      acc_t f[B::kChunk][K];
#pragma unroll
      for (int h = 0; h < B::kChunk; ++h) {
#pragma unroll
        for (int kw = 0; kw < K; ++kw)
          f[h][kw] = h < rows_in_chunk
                         ? Numeric<scalar_t>::load(read(filter + (kh0 + h) * K + kw))
                         : acc_t(0);
      }
      acc_t sums[B::kSums] = {};
      // The chunk's staged rows start at the one its last filter row reads for pixel row 0:
      // pixel row r reads chunk row i through filter row kh0 + rows_in_chunk - 1 - (i - r) / D.
      const int last_kh = kh0 + rows_in_chunk - 1;
      const acc_t* first = staged + (ly0 + (K - 1 - last_kh) * D) * t.staged_cols + lx0;
#pragma unroll
      for (int i = 0; i < B::kRows + (B::kChunk - 1) * D; ++i) {
        if (i >= B::kRows + (rows_in_chunk - 1) * D) continue;  // compile-time
        acc_t v[B::kSpan];
        read_span<B>(first + i * t.staged_cols, v);
#pragma unroll
        for (int r = 0; r < B::kRows; ++r) {
          const int d = i - r;
          if (d < 0 || d % D != 0 || d / D >= rows_in_chunk) continue;  // compile-time
          const int h = rows_in_chunk - 1 - d / D;  // the filter row kh0 + h
#pragma unroll
          for (int c = 0; c < B::kCols; ++c) {
#pragma unroll
            for (int kw = 0; kw < K; ++kw) {
              const acc_t g = v[c + (K - 1 - kw) * D];
              acc[r][c] = multiply_add(g, f[h][kw], acc[r][c]);
              sums[h * K + kw] = multiply_add(g, pixel[r][c], sums[h * K + kw]);
            }
          }
        }
      }
      if (want_sums) {
        const acc_t total = warp_scatter_sum(sums, lane);
        write_if(lane < rows_in_chunk * K,
                 warp_sums + (warp * (taps + 1) + kh0 * K + lane % B::kSums), total);
      }
    }
    if (!want_sums) continue;
    const acc_t bias_total = warp_sum(bias_sum);
    write_if(lane == 0, warp_sums + (warp * (taps + 1) + taps), bias_total);
    __syncthreads();  // every warp's sums are in shared memory
    store_block_sums(s, warp_sums, threads / 32, taps, weight_plane, tile, tiles, thread, threads,
                     partial, grad_weight, grad_bias);
  }

  if (grad_input == nullptr) return;  // after the last barrier
#pragma unroll
  for (int r = 0; r < B::kRows; ++r) {
    const int y = y0 + ly0 + r;
    scalar_t values[B::kCols];
#pragma unroll
    for (int c = 0; c < B::kCols; ++c) values[c] = Numeric<scalar_t>::store(acc[r][c]);
    write_pixels(grad_input + ((plane * int(s.in_height) + y) * int(s.in_width) + x),
                 y < int(s.in_height) ? valid_columns : 0, values);
  }
}

// Second pass of the weight gradient when planes span several tiles: one
// thread per (weight plane, tap) adds the tiles' partial sums in tile order.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads, 2)
    grad_weight_finalize_kernel(ConvShape s, int tiles,
                                const typename Numeric<scalar_t>::acc_t* __restrict__ partial,
                                scalar_t* __restrict__ grad_weight,
                                scalar_t* __restrict__ grad_bias) {
  using acc_t = typename Numeric<scalar_t>::acc_t;
  const int taps = int(s.kernel_h) * int(s.kernel_w);
  const std::int64_t planes = s.batch * s.out_channels * (s.in_channels / s.groups);
  const std::int64_t index =
      std::int64_t(blockIdx.x) * kThreads + threadIdx.y * kBlockX + threadIdx.x;
  if (index >= planes * (taps + 1)) return;  // no barrier in this kernel
  const std::int64_t plane = index / (taps + 1);
  const int tap = static_cast<int>(index % (taps + 1));
  acc_t total = 0;
  for (int tile = 0; tile < tiles; ++tile)
    total = add(total, read(partial + ((plane * tiles + tile) * (taps + 1) + tap)));
  store_weight_grad(s, plane, tap, taps, total, true, grad_weight, grad_bias);
}

}  // namespace mula::cuda
