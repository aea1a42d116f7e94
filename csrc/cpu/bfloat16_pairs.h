// Part of the per-plane CPU kernels (see plane_kernels_impl.h): the layouts
// in which a build whose float vectors multiply bfloat16 pairs
// (SimdF32::PairVector, kernels_avx512_bf16.cpp) runs bfloat16 convolutions.
// The channel-blocked tiles reduce over pairs of planes (BFloat16Pair: two
// planes' values at each pixel, and two planes' filters at each tap); the
// weight gradient over pairs of neighbouring pixels (plain bfloat16 rows);
// the depthwise tiles over pairs of neighbouring taps of a filter row (each
// pixel paired with the one a column-dilation step to its right).
// Each is staged straight from storage where the layout is the plain one
// (stage_plane's), and otherwise packed from the staged float planes, which
// hold bfloat16 values exactly, so packing drops only zero bits.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "plane_staging.h"

namespace mula::cpu {
namespace {

template <typename Vec, typename = void>
struct HasBFloat16Pairs : std::false_type {};
template <typename Vec>
struct HasBFloat16Pairs<Vec, std::void_t<typename Vec::PairVector>> : std::true_type {};

// Whether this build runs storage type T's fast paths on bfloat16 pairs.
template <typename T>
constexpr bool kPairedBFloat16 =
    std::is_same_v<T, BFloat16Bits> && HasBFloat16Pairs<SimdF32>::value;

inline uint32_t high_bits(float exact_bfloat16) {
  uint32_t bits;
  std::memcpy(&bits, &exact_bfloat16, sizeof bits);
  return bits >> 16;
}

// out[q][k] = (in[2q][k], in[2q + 1][k]) for `planes` float planes of
// `count` values (`stride` apart) into (planes + 1) / 2 planes (`out_stride`
// apart); an odd last plane is paired with zeros, which add nothing.
inline void pair_planes(const float* in, int64_t planes, int64_t count, int64_t stride,
                        BFloat16Pair* out, int64_t out_stride) {
  for (int64_t q = 0; 2 * q < planes; ++q) {
    const float* first = in + 2 * q * stride;
    const float* second = 2 * q + 1 < planes ? first + stride : nullptr;
    BFloat16Pair* dst = out + q * out_stride;
    for (int64_t k = 0; k < count; ++k) {
      dst[k].bits = high_bits(first[k]) | (second == nullptr ? 0u : high_bits(second[k]) << 16);
    }
  }
}

// out[t] = (first[t'], second[t']) for the `taps` taps of two filters in
// storage, t' = t or, flipped, taps - 1 - t; second may be null (zeros).
inline void pair_filters(const BFloat16Bits* first, const BFloat16Bits* second, int64_t taps,
                         bool flipped, BFloat16Pair* out) {
  for (int64_t t = 0; t < taps; ++t) {
    const int64_t from = flipped ? taps - 1 - t : t;
    out[t].bits = first[from].bits | (second == nullptr ? 0u : uint32_t{second[from].bits} << 16);
  }
}

// buf[r][c] = (x[r][c], x[r][c + offset]) where x is the plane staged with
// its zero margin (stage_plane's layout: x[r][c] = src[r - top][c - left]
// inside the source, zero elsewhere), straight from storage: the tap pairs
// of a depthwise filter row, offset = the column dilation.
template <typename Vec>
void stage_tap_pairs(const BFloat16Bits* src, int64_t rows, int64_t cols, int64_t top,
                     int64_t left, int64_t offset, BFloat16Pair* buf, int64_t buf_rows,
                     int64_t buf_cols) {
  // Where both values of a pair lie inside the source row: whole vectors,
  // the last one placed to end there (it may overlap the one before).
  constexpr int64_t L = Vec::kLanes;
  const int64_t inside_begin = clamp_to(left, 0, buf_cols);
  const int64_t inside_end = clamp_to(left + cols - offset, inside_begin, buf_cols);
  for (int64_t r = 0; r < buf_rows; ++r) {
    BFloat16Pair* dst = buf + r * buf_cols;
    const int64_t src_row = r - top;
    if (src_row < 0 || src_row >= rows) {
      std::memset(dst, 0, sizeof(BFloat16Pair) * buf_cols);
      continue;
    }
    const BFloat16Bits* line = src + src_row * cols;
    const auto value = [&](int64_t c) -> uint32_t {
      return c >= left && c - left < cols ? line[c - left].bits : 0u;
    };
    const auto scalar = [&](int64_t from, int64_t to) {
      for (int64_t c = from; c < to; ++c) dst[c].bits = value(c) | value(c + offset) << 16;
    };
    scalar(0, inside_begin);
    if (inside_end - inside_begin < L) {
      scalar(inside_begin, inside_end);
    } else {
      for (int64_t c = inside_begin;; c = min_of(c + L, inside_end - L)) {
        Vec::store(dst + c, Vec::pair_up(line + c - left, line + c - left + offset));
        if (c == inside_end - L) break;
      }
    }
    scalar(inside_end, buf_cols);
  }
}

// pairs[x] = (plane[x], plane[x + offset]) for the `count` values of a
// staged float plane of bfloat16 values ((plane[x], 0) past its end): the
// tap pairs of a plane staged in float.
template <typename Vec>
void pair_neighbours(const float* plane, int64_t count, int64_t offset, BFloat16Pair* pairs) {
  constexpr int64_t L = Vec::kLanes;
  const int64_t both = count > offset ? count - offset : 0;
  int64_t x = 0;
  for (; x + L <= both; x += L) Vec::store(pairs + x, Vec::pair_up(plane + x, plane + x + offset));
  for (; x < count; ++x) {
    pairs[x].bits = high_bits(plane[x]) | (x < both ? high_bits(plane[x + offset]) << 16 : 0u);
  }
}

// The filter pairs of the tap-pair tiles (blocked_kernels.h) from a k x k
// filter of float taps (bfloat16 values): row i's (taps[i][2p],
// taps[i][2p + 1]) and, for an odd k, (0, taps[i][k - 1]), (k + 1) / 2 per
// row.
inline void pair_taps(const float* taps, int64_t k, BFloat16Pair* out) {
  const int64_t per_row = (k + 1) / 2;
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t p = 0; p < per_row; ++p) {
      const float* tap = taps + i * k + 2 * p;
      out[i * per_row + p].bits =
          2 * p + 1 < k ? high_bits(tap[0]) | high_bits(tap[1]) << 16 : high_bits(tap[0]) << 16;
    }
  }
}

// buf[r][c] = (first[r - top][c - left], second[...]) where that is inside
// the source planes (rows x cols), zero elsewhere: stage_plane for a pair of
// planes; second may be null (zeros).
inline void stage_pair_plane(const BFloat16Bits* first, const BFloat16Bits* second, int64_t rows,
                             int64_t cols, int64_t top, int64_t left, BFloat16Pair* buf,
                             int64_t buf_rows, int64_t buf_cols) {
  stage_rows(rows, cols, top, left, buf, buf_rows, buf_cols,
             [&](int64_t src_row, int64_t begin, int64_t end, BFloat16Pair* dst) {
               const BFloat16Bits* a = first + src_row * cols - left;
               const BFloat16Bits* b = second == nullptr ? nullptr : second + src_row * cols - left;
               for (int64_t c = begin; c < end; ++c) {
                 dst[c].bits = a[c].bits | (b == nullptr ? 0u : uint32_t{b[c].bits} << 16);
               }
             });
}

// stage_plane into bfloat16 itself: a copy with the zero margin.
inline void stage_bits_plane(const BFloat16Bits* src, int64_t rows, int64_t cols, int64_t top,
                             int64_t left, BFloat16Bits* buf, int64_t buf_rows, int64_t buf_cols) {
  stage_rows(rows, cols, top, left, buf, buf_rows, buf_cols,
             [&](int64_t src_row, int64_t begin, int64_t end, BFloat16Bits* dst) {
               prefetch_next_plane_row(src, rows * cols, src_row, cols);
               std::memcpy(dst + begin, src + src_row * cols - left + begin,
                           sizeof(BFloat16Bits) * (end - begin));
             });
}

// Rows widened by kPairPadding zero columns: a weight-gradient vector of 32
// pixels that starts in a row's last 16 columns reads up to 16 of them; 32
// keep rows of a whole number of cache lines whole (aligned loads).
constexpr int64_t kPairPadding = 32;

// bfloat16 copies of `planes` float planes of `rows` rows of `cols` values
// (rows `cols` apart, planes `plane_stride` apart), each row followed by
// kPairPadding zeros: rows cols + kPairPadding apart, planes
// `out_plane_stride`.
inline void narrow_planes(const float* in, int64_t planes, int64_t plane_stride, int64_t rows,
                          int64_t cols, BFloat16Bits* out, int64_t out_plane_stride) {
  const int64_t out_cols = cols + kPairPadding;
  for (int64_t p = 0; p < planes; ++p) {
    for (int64_t r = 0; r < rows; ++r) {
      const float* src = in + p * plane_stride + r * cols;
      BFloat16Bits* dst = out + p * out_plane_stride + r * out_cols;
      for (int64_t c = 0; c < cols; ++c) dst[c].bits = static_cast<uint16_t>(high_bits(src[c]));
      std::memset(dst + cols, 0, sizeof(BFloat16Bits) * kPairPadding);
    }
  }
}

}  // namespace
}  // namespace mula::cpu
