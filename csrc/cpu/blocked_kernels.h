// Part of the per-plane CPU kernels (see plane_kernels_impl.h, which
// includes it after the ISA's vector types): the register-blocked, vectorised
// tiles, written once for float and double over a vector type `Vec` (the
// ISA's SimdF32 or SimdF64: SimdFor<Acc>).
#pragma once

#include <cstdint>
#include <type_traits>

#include "plane_staging.h"

namespace mula::cpu {
namespace {

// Whether Vec sums kLanes vectors at once (Vec::sum_each).
template <typename Vec, typename = void>
struct SumsEach : std::false_type {};
template <typename Vec>
struct SumsEach<Vec, std::void_t<decltype(Vec::sum_each(nullptr, nullptr))>> : std::true_type {};

// store(i, Vec::sum(v[i])) for i < count: kLanes vectors at a time where Vec
// sums them together (the same bits), one at a time otherwise.
template <typename Vec, typename Store>
__attribute__((always_inline)) inline void sum_each(const typename Vec::V* v, int count,
                                                    Store&& store) {
  int i = 0;
  if constexpr (SumsEach<Vec>::value) {
    typename Vec::Scalar sums[Vec::kLanes];
    for (; i + Vec::kLanes <= count; i += Vec::kLanes) {
      Vec::sum_each(v + i, sums);
      for (int k = 0; k < Vec::kLanes; ++k) store(i + k, sums[k]);
    }
  }
  for (; i < count; ++i) store(i, Vec::sum(v[i]));
}

// ---------------------------------------------------------------------------
// Register-blocked kernels (stride 1, K x K filter). Column dilation
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

// The common strided case, column stride 2 without column dilation: filter
// column j reads the phase j % 2 from its entry j / 2 on, so one runtime
// offset (where the odd phase starts) leaves the others constants.
struct StrideTwoColumns {
  int64_t odd;
};
inline int64_t column_offset(int j, StrideTwoColumns columns) {
  return (j % 2 != 0 ? columns.odd : 0) + j / 2;
}

// Adds input row i of a tile to the output rows r in [r_begin, r_end), which
// it meets through filter row i - S * r (S: the row stride). Each input
// vector is loaded once and feeds all those rows.
template <typename Vec, int K, int R, int CV, int S, typename ColStep>
__attribute__((always_inline)) inline void correlate_input_row(
    const typename Vec::Scalar* row, ColStep dilation_w, const typename Vec::Scalar* w, int i,
    int r_begin, int r_end, typename Vec::V (&acc)[R][CV]) {
  using V = typename Vec::V;
  constexpr int L = Vec::kLanes;
  // The same tap meets several input rows of a tile (through different
  // output rows): hiding where the filter is keeps the compiler from
  // holding every broadcast tap in a register across the unrolled rows,
  // which spilled the strided tiles.
  asm volatile("" : "+r"(w));
#pragma GCC unroll 8
  for (int j = 0; j < K; ++j) {
    V taps[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      taps[r] = (r >= r_begin && r < r_end) ? Vec::broadcast(w[(i - S * r) * K + j]) : Vec::zero();
    }
#pragma GCC unroll 8
    for (int c = 0; c < CV; ++c) {
      const V x = Vec::in_register(Vec::load(row + column_offset(j, dilation_w) + c * L));
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        if (r >= r_begin && r < r_end) acc[r][c] = Vec::fma(taps[r], x, acc[r][c]);
      }
    }
  }
}

// Depthwise bfloat16 on tap pairs (builds whose float vectors multiply
// bfloat16 pairs, bfloat16_pairs.h): the staged plane holds pairs[x] =
// (in[x], in[x + dilation_w]) (stage_tap_pairs), filter row i's taps 2p and
// 2p + 1 are one pair multiply-add against it, and an odd K's last tap reads
// the pair shifted to (0, in[x]) against the filter pair (0, w) (pair_taps).
// (K + 1) / 2 instructions per filter row instead of K, and no pair ever
// multiplies a value outside the filter's window (a zero tap times an
// infinity would be NaN). w holds (K + 1) / 2 filter pairs per row.
template <typename Vec, int K, int R, int CV, int S, typename ColStep>
__attribute__((always_inline)) inline void correlate_input_row(
    const BFloat16Pair* row, ColStep dilation_w, const BFloat16Pair* w, int i, int r_begin,
    int r_end, typename Vec::V (&acc)[R][CV]) {
  static_assert(S == 1, "tap pairs are a stride-1 kernel");
  using Pair = typename Vec::PairVector;
  constexpr int L = Vec::kLanes;
  constexpr int P = (K + 1) / 2;
  asm volatile("" : "+r"(w));
#pragma GCC unroll 4
  for (int p = 0; p < P; ++p) {
    Pair taps[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      taps[r] = Vec::broadcast((r >= r_begin && r < r_end) ? w[(i - r) * P + p] : BFloat16Pair{0});
    }
#pragma GCC unroll 8
    for (int c = 0; c < CV; ++c) {
      const Pair x = Vec::in_register(
          2 * p + 1 < K ? Vec::load(row + column_offset(2 * p, dilation_w) + c * L)
                        : Vec::low_to_high(Vec::load(row + column_offset(K - 1, dilation_w) + c * L)));
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        if (r >= r_begin && r < r_end) acc[r][c] = Vec::fma(taps[r], x, acc[r][c]);
      }
    }
  }
}

// The output rows of a tile that input row i meets: 0 <= i - S * r < K.
constexpr int first_row_met(int i, int K, int S) { return i - K + 1 > 0 ? (i - K + S) / S : 0; }
constexpr int end_row_met(int i, int R, int S) { return i / S + 1 < R ? i / S + 1 : R; }

// out[r][c] += sum_{i,j} w[i][j] * in[S * r + i][c + j] for an R-row by
// CV-vector tile: (S * (R - 1) + K) * K * CV vector loads for R * K * K * CV
// fused multiply-adds. The first and last input rows reach only some output
// rows (unrolled, so the bounds are constants); the rows between reach all
// R and run as a loop, which keeps the taps out of the registers the
// accumulators need.
template <typename Vec, int K, int R, int CV, int S, typename E, typename ColStep>
inline void correlate_tile(const E* in, int64_t in_stride, ColStep dilation_w, const E* w,
                           typename Vec::Scalar* out,
                           int64_t out_stride, const typename Vec::Scalar* init) {
  using V = typename Vec::V;
  constexpr int L = Vec::kLanes;
  constexpr int kRows = S * (R - 1) + K;
  constexpr int kFirstFull = S * (R - 1);
  constexpr int kLastFull = K - 1;
  V acc[R][CV];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int c = 0; c < CV; ++c) {
      acc[r][c] = init != nullptr ? Vec::broadcast(*init) : Vec::load(out + r * out_stride + c * L);
    }
  }
  // The row pointer steps down one row at a time, hidden from the compiler
  // at each step: otherwise it computes every input row's address (and,
  // with a runtime column offset, every row's odd-phase address) before the
  // tiles of a row of tiles, more than the general registers hold, and the
  // spilled addresses cost as much as the tile itself (AVX2, stride 2).
  const E* row = in;
  const auto next_row = [&] {
    row += in_stride;
    asm("" : "+r"(row));
  };
#pragma GCC unroll 16
  for (int i = 0; i < kFirstFull && i < kRows; ++i) {
    correlate_input_row<Vec, K, R, CV, S>(row, dilation_w, w, i, first_row_met(i, K, S),
                                          end_row_met(i, R, S), acc);
    next_row();
  }
#pragma GCC unroll 1
  for (int i = kFirstFull; i <= kLastFull; ++i) {
    correlate_input_row<Vec, K, R, CV, S>(row, dilation_w, w, i, 0, R, acc);
    next_row();
  }
#pragma GCC unroll 16
  for (int i = kFirstFull > kLastFull ? kFirstFull : kLastFull + 1; i < kRows; ++i) {
    correlate_input_row<Vec, K, R, CV, S>(row, dilation_w, w, i, first_row_met(i, K, S),
                                          end_row_met(i, R, S), acc);
    next_row();
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int c = 0; c < CV; ++c) Vec::store(out + r * out_stride + c * L, acc[r][c]);
  }
}

template <typename Vec, int K, int R, int S = 1, typename E, typename ColStep>
void correlate_rows(const E* in, int64_t in_stride, ColStep dilation_w, const E* w,
                    typename Vec::Scalar* out, int64_t out_stride,
                    int64_t vectors, const typename Vec::Scalar* init = nullptr) {
  constexpr int L = Vec::kLanes;
  constexpr int CV = Vec::kColBlock;
  int64_t v = 0;
  for (; v + CV <= vectors; v += CV) {
    correlate_tile<Vec, K, R, CV, S>(in + v * L, in_stride, dilation_w, w, out + v * L, out_stride,
                                     init);
  }
  if constexpr (CV > 2) {
    for (; v + 2 <= vectors; v += 2) {
      correlate_tile<Vec, K, R, 2, S>(in + v * L, in_stride, dilation_w, w, out + v * L, out_stride,
                                      init);
    }
  }
  for (; v < vectors; ++v) {
    correlate_tile<Vec, K, R, 1, S>(in + v * L, in_stride, dilation_w, w, out + v * L, out_stride,
                                    init);
  }
}

// E: the staged plane's element and the taps', Vec::Scalar or (tap pairs)
// BFloat16Pair.
template <typename Vec, int K, typename E, typename ColStep>
void correlate_fast(const E* in, int64_t in_stride, const E* w, typename Vec::Scalar* out,
                    int64_t out_stride, int64_t rows, int64_t vectors, int64_t dilation_h,
                    ColStep dilation_w, const typename Vec::Scalar* init) {
  constexpr int R = Vec::kRowBlock;
  for (int64_t phase = 0; phase < dilation_h && phase < rows; ++phase) {
    const E* phase_in = in + phase * in_stride;
    typename Vec::Scalar* phase_out = out + phase * out_stride;
    const int64_t step_in = in_stride * dilation_h;
    const int64_t step_out = out_stride * dilation_h;
    const int64_t phase_rows = (rows - phase + dilation_h - 1) / dilation_h;
    int64_t r = 0;
    for (; r + R <= phase_rows; r += R) {
      correlate_rows<Vec, K, R>(phase_in + r * step_in, step_in, dilation_w, w, phase_out + r * step_out,
                           step_out, vectors, init);
    }
    for (; r < phase_rows; ++r) {
      correlate_rows<Vec, K, 1>(phase_in + r * step_in, step_in, dilation_w, w, phase_out + r * step_out,
                           step_out, vectors, init);
    }
  }
}

// A strided forward: output row r reads input rows r * sh + i * dh. At row
// stride 2 without row dilation, tiles of kRowBlock output rows (each input
// row feeds the rows that meet it through filter rows of one parity);
// otherwise neighbouring output rows share no input row and the tiles are
// one row high. In the column phases of the staged input each tap's reads
// are contiguous.
template <typename Vec, int K>
void correlate_strided(const typename Vec::Scalar* in, int64_t in_stride,
                       const typename Vec::Scalar* w, const ConvShape& s,
                       typename Vec::Scalar* out, int64_t out_stride, int64_t vectors,
                       const typename Vec::Scalar* init) {
  constexpr int R = Vec::kRowBlock;
  const auto rows_with = [&](auto columns) {
    int64_t r = 0;
    if (s.stride_h == 2 && s.dilation_h == 1) {
      for (; r + R <= s.out_height; r += R) {
        correlate_rows<Vec, K, R, 2>(in + r * 2 * in_stride, in_stride, columns, w,
                                     out + r * out_stride, out_stride, vectors, init);
      }
    }
    for (; r < s.out_height; ++r) {
      correlate_rows<Vec, K, 1>(in + r * s.stride_h * in_stride, in_stride * s.dilation_h, columns,
                                w, out + r * out_stride, out_stride, vectors, init);
    }
  };
  if (s.stride_w == 2 && s.dilation_w == 1) {
    rows_with(StrideTwoColumns{in_stride / 2});
    return;
  }
  ColumnPhases phases{};
  for (int j = 0; j < K; ++j) phases.start[j] = tap_column_start(s, in_stride, j);
  rows_with(phases);
}

// Pixels per vector of staged elements E: a vector's lanes, or twice as many
// for BFloat16Bits (two per lane).
template <typename Vec, typename E>
constexpr int pixels_per_vector = int(sizeof(typename Vec::V) / sizeof(E));

// ---------------------------------------------------------------------------
// Channel-blocked tiles, for convolutions that are not depthwise: OB output
// planes at once, reduced over P staged planes (a group's input planes for
// the forward, its grad_output planes for grad_input). Each input vector
// loaded feeds OB planes, and the accumulators stay in registers through the
// whole reduction: a per-sample implicit GEMM whose columns are read straight
// from the staged planes. Every output element still sums in the order
// (p, i, j), so the block size never changes its bits.

// out_o[r][c] = start_o + sum_{p,i,j} w[(p * K * K + i * K + j) * OB + o] *
//                         in_p[r * row_step + i * tap_row + start[j] + c]
// (start null: 0), rounded once into O (the output's storage type, or the
// accumulation type), for R output rows of OB planes by CV vectors, the
// filters packed by
// correlate_channels (the OB taps a step broadcasts are neighbours: one
// pointer reaches them all). E is the element of the staged planes and
// filters: the accumulation type, or (where Vec has them) BFloat16Pairs, so
// that p runs over pairs of planes.
template <typename Vec, int K, int OB, int R, int CV, typename E, typename O>
inline void correlate_channel_tile(const E* in, int64_t plane_stride, int64_t planes,
                                   int64_t row_step, int64_t tap_row, const ColumnPhases& columns,
                                   const E* w, O* out, int64_t out_stride, int64_t out_plane_stride,
                                   const typename Vec::Scalar* start) {
  using V = typename Vec::V;
  using X = decltype(Vec::load(in));
  constexpr int L = Vec::kLanes;
  V acc[OB][R][CV];
#pragma GCC unroll 8
  for (int o = 0; o < OB; ++o) {
#pragma GCC unroll 2
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
      for (int c = 0; c < CV; ++c) {
        acc[o][r][c] = start != nullptr ? Vec::broadcast(start[o]) : Vec::zero();
      }
    }
  }
  for (int64_t p = 0; p < planes; ++p) {
    const E* plane = in + p * plane_stride;
    const E* wp = w + p * K * K * OB;
#pragma GCC unroll 8
    for (int i = 0; i < K; ++i) {
#pragma GCC unroll 8
      for (int j = 0; j < K; ++j) {
        X x[R][CV];
#pragma GCC unroll 2
        for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
          for (int c = 0; c < CV; ++c) {
            x[r][c] = Vec::in_register(
                Vec::load(plane + r * row_step + i * tap_row + columns.start[j] + c * L));
          }
        }
#pragma GCC unroll 8
        for (int o = 0; o < OB; ++o) {
          const X tap = Vec::broadcast(wp[(i * K + j) * OB + o]);
#pragma GCC unroll 2
          for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
            for (int c = 0; c < CV; ++c) acc[o][r][c] = Vec::fma(tap, x[r][c], acc[o][r][c]);
          }
        }
      }
    }
  }
#pragma GCC unroll 8
  for (int o = 0; o < OB; ++o) {
#pragma GCC unroll 2
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
      for (int c = 0; c < CV; ++c) {
        Vec::narrow(out + o * out_plane_stride + r * out_stride + c * L, acc[o][r][c]);
      }
    }
  }
}

// One tile height (R output rows) of OB planes across all vectors of the row.
template <typename Vec, int K, int OB, int R, typename E, typename O>
void correlate_channel_rows(const E* in, int64_t plane_stride, int64_t planes, int64_t row_step,
                            int64_t tap_row, const ColumnPhases& columns, const E* w, O* out,
                            int64_t out_stride, int64_t out_plane_stride,
                            const typename Vec::Scalar* start, int64_t vectors) {
  constexpr int L = Vec::kLanes;
  int64_t v = 0;
  for (; v + 2 <= vectors; v += 2) {
    correlate_channel_tile<Vec, K, OB, R, 2>(in + v * L, plane_stride, planes, row_step, tap_row,
                                             columns, w, out + v * L, out_stride,
                                             out_plane_stride, start);
  }
  if (v < vectors) {
    correlate_channel_tile<Vec, K, OB, R, 1>(in + v * L, plane_stride, planes, row_step, tap_row,
                                             columns, w, out + v * L, out_stride,
                                             out_plane_stride, start);
  }
}

// OB planes, all rows, Vec::kChannelRowBlock rows at a time: output row r
// reads input rows r * sh + i * dh.
template <typename Vec, int K, int OB, typename E, typename O>
void correlate_channel_block(const E* in, int64_t in_stride, int64_t plane_stride,
                             int64_t planes, const ConvShape& s, const ColumnPhases& columns,
                             const E* w, O* out, int64_t out_stride, int64_t out_plane_stride,
                             const typename Vec::Scalar* start, int64_t rows, int64_t vectors) {
  constexpr int R = Vec::kChannelRowBlock;
  const int64_t tap_row = s.dilation_h * in_stride;
  const int64_t row_step = s.stride_h * in_stride;
  int64_t r = 0;
  if constexpr (R > 1) {
    for (; r + R <= rows; r += R) {
      correlate_channel_rows<Vec, K, OB, R>(in + r * row_step, plane_stride, planes, row_step,
                                            tap_row, columns, w, out + r * out_stride,
                                            out_stride, out_plane_stride, start, vectors);
    }
  }
  for (; r < rows; ++r) {
    correlate_channel_rows<Vec, K, OB, 1>(in + r * row_step, plane_stride, planes, row_step,
                                          tap_row, columns, w, out + r * out_stride,
                                          out_stride, out_plane_stride, start, vectors);
  }
}

// grad_w[kh][kw] = sum_{r,c} go[r][c] * in[r + kh * dh][c + kw * dw] for the
// KB filter rows kh0 .. kh0 + KB - 1, one row phase at a time (see above).
// Walking the input rows, each loaded input vector meets the KB grad_output
// rows that reach it; go needs (KB - 1) * dh zero rows above and below (the
// staging margin).
// OB grad_output planes (go_plane_stride apart) by PB input planes
// (plane_stride apart) at once, the filter of (o, q) at
// grad_w[o * w_out_stride + q * K * K]: each grad_output load feeds PB input
// planes and each input load OB grad_output planes (for a 1x1 filter the
// tile is a GEMM micro-kernel over the plane's pixels). E is the element of
// the staged planes: the accumulation type, or (where Vec has them)
// BFloat16Bits, each lane then summing two neighbouring pixels.
template <typename Vec, int K, int KB, int OB, int PB, typename E, typename ColStep>
void weight_grad_rows(const E* in, int64_t in_stride, int64_t plane_stride, const E* go,
                      int64_t go_stride, int64_t go_plane_stride, int64_t rows, int64_t vectors,
                      int64_t dilation_h, ColStep dilation_w, int kh0,
                      typename Vec::Scalar* grad_w, int64_t w_out_stride) {
  using V = typename Vec::V;
  using X = decltype(Vec::load(in));
  constexpr int L = pixels_per_vector<Vec, E>;
  V acc[OB][PB][KB][K];
#pragma GCC unroll 4
  for (int o = 0; o < OB; ++o) {
#pragma GCC unroll 8
    for (int q = 0; q < PB; ++q) {
#pragma GCC unroll 8
      for (int b = 0; b < KB; ++b) {
#pragma GCC unroll 8
        for (int j = 0; j < K; ++j) acc[o][q][b][j] = Vec::zero();
      }
    }
  }
  const int64_t step_in = in_stride * dilation_h;
  const int64_t step_go = go_stride * dilation_h;
  for (int64_t phase = 0; phase < dilation_h && phase < rows; ++phase) {
    const int64_t phase_rows = (rows - phase + dilation_h - 1) / dilation_h;
    if constexpr (K == 1) {
      // A 1x1 filter: no window to keep, so along the rows, which reads
      // every plane in order (a tile's planes need not fit in L1 together:
      // pointwise float64 backward 12% faster on AVX2).
      for (int64_t r = 0; r < phase_rows; ++r) {
        const E* in_row = in + phase * in_stride + (kh0 + r) * step_in;
        const E* go_row = go + phase * go_stride + r * step_go;
        for (int64_t v = 0; v < vectors; ++v) {
          X g[OB];
#pragma GCC unroll 4
          for (int o = 0; o < OB; ++o) g[o] = Vec::load(go_row + o * go_plane_stride + v * L);
#pragma GCC unroll 8
          for (int q = 0; q < PB; ++q) {
#pragma GCC unroll 8
            for (int j = 0; j < K; ++j) {
              const X x = Vec::in_register(
                  Vec::load(in_row + q * plane_stride + j * dilation_w + v * L));
#pragma GCC unroll 4
              for (int o = 0; o < OB; ++o) acc[o][q][0][j] = Vec::fma(g[o], x, acc[o][q][0][j]);
            }
          }
        }
      }
      continue;
    }
    // Down one column of vectors at a time: the KB grad_output rows that
    // meet input row ih are a window that moves down one row per step, so
    // each step loads one new grad_output vector per grad_output plane.
    const int64_t end = kh0 + KB - 1 + phase_rows;
    for (int64_t v = 0; v < vectors; ++v) {
      const E* in_col = in + phase * in_stride + v * L;
      const E* go_col = go + phase * go_stride + v * L;
      X g[OB][KB];  // g[o][b]: grad_output row ih - kh0 - b of plane o
#pragma GCC unroll 4
      for (int o = 0; o < OB; ++o) {
#pragma GCC unroll 8
        for (int b = 0; b < KB; ++b) g[o][b] = Vec::load(go_col + o * go_plane_stride - b * step_go);
      }
      for (int64_t ih = kh0; ih < end; ++ih) {
        const E* in_row = in_col + ih * step_in;
#pragma GCC unroll 8
        for (int q = 0; q < PB; ++q) {
#pragma GCC unroll 8
          for (int j = 0; j < K; ++j) {
            const X x = Vec::in_register(Vec::load(in_row + q * plane_stride + j * dilation_w));
#pragma GCC unroll 4
            for (int o = 0; o < OB; ++o) {
#pragma GCC unroll 8
              for (int b = 0; b < KB; ++b) acc[o][q][b][j] = Vec::fma(g[o][b], x, acc[o][q][b][j]);
            }
          }
        }
        if (ih + 1 == end) break;  // the next row may lie past the staged margin
#pragma GCC unroll 4
        for (int o = 0; o < OB; ++o) {
#pragma GCC unroll 8
          for (int b = KB - 1; b > 0; --b) g[o][b] = g[o][b - 1];
          g[o][0] = Vec::load(go_col + o * go_plane_stride + (ih + 1 - kh0) * step_go);
        }
      }
    }
  }
  // Summed from a copy, as reduce_tiles' (winograd_tiles.h): with acc's own
  // address taken GCC kept the double accumulators in memory.
  constexpr int kSums = OB * PB * KB * K;
  V sums_of[kSums];
#pragma GCC unroll 32
  for (int i = 0; i < kSums; ++i) {
    sums_of[i] = acc[i / (K * KB * PB)][i / (K * KB) % PB][i / K % KB][i % K];
  }
  sum_each<Vec>(sums_of, kSums, [&](int i, typename Vec::Scalar sum) {
    const int j = i % K, b = i / K % KB, q = i / (K * KB) % PB, o = i / (K * KB * PB);
    grad_w[o * w_out_stride + q * K * K + (kh0 + b) * K + j] = sum;
  });
}

// Register blocking of the weight gradient: KB filter rows per pass, and
// OB grad_output planes (at most Vec::kWeightChannelBlock) by
// planes_for(OB) input planes, as many as Vec::kWeightAccumulators allows.
template <typename Vec, int K>
struct WeightGradBlocking {
  static constexpr int KB = Vec::kWeightRowBlock < K ? Vec::kWeightRowBlock : K;
  static constexpr int kFit = Vec::kWeightAccumulators / (KB * K);
  static constexpr int OB = kFit < 1 ? 1 : (kFit < Vec::kWeightChannelBlock ? kFit : Vec::kWeightChannelBlock);
  static constexpr int planes_for(int ob) {
    return kFit / ob < 1 ? 1 : (kFit / ob > 6 ? 6 : kFit / ob);
  }
};

// The filters of OB grad_output planes by PB input planes, all filter rows.
template <typename Vec, int K, int OB, int PB, typename E, typename ColStep>
void weight_grad_tile(const E* in, int64_t in_stride, int64_t plane_stride, const E* go,
                      int64_t go_stride, int64_t go_plane_stride,
                      int64_t rows, int64_t vectors, int64_t dilation_h, ColStep dilation_w,
                      typename Vec::Scalar* grad_w, int64_t w_out_stride) {
  constexpr int KB = WeightGradBlocking<Vec, K>::KB;
  int kh0 = 0;
  for (; kh0 + KB <= K; kh0 += KB) {
    weight_grad_rows<Vec, K, KB, OB, PB>(in, in_stride, plane_stride, go, go_stride,
                                         go_plane_stride, rows, vectors, dilation_h, dilation_w,
                                         kh0, grad_w, w_out_stride);
  }
  for (; kh0 < K; ++kh0) {
    weight_grad_rows<Vec, K, 1, OB, PB>(in, in_stride, plane_stride, go, go_stride,
                                        go_plane_stride, rows, vectors, dilation_h, dilation_w,
                                        kh0, grad_w, w_out_stride);
  }
}

// The filters of `outs` grad_output planes against `planes` input planes,
// grad_w laid out [o][p][tap]. Input planes outside, grad_output planes
// inside: a block of input planes stays in L1 while the grad_output planes
// stream past it. Within a plane each tap sums in a fixed order (phase, then
// along the rows or down the columns, weight_grad_rows), then the lanes: the
// blocking of planes never changes a bit.
template <typename Vec, int K, typename E, typename ColStep>
void weight_grad_fast(const E* in, int64_t in_stride, int64_t plane_stride, int64_t planes,
                      const E* go, int64_t go_stride,
                      int64_t go_plane_stride, int64_t outs, int64_t rows, int64_t vectors,
                      int64_t dilation_h, ColStep dilation_w, typename Vec::Scalar* grad_w) {
  constexpr int OB = WeightGradBlocking<Vec, K>::OB;
  constexpr int PB = WeightGradBlocking<Vec, K>::planes_for(OB);
  const int64_t w_out_stride = planes * K * K;
  const auto against_outs = [&](auto pb, int64_t p) {
    constexpr int P = decltype(pb)::value;
    int64_t o = 0;
    const auto tile = [&](auto ob) {
      weight_grad_tile<Vec, K, decltype(ob)::value, P>(
          in + p * plane_stride, in_stride, plane_stride, go + o * go_plane_stride, go_stride,
          go_plane_stride, rows, vectors, dilation_h, dilation_w,
          grad_w + o * w_out_stride + p * K * K, w_out_stride);
    };
    if constexpr (OB > 1) {
      for (; o + OB <= outs; o += OB) tile(std::integral_constant<int, OB>{});
    }
    for (; o < outs; ++o) tile(std::integral_constant<int, 1>{});
  };
  int64_t p = 0;
  if constexpr (PB > 1) {
    for (; p + PB <= planes; p += PB) against_outs(std::integral_constant<int, PB>{}, p);
  }
  for (; p < planes; ++p) against_outs(std::integral_constant<int, 1>{}, p);
}

}  // namespace
}  // namespace mula::cpu
