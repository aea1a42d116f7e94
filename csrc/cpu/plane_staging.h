// Part of the per-plane CPU kernels (see plane_kernels_impl.h, which
// includes it after the ISA's vector types): scratch planes, the geometry
// of the staged planes, staging (copying a plane with its zero halo into the
// accumulation type) and storing (rounding back to the storage type).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "storage_types.h"

namespace mula::cpu {
namespace {

// The ISA's vector of the accumulation type.
template <typename Acc>
struct SimdOf;
template <>
struct SimdOf<float> {
  using type = SimdF32;
};
template <>
struct SimdOf<double> {
  using type = SimdF64;
};
template <typename Acc>
using SimdFor = typename SimdOf<Acc>::type;

// The scratch blocks a thread has released, kept for its next call: a
// call's scratch is the same every time, and memory the allocator maps
// afresh costs a page fault and a cleared page per 4 KiB on first touch
// (for a 1x1 or 3x3 convolution on small planes, a tenth of the call). At
// most kBlocks blocks of up to kLargest bytes each stay with a thread; under
// AddressSanitizer none, so that every array is an allocation of its own size.
class ScratchCache {
 public:
#ifdef __SANITIZE_ADDRESS__
  static constexpr size_t kBlocks = 0;
#else
  static constexpr size_t kBlocks = 16;
#endif
  static constexpr size_t kLargest = size_t{8} << 20;
  ScratchCache() = default;
  ScratchCache(const ScratchCache&) = delete;
  ScratchCache& operator=(const ScratchCache&) = delete;
  ~ScratchCache() {
    for (size_t i = 0; i < count_; ++i) std::free(blocks_[i].data);
  }
  // The smallest kept block of at least `bytes` (its size in `bytes`), or null.
  void* take(size_t& bytes) {
    size_t best = count_;
    for (size_t i = 0; i < count_; ++i) {
      if (blocks_[i].bytes >= bytes && (best == count_ || blocks_[i].bytes < blocks_[best].bytes)) {
        best = i;
      }
    }
    if (best == count_) return nullptr;
    void* data = blocks_[best].data;
    bytes = blocks_[best].bytes;
    blocks_[best] = blocks_[--count_];
    return data;
  }
  void give(void* data, size_t bytes) {
    if (count_ < kBlocks && bytes <= kLargest) {
      blocks_[count_++] = {data, bytes};
    } else {
      std::free(data);
    }
  }

 private:
  struct Block {
    void* data;
    size_t bytes;
  };
  Block blocks_[kBlocks > 0 ? kBlocks : 1];
  size_t count_ = 0;
};

inline ScratchCache& thread_scratch_cache() {
  thread_local ScratchCache cache;
  return cache;
}

// A scratch array owned by one call (one thread), reused for all its planes;
// its contents start undefined.
template <typename Acc>
class Scratch {
 public:
  explicit Scratch(int64_t count)
      : bytes_((static_cast<size_t>(count > 0 ? count : 1) * sizeof(Acc) + 63) / 64 * 64) {
    data_ = static_cast<Acc*>(thread_scratch_cache().take(bytes_));
    if (data_ == nullptr) data_ = static_cast<Acc*>(std::aligned_alloc(64, bytes_));
    if (data_ == nullptr) throw std::bad_alloc();
  }
  ~Scratch() { thread_scratch_cache().give(data_, bytes_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  Acc* get() { return data_; }

 private:
  size_t bytes_;
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

// The distance between scratch planes of `count` elements E: an odd number
// of cache lines, so that the planes a channel-blocked tile reads together
// fall into different sets of the L1 cache (at a multiple of 4 KiB, e.g. a
// 32x32 float plane, the same row of every plane maps to one set and they
// evict each other).
template <typename E>
int64_t plane_stride_of(int64_t count) {
  constexpr int64_t kLine = 64;
  const int64_t lines = (count * int64_t(sizeof(E)) + kLine - 1) / kLine;
  return (lines | 1) * kLine / int64_t(sizeof(E));
}

inline int64_t max_of(int64_t a, int64_t b) { return a > b ? a : b; }
inline int64_t min_of(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t clamp_to(int64_t value, int64_t low, int64_t high) {
  return value < low ? low : (value > high ? high : value);
}

// The filter size the register-blocked forward takes for this shape, or 0:
// a square 1x1, 3x3, 5x5 or 7x7 filter, any stride and dilation.
inline int blocked_kernel_size(const ConvShape& s) {
  if (s.kernel_h != s.kernel_w) return 0;
  const int64_t k = s.kernel_h;
  return (k == 1 || k == 3 || k == 5 || k == 7) ? static_cast<int>(k) : 0;
}

// The same for the stride-1 kernels, which also serve the backward (the
// weight reduction, and grad_input as the flipped correlation).
inline int fast_kernel_size(const ConvShape& s) {
  return s.stride_h == 1 && s.stride_w == 1 ? blocked_kernel_size(s) : 0;
}

// Whether a strided backward runs as the stride-1 backward over grad_output
// spread out to the stride-1 grid (stage_spread_plane), which the
// register-blocked kernels take: the gather then needs no divisions, at the
// price of stride_h * stride_w times the multiply-adds.
inline bool spreads_grad_output(const ConvShape& s) {
  return (s.stride_h != 1 || s.stride_w != 1) && blocked_kernel_size(s) != 0 && s.out_height > 0 &&
         s.out_width > 0;
}

// The shape the backward computes: the spread shape (stride 1, an output
// row and column for every input position a strided output lands on) or s.
inline ConvShape backward_shape(const ConvShape& s) {
  if (!spreads_grad_output(s)) return s;
  ConvShape spread = s;
  spread.out_height = (s.out_height - 1) * s.stride_h + 1;
  spread.out_width = (s.out_width - 1) * s.stride_w + 1;
  spread.stride_h = spread.stride_w = 1;
  return spread;
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

  explicit Geometry(const ConvShape& s) {
    const int64_t lanes = SimdF32::kLanes;  // a multiple of SimdF64's
    out_cols = round_up(s.out_width, lanes);
    in_rows = s.in_height + 2 * s.pad_h;
    in_cols = round_up(
        max_of(s.in_width + 2 * s.pad_w, out_cols * s.stride_w + (s.kernel_w - 1) * s.dilation_w),
        s.stride_w);
    grad_in_cols = round_up(s.in_width, lanes);
    go_top = (s.kernel_h - 1) * s.dilation_h;
    go_left = (s.kernel_w - 1) * s.dilation_w;
    go_rows = max_of(go_top + s.out_height, s.pad_h + s.in_height) + go_top;
    go_cols = max_of(go_left + out_cols, s.pad_w + grad_in_cols) + go_left;
  }
};

// dst[c] = src[c] converted to the accumulation type, c < count.
template <typename T, typename Acc>
void widen_row(const T* src, Acc* dst, int64_t count) {
  using Vec = SimdFor<Acc>;
  int64_t c = 0;
  for (; c + Vec::kLanes <= count; c += Vec::kLanes) Vec::store(dst + c, Vec::widen(src + c));
  for (; c < count; ++c) dst[c] = to_acc(src[c]);
}

// dst[c] = src[c] rounded to the storage type, c < count.
template <typename T, typename Acc>
void narrow_row(const Acc* src, T* dst, int64_t count) {
  using Vec = SimdFor<Acc>;
  int64_t c = 0;
  for (; c + Vec::kLanes <= count; c += Vec::kLanes) Vec::narrow(dst + c, Vec::load(src + c));
  for (; c < count; ++c) dst[c] = Storage<T>::from_acc(src[c]);
}

// Asks for row `row` (`cols` values) of the plane after `plane` (of
// `plane_size` values) to come into the caches (L2 and up), without waiting
// for it. Staging calls it for each row it copies, as every caller stages a
// tensor's planes in their order in memory: a small plane is a burst of
// loads too short for the hardware prefetcher to run ahead of, and the next
// plane now arrives while this one is computed (this made the depthwise
// backward on 32x32 float64 planes 1.6x faster, and most others 1.1x). The
// tap-pair staging of the bfloat16 forward does without: it came out slower.
// The address is an integer and a prefetch never faults, so the plane past
// a tensor's last costs only the requests.
template <typename T>
void prefetch_next_plane_row(const T* plane, int64_t plane_size, int64_t row, int64_t cols) {
  const uintptr_t begin = reinterpret_cast<uintptr_t>(plane) + sizeof(T) * (plane_size + row * cols);
  const uintptr_t end = begin + sizeof(T) * cols;
  for (uintptr_t line = begin & ~uintptr_t{63}; line < end; line += 64) {
    __builtin_prefetch(reinterpret_cast<const void*>(line), 0, 2);
  }
}

// A source plane (rows x cols) placed at (top, left) in buf (buf_rows x
// buf_cols), zero outside it: copy(src_row, begin, end, dst) fills
// dst[begin, end) of each buffer row that holds source row src_row, from
// source columns begin - left .. end - left.
template <typename E, typename Copy>
void stage_rows(int64_t rows, int64_t cols, int64_t top, int64_t left, E* buf, int64_t buf_rows,
                int64_t buf_cols, Copy&& copy) {
  const int64_t begin = clamp_to(left, 0, buf_cols);
  const int64_t end = clamp_to(left + cols, 0, buf_cols);
  for (int64_t r = 0; r < buf_rows; ++r) {
    E* dst = buf + r * buf_cols;
    const int64_t src_row = r - top;
    if (src_row < 0 || src_row >= rows) {
      std::memset(dst, 0, sizeof(E) * buf_cols);
      continue;
    }
    std::memset(dst, 0, sizeof(E) * begin);
    copy(src_row, begin, end, dst);
    std::memset(dst + end, 0, sizeof(E) * (buf_cols - end));
  }
}

// buf[r][c] = src[r - top][c - left] where that is inside the source plane,
// zero elsewhere; converts to the accumulation type.
template <typename T, typename Acc>
void stage_plane(const T* src, int64_t rows, int64_t cols, int64_t top, int64_t left, Acc* buf,
                 int64_t buf_rows, int64_t buf_cols) {
  stage_rows(rows, cols, top, left, buf, buf_rows, buf_cols,
             [&](int64_t src_row, int64_t begin, int64_t end, Acc* dst) {
               prefetch_next_plane_row(src, rows * cols, src_row, cols);
               widen_row(src + src_row * cols - left + begin, dst + begin, end - begin);
             });
}

// A strided convolution's grad_output spread out to the stride-1 grid:
// buf[top + r * sh][left + c * sw] = src[r][c], zero elsewhere. On that grid
// the strided backward is the stride-1 backward (backward_shape).
template <typename T, typename Acc>
void stage_spread_plane(const T* src, const ConvShape& s, int64_t top, int64_t left, Acc* buf,
                        int64_t buf_rows, int64_t buf_cols) {
  std::memset(buf, 0, sizeof(Acc) * buf_rows * buf_cols);
  for (int64_t r = 0; r < s.out_height; ++r) {
    prefetch_next_plane_row(src, s.out_height * s.out_width, r, s.out_width);
    Acc* dst = buf + (top + r * s.stride_h) * buf_cols + left;
    const T* src_line = src + r * s.out_width;
    for (int64_t c = 0; c < s.out_width; ++c) dst[c * s.stride_w] = to_acc(src_line[c]);
  }
}

// dst[phase * phase_cols + m] = padded[phase + m * 2], where padded is the
// source row (width values) after `pad` zeros and followed by zeros: a row
// split into its two column phases, the middle with vector shuffles of the
// source itself. (Shuffling a padded copy written just before stalled: its
// aligned loads straddle the unaligned stores, which the CPU cannot forward.)
template <typename T, typename Acc>
void split_in_two_phases(const T* src, int64_t width, int64_t pad, int64_t phase_cols, Acc* dst) {
  using Vec = SimdFor<Acc>;
  constexpr int64_t L = Vec::kLanes;
  Acc* odd = dst + phase_cols;
  const auto padded = [&](int64_t x) {
    return x >= pad && x < pad + width ? to_acc(src[x - pad]) : Acc(0);
  };
  int64_t m = 0;
  for (; m < phase_cols && 2 * m < pad; ++m) {
    dst[m] = padded(2 * m);
    odd[m] = padded(2 * m + 1);
  }
  // Whole vectors inside the source, the last one placed to end where the
  // source (or the row) ends: it may overlap the one before.
  const int64_t last = min_of(phase_cols - L, (pad + width) / 2 - L);
  if (m <= last) {
    for (int64_t at = m;; at = min_of(at + L, last)) {
      const T* pair = src + 2 * at - pad;
      typename Vec::V even_part, odd_part;
      Vec::deinterleave(Vec::widen(pair), Vec::widen(pair + L), even_part, odd_part);
      Vec::store(dst + at, even_part);
      Vec::store(odd + at, odd_part);
      if (at == last) break;
    }
    m = last + L;
  }
  for (; m < phase_cols; ++m) {
    dst[m] = padded(2 * m);
    odd[m] = padded(2 * m + 1);
  }
}

// dst[phase * phase_cols + m] = row[phase + m * stride]: a padded row split
// into its column phases.
template <typename Acc>
void split_phases(const Acc* row, int64_t stride, int64_t phase_cols, Acc* dst) {
  for (int64_t phase = 0; phase < stride; ++phase) {
    Acc* run = dst + phase * phase_cols;
    for (int64_t m = 0; m < phase_cols; ++m) run[m] = row[phase + m * stride];
  }
}

// The input plane with its padding halo, as the kernels read it. With a
// column stride sw > 1 each staged row holds its columns split into sw
// phases, column x at (x % sw) * (in_cols / sw) + x / sw, so that a tap's
// strided reads along a row are one contiguous run (tap_column_start); with
// sw = 1 that is the plain layout. `row` is scratch of g.in_cols values.
template <typename T, typename Acc>
void stage_input_plane(const T* src, const ConvShape& s, const Geometry& g, Acc* buf, Acc* row) {
  if (s.stride_w == 1) {
    stage_plane(src, s.in_height, s.in_width, s.pad_h, s.pad_w, buf, g.in_rows, g.in_cols);
    return;
  }
  const int64_t phase_cols = g.in_cols / s.stride_w;
  // Stride 2 splits the source rows themselves; other strides convert the
  // padded row once into `row`, and each phase picks every sw-th value.
  if (s.stride_w != 2) std::memset(row, 0, sizeof(Acc) * g.in_cols);
  for (int64_t r = 0; r < g.in_rows; ++r) {
    Acc* dst = buf + r * g.in_cols;
    const int64_t src_row = r - s.pad_h;
    if (src_row < 0 || src_row >= s.in_height) {
      std::memset(dst, 0, sizeof(Acc) * g.in_cols);
      continue;
    }
    prefetch_next_plane_row(src, s.in_height * s.in_width, src_row, s.in_width);
    if (s.stride_w == 2) {
      split_in_two_phases(src + src_row * s.in_width, s.in_width, s.pad_w, phase_cols, dst);
    } else {
      widen_row(src + src_row * s.in_width, row + s.pad_w, s.in_width);
      split_phases(row, s.stride_w, phase_cols, dst);
    }
  }
}

// Where the reads of filter column j start in a row staged by
// stage_input_plane: input column c * sw + j * dw is entry c of that run.
inline int64_t tap_column_start(const ConvShape& s, int64_t in_stride, int64_t j) {
  const int64_t x = j * s.dilation_w;
  return (x % s.stride_w) * (in_stride / s.stride_w) + x / s.stride_w;
}

// Rounds an accumulator plane (rows of buf_cols) into a plane of the storage
// type (rows of cols).
template <typename T, typename Acc>
void store_plane(const Acc* buf, int64_t buf_cols, int64_t rows, int64_t cols, T* dst) {
  for (int64_t r = 0; r < rows; ++r) narrow_row(buf + r * buf_cols, dst + r * cols, cols);
}

template <typename Acc>
void fill(Acc* buf, int64_t count, Acc value) {
  for (int64_t i = 0; i < count; ++i) buf[i] = value;
}

// Converts count filter taps, reversing each kH x kW filter when flipped.
template <typename T, typename Acc>
void load_filters(const T* src, int64_t filters, int64_t taps, bool flipped, Acc* dst) {
  for (int64_t f = 0; f < filters; ++f) {
    for (int64_t t = 0; t < taps; ++t) {
      dst[f * taps + t] = to_acc(src[f * taps + (flipped ? taps - 1 - t : t)]);
    }
  }
}

}  // namespace
}  // namespace mula::cpu
