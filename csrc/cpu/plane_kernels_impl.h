// The per-plane CPU kernels, written once and compiled once per instruction
// set: each kernels_<isa>.cpp defines `Simd` (vector type, lane count and
// register-blocking sizes for that ISA) and then includes this file.
// Everything here has internal linkage, so the builds for different ISAs
// never meet at link time.
//
// Structure (it mirrors the CUDA kernels, one (sample, channel) plane each):
// - forward: stage the input plane with its zero halo (converted to the
//   accumulation type), correlate it with the plane's filter into an
//   accumulator plane that starts at the bias, store it converted back;
// - backward: stage the grad_output plane once, with a zero margin of the
//   filter's span,
//   and from it compute grad_bias (its sum), grad_weight (one reduction per
//   filter tap against the staged input plane) and grad_input (the forward
//   correlation with the flipped filter over the margin: a gather, no
//   scatter).
// Fast paths: float accumulation and a square 1x1, 3x3, 5x5 or 7x7 filter
// (any dilation), with register-blocked tiles: every pass at stride 1, the
// forward at any stride. Everything else takes the general loops, which
// handle any size, stride, dilation and padding.
//
// Within a plane every sum runs in a fixed order, and planes never share an
// output element, so results do not depend on the thread count.
#pragma once

// GCC's predictive commoning (-O3) carries the broadcast taps of one input
// row over to the next in registers, which the register-blocked tiles need
// for their accumulators: it made the 7x7 tiles spill (AVX2: 296 stack
// accesses, AVX-512: 133) and cost the forward about a quarter of its speed.
#pragma GCC optimize("no-predictive-commoning")

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>

namespace mula::cpu {
namespace {

// Layout-compatible with c10::Half and c10::BFloat16 (a uint16_t each).
struct HalfBits {
  uint16_t bits;
};
struct BFloat16Bits {
  uint16_t bits;
};

inline uint32_t float_bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

inline float bits_float(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// Conversions between storage and accumulation types; rounding to the half
// types is round-to-nearest-even, as in c10.
inline float to_acc(float value) { return value; }
inline double to_acc(double value) { return value; }
inline float to_acc(BFloat16Bits value) {
  return bits_float(uint32_t{value.bits} << 16);
}
inline float to_acc(HalfBits value) {
  const uint32_t sign = uint32_t{value.bits & 0x8000u} << 16;
  const uint32_t exponent = (value.bits >> 10) & 0x1fu;
  const uint32_t mantissa = value.bits & 0x3ffu;
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24, exact in float
    return bits_float(sign | float_bits(static_cast<float>(mantissa) * 0x1p-24f));
  }
  if (exponent == 31) {  // infinity or NaN
    return bits_float(sign | 0x7f800000u | (mantissa << 13));
  }
  return bits_float(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

template <typename T>
struct Storage;

template <>
struct Storage<float> {
  using Acc = float;
  static constexpr bool kIsAcc = true;
  static float from_acc(float value) { return value; }
};
template <>
struct Storage<double> {
  using Acc = double;
  static constexpr bool kIsAcc = true;
  static double from_acc(double value) { return value; }
};
template <>
struct Storage<BFloat16Bits> {
  using Acc = float;
  static constexpr bool kIsAcc = false;
  static BFloat16Bits from_acc(float value) {
    const uint32_t bits = float_bits(value);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return {0x7fc0};  // NaN
    return {static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16)};
  }
};
template <>
struct Storage<HalfBits> {
  using Acc = float;
  static constexpr bool kIsAcc = false;
  static HalfBits from_acc(float value) {
    const uint32_t bits = float_bits(value);
    const auto sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
    const uint32_t magnitude = bits & 0x7fffffffu;
    if (magnitude > 0x7f800000u) return {static_cast<uint16_t>(sign | 0x7e00u)};
    if (magnitude >= 0x477ff000u) {  // >= 65520 rounds to infinity
      return {static_cast<uint16_t>(sign | 0x7c00u)};
    }
    if (magnitude < 0x38800000u) {  // below 2^-14: a subnormal half
      // Scaled by 2^24 the result is an integer below 2^10; adding and
      // subtracting 2^23 rounds it to nearest-even.
      const float scaled = bits_float(magnitude) * 0x1p24f;
      const float rounded = scaled + 0x1p23f;
      return {static_cast<uint16_t>(sign | static_cast<uint32_t>(rounded - 0x1p23f))};
    }
    const uint32_t rounded = magnitude + 0xfffu + ((magnitude >> 13) & 1u);
    return {static_cast<uint16_t>(sign | ((rounded - 0x38000000u) >> 13))};
  }
};

template <typename T>
using AccOf = typename Storage<T>::Acc;

template <typename Acc>
constexpr bool kIsFloat = false;
template <>
constexpr bool kIsFloat<float> = true;

// A scratch array owned by one call (one thread), reused for all its planes.
template <typename Acc>
class Scratch {
 public:
  explicit Scratch(int64_t count) {
    const size_t bytes = (static_cast<size_t>(count > 0 ? count : 1) * sizeof(Acc) + 63) / 64 * 64;
    data_ = static_cast<Acc*>(std::aligned_alloc(64, bytes));
    if (data_ == nullptr) throw std::bad_alloc();
  }
  ~Scratch() { std::free(data_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  Acc* get() { return data_; }

 private:
  Acc* data_;
};

// The staged planes of one (sample, group), kept while consecutive work items
// of a chunk read that group, so that each plane is staged once per chunk
// rather than once per item (depthwise: one plane, restaged every item).
template <typename Acc>
class StagedGroup {
 public:
  StagedGroup(int64_t planes, int64_t plane_size)
      : buf_(planes * plane_size), plane_size_(plane_size) {}
  // Whether the planes of group `key` still have to be staged; from then on
  // they count as staged.
  bool needs_staging(int64_t key) {
    const bool stale = key != key_;
    key_ = key;
    return stale;
  }
  Acc* plane(int64_t index) { return buf_.get() + index * plane_size_; }

 private:
  Scratch<Acc> buf_;
  int64_t plane_size_;
  int64_t key_ = -1;
};

inline int64_t round_up(int64_t value, int64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

inline int64_t max_of(int64_t a, int64_t b) { return a > b ? a : b; }
inline int64_t clamp_to(int64_t value, int64_t low, int64_t high) {
  return value < low ? low : (value > high ? high : value);
}

// The filter size the register-blocked forward takes for this shape, or 0:
// float accumulation and a square 1x1, 3x3, 5x5 or 7x7 filter, any stride
// and dilation.
template <typename Acc>
int blocked_kernel_size(const PlaneShape& s) {
  if (!kIsFloat<Acc> || s.kernel_h != s.kernel_w) return 0;
  const int64_t k = s.kernel_h;
  return (k == 1 || k == 3 || k == 5 || k == 7) ? static_cast<int>(k) : 0;
}

// The same for the stride-1 kernels, which also serve the backward (the
// weight reduction, and grad_input as the flipped correlation).
template <typename Acc>
int fast_kernel_size(const PlaneShape& s) {
  return s.stride_h == 1 && s.stride_w == 1 ? blocked_kernel_size<Acc>(s) : 0;
}

// Scratch plane sizes for one convolution. Accumulator rows are padded to
// whole vectors (the pad columns compute harmless values that are never
// stored), and staged planes are wide enough for those pad columns.
struct Geometry {
  int64_t out_cols;  // forward accumulator row length
  // Input plane with its padding halo, a whole number of column phases wide
  // (see stage_input_plane).
  int64_t in_rows, in_cols;
  int64_t grad_in_cols;  // grad_input accumulator row length
  // grad_output plane with a zero margin of the filter's span, (k - 1) *
  // dilation, on every side: the flipped correlation for grad_input and the
  // row-blocked weight reduction read it.
  int64_t go_top, go_left, go_rows, go_cols;

  explicit Geometry(const PlaneShape& s) {
    const int64_t lanes = Simd::kLanes;
    out_cols = round_up(s.out_width, lanes);
    in_rows = s.in_height + 2 * s.pad_h;
    in_cols = round_up(max_of(s.in_width + 2 * s.pad_w,
                              out_cols * s.stride_w + (s.kernel_w - 1) * s.dilation_w),
                       s.stride_w);
    grad_in_cols = round_up(s.in_width, lanes);
    go_top = (s.kernel_h - 1) * s.dilation_h;
    go_left = (s.kernel_w - 1) * s.dilation_w;
    go_rows = max_of(go_top + s.out_height, s.pad_h + s.in_height) + go_top;
    go_cols = max_of(go_left + out_cols, s.pad_w + grad_in_cols) + go_left;
  }
};

// buf[r][c] = src[r - top][c - left] where that is inside the source plane,
// zero elsewhere; converts to the accumulation type.
template <typename T, typename Acc>
void stage_plane(const T* src, int64_t rows, int64_t cols, int64_t top,
                 int64_t left, Acc* buf, int64_t buf_rows, int64_t buf_cols) {
  const int64_t begin = clamp_to(left, 0, buf_cols);
  const int64_t end = clamp_to(left + cols, 0, buf_cols);
  for (int64_t r = 0; r < buf_rows; ++r) {
    Acc* dst = buf + r * buf_cols;
    const int64_t src_row = r - top;
    if (src_row < 0 || src_row >= rows) {
      std::memset(dst, 0, sizeof(Acc) * buf_cols);
      continue;
    }
    const T* src_line = src + src_row * cols - left;
    std::memset(dst, 0, sizeof(Acc) * begin);
    for (int64_t c = begin; c < end; ++c) dst[c] = to_acc(src_line[c]);
    std::memset(dst + end, 0, sizeof(Acc) * (buf_cols - end));
  }
}

// The input plane with its padding halo, as the kernels read it. With a
// column stride sw > 1 each staged row holds its columns split into sw
// phases, column x at (x % sw) * (in_cols / sw) + x / sw, so that a tap's
// strided reads along a row are one contiguous run (tap_column_start); with
// sw = 1 that is the plain layout.
template <typename T, typename Acc>
void stage_input_plane(const T* src, const PlaneShape& s, const Geometry& g, Acc* buf) {
  if (s.stride_w == 1) {
    stage_plane(src, s.in_height, s.in_width, s.pad_h, s.pad_w, buf, g.in_rows, g.in_cols);
    return;
  }
  const int64_t phase_cols = g.in_cols / s.stride_w;
  for (int64_t r = 0; r < g.in_rows; ++r) {
    Acc* dst = buf + r * g.in_cols;
    const int64_t src_row = r - s.pad_h;
    if (src_row < 0 || src_row >= s.in_height) {
      std::memset(dst, 0, sizeof(Acc) * g.in_cols);
      continue;
    }
    const T* src_line = src + src_row * s.in_width;
    for (int64_t phase = 0; phase < s.stride_w; ++phase) {
      Acc* run = dst + phase * phase_cols;
      for (int64_t m = 0, col = phase - s.pad_w; m < phase_cols; ++m, col += s.stride_w) {
        run[m] = col >= 0 && col < s.in_width ? to_acc(src_line[col]) : Acc(0);
      }
    }
  }
}

// Where the reads of filter column j start in a row staged by
// stage_input_plane: input column c * sw + j * dw is entry c of that run.
inline int64_t tap_column_start(const PlaneShape& s, int64_t in_stride, int64_t j) {
  const int64_t x = j * s.dilation_w;
  return (x % s.stride_w) * (in_stride / s.stride_w) + x / s.stride_w;
}

template <typename T, typename Acc>
void store_plane(const Acc* buf, int64_t buf_cols, int64_t rows, int64_t cols,
                 T* dst) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      dst[r * cols + c] = Storage<T>::from_acc(buf[r * buf_cols + c]);
    }
  }
}

// Where a plane accumulates: in the output itself when it stores the
// accumulation type and its rows suit the kernel (whole vectors for the
// register-blocked kernels, anything for the general loops), otherwise in
// scratch that is then converted and stored.
template <typename T>
bool accumulates_in_place(bool blocked, int64_t width) {
  return Storage<T>::kIsAcc && (!blocked || width % Simd::kLanes == 0);
}

template <typename T, typename Acc>
Acc* accumulator(T* plane, bool in_place, Acc* scratch) {
  if constexpr (Storage<T>::kIsAcc) {
    if (in_place) return plane;
  }
  return scratch;
}

template <typename Acc>
void fill(Acc* buf, int64_t count, Acc value) {
  for (int64_t i = 0; i < count; ++i) buf[i] = value;
}

// Converts count filter taps, reversing each kH x kW filter when flipped.
template <typename T, typename Acc>
void load_filters(const T* src, int64_t filters, int64_t taps, bool flipped,
                  Acc* dst) {
  for (int64_t f = 0; f < filters; ++f) {
    for (int64_t t = 0; t < taps; ++t) {
      dst[f * taps + t] = to_acc(src[f * taps + (flipped ? taps - 1 - t : t)]);
    }
  }
}

// ---------------------------------------------------------------------------
// Register-blocked kernels (float, stride 1, K x K filter). Column dilation
// only spaces the taps' loads; row dilation d splits the rows into d phases
// (rows r = p mod d meet only input rows of phase p), each a problem with row
// dilation 1 over every d-th row. ColStep says where filter column j's reads
// start (column_offset): j times the column dilation, a compile-time 1 in the
// common case (a runtime step costs registers) or an int64_t; or, for a
// strided forward, ColumnPhases.

template <typename Step>
inline int64_t column_offset(int j, Step dilation_w) {
  return j * dilation_w;
}

// tap_column_start of each filter column, computed once per plane; 7 is the
// largest filter size the register-blocked kernels take (blocked_kernel_size).
struct ColumnPhases {
  int64_t start[7];
};
inline int64_t column_offset(int j, const ColumnPhases& phases) { return phases.start[j]; }

// Adds input row i of a tile to the output rows r in [r_begin, r_end), which
// it meets through filter row i - r. Each input vector is loaded once and
// feeds all those rows.
template <int K, int R, int CV, typename ColStep>
__attribute__((always_inline)) inline void correlate_input_row(
    const float* row, ColStep dilation_w, const float* w, int i, int r_begin, int r_end,
    typename Simd::V (&acc)[R][CV]) {
  using V = typename Simd::V;
  constexpr int L = Simd::kLanes;
#pragma GCC unroll 8
  for (int j = 0; j < K; ++j) {
    V taps[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      taps[r] = (r >= r_begin && r < r_end) ? Simd::broadcast(w[(i - r) * K + j]) : Simd::zero();
    }
#pragma GCC unroll 8
    for (int c = 0; c < CV; ++c) {
      const V x = Simd::in_register(Simd::load(row + column_offset(j, dilation_w) + c * L));
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        if (r >= r_begin && r < r_end) acc[r][c] = Simd::fma(taps[r], x, acc[r][c]);
      }
    }
  }
}

// out[r][c] += sum_{i,j} w[i][j] * in[r + i][c + j] for an R-row by
// CV-vector tile: (R + K - 1) * K * CV vector loads for R * K * K * CV fused
// multiply-adds. The first and last R - 1 input rows reach only some output
// rows (unrolled, so the bounds are constants); the rows between reach all
// R and run as a loop, which keeps the taps out of the registers the
// accumulators need.
template <int K, int R, int CV, typename ColStep>
inline void correlate_tile(const float* in, int64_t in_stride, ColStep dilation_w,
                           const float* w, float* out, int64_t out_stride) {
  using V = typename Simd::V;
  constexpr int L = Simd::kLanes;
  constexpr int kFirstFull = R - 1;
  constexpr int kLastFull = K - 1;
  V acc[R][CV];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int c = 0; c < CV; ++c) acc[r][c] = Simd::load(out + r * out_stride + c * L);
  }
#pragma GCC unroll 16
  for (int i = 0; i < kFirstFull && i < R + K - 1; ++i) {
    correlate_input_row<K, R, CV>(in + i * in_stride, dilation_w, w, i,
                                  i - K + 1 > 0 ? i - K + 1 : 0,
                                  i + 1 < R ? i + 1 : R, acc);
  }
#pragma GCC unroll 1
  for (int i = kFirstFull; i <= kLastFull; ++i) {
    correlate_input_row<K, R, CV>(in + i * in_stride, dilation_w, w, i, 0, R, acc);
  }
#pragma GCC unroll 16
  for (int i = kFirstFull > kLastFull ? kFirstFull : kLastFull + 1; i < R + K - 1; ++i) {
    correlate_input_row<K, R, CV>(in + i * in_stride, dilation_w, w, i,
                                  i - K + 1 > 0 ? i - K + 1 : 0,
                                  i + 1 < R ? i + 1 : R, acc);
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int c = 0; c < CV; ++c) Simd::store(out + r * out_stride + c * L, acc[r][c]);
  }
}

template <int K, int R, typename ColStep>
void correlate_rows(const float* in, int64_t in_stride, ColStep dilation_w, const float* w,
                    float* out, int64_t out_stride, int64_t vectors) {
  constexpr int L = Simd::kLanes;
  constexpr int CV = Simd::kColBlock;
  int64_t v = 0;
  for (; v + CV <= vectors; v += CV) {
    correlate_tile<K, R, CV>(in + v * L, in_stride, dilation_w, w, out + v * L, out_stride);
  }
  if constexpr (CV > 2) {
    for (; v + 2 <= vectors; v += 2) {
      correlate_tile<K, R, 2>(in + v * L, in_stride, dilation_w, w, out + v * L, out_stride);
    }
  }
  for (; v < vectors; ++v) {
    correlate_tile<K, R, 1>(in + v * L, in_stride, dilation_w, w, out + v * L, out_stride);
  }
}

template <int K, typename ColStep>
void correlate_fast(const float* in, int64_t in_stride, const float* w, float* out,
                    int64_t out_stride, int64_t rows, int64_t vectors, int64_t dilation_h,
                    ColStep dilation_w) {
  constexpr int R = Simd::kRowBlock;
  for (int64_t phase = 0; phase < dilation_h && phase < rows; ++phase) {
    const float* phase_in = in + phase * in_stride;
    float* phase_out = out + phase * out_stride;
    const int64_t step_in = in_stride * dilation_h;
    const int64_t step_out = out_stride * dilation_h;
    const int64_t phase_rows = (rows - phase + dilation_h - 1) / dilation_h;
    int64_t r = 0;
    for (; r + R <= phase_rows; r += R) {
      correlate_rows<K, R>(phase_in + r * step_in, step_in, dilation_w, w,
                           phase_out + r * step_out, step_out, vectors);
    }
    for (; r < phase_rows; ++r) {
      correlate_rows<K, 1>(phase_in + r * step_in, step_in, dilation_w, w,
                           phase_out + r * step_out, step_out, vectors);
    }
  }
}

// A strided forward: output row r reads input rows r * sh + i * dh, so
// neighbouring output rows share no input row as they do at stride 1. Tiles
// of one row by up to kColBlock vectors; in the column phases of the staged
// input each tap's reads are contiguous.
template <int K>
void correlate_strided(const float* in, int64_t in_stride, const float* w, const PlaneShape& s,
                       float* out, int64_t out_stride, int64_t vectors) {
  ColumnPhases phases{};
  for (int j = 0; j < K; ++j) phases.start[j] = tap_column_start(s, in_stride, j);
  for (int64_t r = 0; r < s.out_height; ++r) {
    correlate_rows<K, 1>(in + r * s.stride_h * in_stride, in_stride * s.dilation_h, phases, w,
                         out + r * out_stride, out_stride, vectors);
  }
}

// grad_w[kh][kw] = sum_{r,c} go[r][c] * in[r + kh * dh][c + kw * dw] for the
// KB filter rows kh0 .. kh0 + KB - 1, one row phase at a time (see above).
// Walking the input rows, each loaded input vector meets the KB grad_output
// rows that reach it; go needs (KB - 1) * dh zero rows above and below (the
// staging margin).
template <int K, int KB, typename ColStep>
void weight_grad_rows(const float* in, int64_t in_stride, const float* go,
                      int64_t go_stride, int64_t rows, int64_t vectors,
                      int64_t dilation_h, ColStep dilation_w, int kh0, float* grad_w) {
  using V = typename Simd::V;
  constexpr int L = Simd::kLanes;
  V acc[KB][K];
#pragma GCC unroll 8
  for (int b = 0; b < KB; ++b) {
#pragma GCC unroll 8
    for (int j = 0; j < K; ++j) acc[b][j] = Simd::zero();
  }
  const int64_t step_in = in_stride * dilation_h;
  const int64_t step_go = go_stride * dilation_h;
  for (int64_t phase = 0; phase < dilation_h && phase < rows; ++phase) {
    const int64_t phase_rows = (rows - phase + dilation_h - 1) / dilation_h;
    for (int64_t ih = kh0; ih < kh0 + KB - 1 + phase_rows; ++ih) {
      const float* in_row = in + phase * in_stride + ih * step_in;
      const float* go_row = go + phase * go_stride + (ih - kh0) * step_go;
      for (int64_t v = 0; v < vectors; ++v) {
        V g[KB];
#pragma GCC unroll 8
        for (int b = 0; b < KB; ++b) g[b] = Simd::load(go_row - b * step_go + v * L);
#pragma GCC unroll 8
        for (int j = 0; j < K; ++j) {
          const V x = Simd::in_register(Simd::load(in_row + v * L + j * dilation_w));
#pragma GCC unroll 8
          for (int b = 0; b < KB; ++b) acc[b][j] = Simd::fma(g[b], x, acc[b][j]);
        }
      }
    }
  }
#pragma GCC unroll 8
  for (int b = 0; b < KB; ++b) {
#pragma GCC unroll 8
    for (int j = 0; j < K; ++j) grad_w[(kh0 + b) * K + j] = Simd::sum(acc[b][j]);
  }
}

template <int K, typename ColStep>
void weight_grad_fast(const float* in, int64_t in_stride, const float* go,
                      int64_t go_stride, int64_t rows, int64_t vectors,
                      int64_t dilation_h, ColStep dilation_w, float* grad_w) {
  constexpr int KB = Simd::kWeightRowBlock < K ? Simd::kWeightRowBlock : K;
  int kh0 = 0;
  for (; kh0 + KB <= K; kh0 += KB) {
    weight_grad_rows<K, KB>(in, in_stride, go, go_stride, rows, vectors, dilation_h,
                            dilation_w, kh0, grad_w);
  }
  for (; kh0 < K; ++kh0) {
    weight_grad_rows<K, 1>(in, in_stride, go, go_stride, rows, vectors, dilation_h,
                           dilation_w, kh0, grad_w);
  }
}

// ---------------------------------------------------------------------------
// General loops: any filter size, stride, dilation and padding.

// out[r][c] += sum_{i,j} w[i][j] * in[r * sh + i * dh][c * sw + j * dw],
// the input staged by stage_input_plane.
template <typename Acc>
void correlate_general(const Acc* in, int64_t in_stride, const Acc* w,
                       const PlaneShape& s, Acc* out, int64_t out_stride) {
  for (int64_t i = 0; i < s.kernel_h; ++i) {
    for (int64_t j = 0; j < s.kernel_w; ++j) {
      const Acc tap = w[i * s.kernel_w + j];
      const int64_t column = tap_column_start(s, in_stride, j);
      for (int64_t r = 0; r < s.out_height; ++r) {
        const Acc* src = in + (r * s.stride_h + i * s.dilation_h) * in_stride + column;
        Acc* dst = out + r * out_stride;
        for (int64_t c = 0; c < s.out_width; ++c) dst[c] += tap * src[c];
      }
    }
  }
}

template <typename Acc>
void weight_grad_general(const Acc* in, int64_t in_stride, const Acc* go,
                         int64_t go_stride, const PlaneShape& s, Acc* grad_w) {
  for (int64_t i = 0; i < s.kernel_h; ++i) {
    for (int64_t j = 0; j < s.kernel_w; ++j) {
      Acc sum = 0;
      const int64_t column = tap_column_start(s, in_stride, j);
      for (int64_t r = 0; r < s.out_height; ++r) {
        const Acc* src = in + (r * s.stride_h + i * s.dilation_h) * in_stride + column;
        const Acc* grad = go + r * go_stride;
        for (int64_t c = 0; c < s.out_width; ++c) sum += grad[c] * src[c];
      }
      grad_w[i * s.kernel_w + j] = sum;
    }
  }
}

// grad_in[y][x] += sum over taps (i, j) and the output pixel (r, c) they
// map to, r * sh = y + ph - i * dh and c * sw = x + pw - j * dw: a gather.
template <typename Acc>
void input_grad_general(const Acc* go, int64_t go_stride, const Acc* w,
                        const PlaneShape& s, Acc* grad_in, int64_t grad_in_stride) {
  for (int64_t i = 0; i < s.kernel_h; ++i) {
    for (int64_t y = 0; y < s.in_height; ++y) {
      const int64_t t = y + s.pad_h - i * s.dilation_h;
      if (t < 0 || t % s.stride_h != 0 || t / s.stride_h >= s.out_height) continue;
      const Acc* grad = go + (t / s.stride_h) * go_stride;
      Acc* dst = grad_in + y * grad_in_stride;
      for (int64_t j = 0; j < s.kernel_w; ++j) {
        const Acc tap = w[i * s.kernel_w + j];
        const int64_t shift = s.pad_w - j * s.dilation_w;  // c * sw = x + shift
        int64_t x = shift < 0 ? -shift : 0;
        const int64_t misalignment = (x + shift) % s.stride_w;
        if (misalignment != 0) x += s.stride_w - misalignment;
        for (int64_t c = (x + shift) / s.stride_w; x < s.in_width && c < s.out_width;
             x += s.stride_w, ++c) {
          dst[x] += tap * grad[c];
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Dispatch between the two, per plane.

// Calls body(std::integral_constant<int, K>{}) for a register-blocked filter
// size k; false for 0 (the shape takes the general loops).
template <typename Body>
bool with_kernel_size(int k, Body&& body) {
  switch (k) {
    case 1: body(std::integral_constant<int, 1>{}); return true;
    case 3: body(std::integral_constant<int, 3>{}); return true;
    case 5: body(std::integral_constant<int, 5>{}); return true;
    case 7: body(std::integral_constant<int, 7>{}); return true;
    default: return false;
  }
}

// Calls body(step) with the column dilation as the fast kernels take it.
template <typename Body>
void with_column_step(const PlaneShape& s, Body&& body) {
  if (s.dilation_w == 1) {
    body(std::integral_constant<int64_t, 1>{});
  } else {
    body(s.dilation_w);
  }
}

template <typename Acc>
void correlate(const Acc* in, int64_t in_stride, const Acc* w,
               const PlaneShape& s, int64_t rows, int64_t cols, Acc* out,
               int64_t out_stride) {
  if constexpr (kIsFloat<Acc>) {
    const int64_t vectors = cols / Simd::kLanes;
    if (with_kernel_size(fast_kernel_size<Acc>(s), [&](auto k) {
          with_column_step(s, [&](auto step) {
            correlate_fast<decltype(k)::value>(in, in_stride, w, out, out_stride, rows, vectors,
                                               s.dilation_h, step);
          });
        })) {
      return;
    }
    if (with_kernel_size(blocked_kernel_size<Acc>(s), [&](auto k) {
          correlate_strided<decltype(k)::value>(in, in_stride, w, s, out, out_stride, vectors);
        })) {
      return;
    }
  }
  correlate_general(in, in_stride, w, s, out, out_stride);
}

template <typename Acc>
void weight_grad(const Acc* in, int64_t in_stride, const Acc* go,
                 int64_t go_stride, const PlaneShape& s, int64_t cols,
                 Acc* grad_w) {
  if constexpr (kIsFloat<Acc>) {
    const int64_t vectors = cols / Simd::kLanes;
    if (with_kernel_size(fast_kernel_size<Acc>(s), [&](auto k) {
          with_column_step(s, [&](auto step) {
            weight_grad_fast<decltype(k)::value>(in, in_stride, go, go_stride, s.out_height,
                                                 vectors, s.dilation_h, step, grad_w);
          });
        })) {
      return;
    }
  }
  weight_grad_general(in, in_stride, go, go_stride, s, grad_w);
}

// Accumulates one grad_output plane's contribution to grad_input. go_buf is
// the staged plane with its margin; taps are flipped for the fast path.
template <typename Acc>
void input_grad(const Acc* go_buf, const Geometry& g, const Acc* taps,
                const PlaneShape& s, Acc* grad_in, int64_t grad_in_stride) {
  if (fast_kernel_size<Acc>(s) != 0) {
    // With the margin, the flipped correlation reads grad_output padded by
    // (k - 1) * dilation - pad, which starts pad rows and columns into the
    // staged plane.
    const Acc* padded = go_buf + s.pad_h * g.go_cols + s.pad_w;
    correlate(padded, g.go_cols, taps, s, s.in_height, g.grad_in_cols, grad_in, grad_in_stride);
    return;
  }
  input_grad_general(go_buf + g.go_top * g.go_cols + g.go_left, g.go_cols, taps, s,
                     grad_in, grad_in_stride);
}

template <typename Acc>
Acc plane_sum(const Acc* plane, int64_t stride, int64_t rows, int64_t cols) {
  if constexpr (kIsFloat<Acc>) {
    // cols is whole vectors here: the staged grad_output rows end in zeros.
    auto sum = Simd::zero();
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; c += Simd::kLanes) {
        sum = Simd::add(sum, Simd::load(plane + r * stride + c));
      }
    }
    return Simd::sum(sum);
  } else {
    Acc sum = 0;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) sum += plane[r * stride + c];
    }
    return sum;
  }
}

// ---------------------------------------------------------------------------
// Work items.

template <typename T>
void forward_planes(const ForwardArgs& a, int64_t begin, int64_t end) {
  using Acc = AccOf<T>;
  const PlaneShape& s = a.shape;
  const Geometry g(s);
  const int64_t in_per_group = s.in_channels / s.groups;
  const int64_t out_per_group = s.out_channels / s.groups;
  const int64_t taps = s.kernel_h * s.kernel_w;
  const auto* input = static_cast<const T*>(a.input);
  const auto* weight = static_cast<const T*>(a.weight);
  const auto* bias = static_cast<const T*>(a.bias);
  auto* output = static_cast<T*>(a.output);

  const bool in_place = accumulates_in_place<T>(blocked_kernel_size<Acc>(s) != 0, s.out_width);
  const int64_t acc_stride = in_place ? s.out_width : g.out_cols;
  StagedGroup<Acc> staged(in_per_group, g.in_rows * g.in_cols);
  Scratch<Acc> out_buf(in_place ? 0 : s.out_height * g.out_cols);
  Scratch<Acc> filters(in_per_group * taps);
  for (int64_t item = begin; item < end; ++item) {
    const int64_t n = item / s.out_channels;
    const int64_t oc = item % s.out_channels;
    const int64_t group = oc / out_per_group;
    const Acc b = bias == nullptr ? Acc(0)
                                  : to_acc(bias[a.bias_per_sample ? item : oc]);
    T* out_plane = output + item * s.out_height * s.out_width;
    Acc* acc = accumulator(out_plane, in_place, out_buf.get());
    fill(acc, s.out_height * acc_stride, b);
    load_filters(weight + item * in_per_group * taps, in_per_group, taps, false, filters.get());
    if (staged.needs_staging(n * s.groups + group)) {
      for (int64_t icg = 0; icg < in_per_group; ++icg) {
        const T* plane =
            input + (n * s.in_channels + group * in_per_group + icg) * s.in_height * s.in_width;
        stage_input_plane(plane, s, g, staged.plane(icg));
      }
    }
    for (int64_t icg = 0; icg < in_per_group; ++icg) {
      correlate(staged.plane(icg), g.in_cols, filters.get() + icg * taps, s, s.out_height,
                g.out_cols, acc, acc_stride);
    }
    if (!in_place) store_plane(acc, acc_stride, s.out_height, s.out_width, out_plane);
  }
}

template <typename T>
void backward_output_planes_typed(const BackwardArgs& a, int64_t begin, int64_t end) {
  using Acc = AccOf<T>;
  const PlaneShape& s = a.shape;
  const Geometry g(s);
  const bool depthwise = s.groups == s.in_channels && s.out_channels == s.in_channels;
  const bool want_input = depthwise && a.grad_input != nullptr;
  const int64_t in_per_group = s.in_channels / s.groups;
  const int64_t out_per_group = s.out_channels / s.groups;
  const int64_t taps = s.kernel_h * s.kernel_w;
  const int64_t in_plane = s.in_height * s.in_width;
  const auto* grad_output = static_cast<const T*>(a.grad_output);
  const auto* input = static_cast<const T*>(a.input);
  const auto* weight = static_cast<const T*>(a.weight);

  Scratch<Acc> go_buf(g.go_rows * g.go_cols);
  StagedGroup<Acc> staged_input(a.grad_weight != nullptr ? in_per_group : 0,
                                g.in_rows * g.in_cols);
  Scratch<Acc> grad_w(in_per_group * taps);
  const bool in_place = accumulates_in_place<T>(fast_kernel_size<Acc>(s) != 0, s.in_width);
  const int64_t grad_in_stride = in_place ? s.in_width : g.grad_in_cols;
  Scratch<Acc> grad_in_buf(want_input && !in_place ? s.in_height * g.grad_in_cols : 0);
  Scratch<Acc> filter(taps);
  for (int64_t item = begin; item < end; ++item) {
    const int64_t n = item / s.out_channels;
    const int64_t oc = item % s.out_channels;
    stage_plane(grad_output + item * s.out_height * s.out_width, s.out_height, s.out_width,
                g.go_top, g.go_left, go_buf.get(), g.go_rows, g.go_cols);
    const Acc* go = go_buf.get() + g.go_top * g.go_cols + g.go_left;
    if (a.grad_bias != nullptr) {
      static_cast<T*>(a.grad_bias)[item] =
          Storage<T>::from_acc(plane_sum(go, g.go_cols, s.out_height, g.out_cols));
    }
    if (a.grad_weight != nullptr) {
      const int64_t group = oc / out_per_group;
      if (staged_input.needs_staging(n * s.groups + group)) {
        for (int64_t icg = 0; icg < in_per_group; ++icg) {
          const T* plane = input + (n * s.in_channels + group * in_per_group + icg) * in_plane;
          stage_input_plane(plane, s, g, staged_input.plane(icg));
        }
      }
      for (int64_t icg = 0; icg < in_per_group; ++icg) {
        weight_grad(staged_input.plane(icg), g.in_cols, go, g.go_cols, s, g.out_cols,
                    grad_w.get() + icg * taps);
      }
      store_plane(grad_w.get(), taps, in_per_group, taps,
                  static_cast<T*>(a.grad_weight) + item * in_per_group * taps);
    }
    if (want_input) {
      T* grad_in_plane = static_cast<T*>(a.grad_input) + item * in_plane;
      Acc* grad_in = accumulator(grad_in_plane, in_place, grad_in_buf.get());
      load_filters(weight + item * taps, 1, taps, fast_kernel_size<Acc>(s) != 0, filter.get());
      fill(grad_in, s.in_height * grad_in_stride, Acc(0));
      input_grad(go_buf.get(), g, filter.get(), s, grad_in, grad_in_stride);
      if (!in_place) store_plane(grad_in, grad_in_stride, s.in_height, s.in_width, grad_in_plane);
    }
  }
}

template <typename T>
void backward_input_planes_typed(const BackwardArgs& a, int64_t begin, int64_t end) {
  using Acc = AccOf<T>;
  const PlaneShape& s = a.shape;
  const Geometry g(s);
  const int64_t in_per_group = s.in_channels / s.groups;
  const int64_t out_per_group = s.out_channels / s.groups;
  const int64_t taps = s.kernel_h * s.kernel_w;
  const auto* grad_output = static_cast<const T*>(a.grad_output);
  const auto* weight = static_cast<const T*>(a.weight);
  const bool flipped = fast_kernel_size<Acc>(s) != 0;

  const bool in_place = accumulates_in_place<T>(fast_kernel_size<Acc>(s) != 0, s.in_width);
  const int64_t grad_in_stride = in_place ? s.in_width : g.grad_in_cols;
  StagedGroup<Acc> staged_grad_output(out_per_group, g.go_rows * g.go_cols);
  Scratch<Acc> grad_in_buf(in_place ? 0 : s.in_height * g.grad_in_cols);
  Scratch<Acc> filter(taps);
  for (int64_t item = begin; item < end; ++item) {
    const int64_t n = item / s.in_channels;
    const int64_t ic = item % s.in_channels;
    const int64_t group = ic / in_per_group;
    const int64_t first_oc = group * out_per_group;
    const int64_t icg = ic % in_per_group;
    T* grad_in_plane = static_cast<T*>(a.grad_input) + item * s.in_height * s.in_width;
    Acc* grad_in = accumulator(grad_in_plane, in_place, grad_in_buf.get());
    fill(grad_in, s.in_height * grad_in_stride, Acc(0));
    if (staged_grad_output.needs_staging(n * s.groups + group)) {
      for (int64_t ocg = 0; ocg < out_per_group; ++ocg) {
        const int64_t out_item = n * s.out_channels + first_oc + ocg;
        stage_plane(grad_output + out_item * s.out_height * s.out_width, s.out_height,
                    s.out_width, g.go_top, g.go_left, staged_grad_output.plane(ocg), g.go_rows,
                    g.go_cols);
      }
    }
    for (int64_t ocg = 0; ocg < out_per_group; ++ocg) {
      const int64_t out_item = n * s.out_channels + first_oc + ocg;
      load_filters(weight + (out_item * in_per_group + icg) * taps, 1, taps, flipped,
                   filter.get());
      input_grad(staged_grad_output.plane(ocg), g, filter.get(), s, grad_in, grad_in_stride);
    }
    if (!in_place) store_plane(grad_in, grad_in_stride, s.in_height, s.in_width, grad_in_plane);
  }
}

// One entry per table slot, dispatching on the dtype.
template <template <typename> class Kernel, typename Args>
void for_dtype(const Args& a, int64_t begin, int64_t end) {
  switch (a.dtype) {
    case DType::kFloat: return Kernel<float>::run(a, begin, end);
    case DType::kDouble: return Kernel<double>::run(a, begin, end);
    case DType::kHalf: return Kernel<HalfBits>::run(a, begin, end);
    case DType::kBFloat16: return Kernel<BFloat16Bits>::run(a, begin, end);
  }
}

template <typename T>
struct ForwardKernel {
  static void run(const ForwardArgs& a, int64_t b, int64_t e) { forward_planes<T>(a, b, e); }
};
template <typename T>
struct BackwardOutputKernel {
  static void run(const BackwardArgs& a, int64_t b, int64_t e) {
    backward_output_planes_typed<T>(a, b, e);
  }
};
template <typename T>
struct BackwardInputKernel {
  static void run(const BackwardArgs& a, int64_t b, int64_t e) {
    backward_input_planes_typed<T>(a, b, e);
  }
};

PlaneKernels make_plane_kernels(const char* isa) {
  return PlaneKernels{isa, &for_dtype<ForwardKernel, ForwardArgs>,
                      &for_dtype<BackwardOutputKernel, BackwardArgs>,
                      &for_dtype<BackwardInputKernel, BackwardArgs>};
}

}  // namespace
}  // namespace mula::cpu
