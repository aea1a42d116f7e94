// Part of the per-plane CPU kernels (see plane_kernels_impl.h): Winograd's
// F(2x2, 3x3) for a 3x3, stride-1, undilated convolution that is not
// depthwise, in its forward, its grad_input (the flipped correlation) and
// its weight gradient.
//
// Each 2x2 block of outputs (a tile) comes from the 4x4 block of input under
// it: with V_p = B^T d_p B for each input plane p and U_op = G w_op G^T for
// each filter, out_o = A^T (sum_p U_op .* V_p) A. The sum over planes is 16
// matrix products, one per entry xi of the 4x4 transforms: 16 multiply-adds
// per tile and plane where the direct tiles take 36, for transforms whose
// work grows with the number of planes, not with their product. A vector's
// lanes hold neighbouring tiles, tile rows one after another (a row is not
// padded to whole vectors, so that planes narrower than a vector of tiles
// fill theirs). The weight gradient is the transpose of the same map:
// grad_w_op = G^T (sum_t (A g_ot A^T) .* V_pt) G, with g_ot the 2x2 block of
// grad_output plane o at tile t: 16 reductions over the tiles.
//
// Every output is one fixed sequence of operations, whichever block or
// thread computes it. Its rounding is not the direct tiles': the transforms
// add and subtract the 16 inputs of a tile before they are multiplied, so an
// output's error is a few roundings of the largest products in its tile's
// 4x4 block rather than in its own 3x3 window. For the same reason an
// infinity or NaN would spread over its tiles: the caller recomputes on the
// direct tiles every plane that run() or weight_grad() reports not finite.
// MULA_CPU_WINOGRAD=0 turns the tiles off (read at every call).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "plane_dispatch.h"
#include "plane_products.h"

namespace mula::cpu {
namespace {

// Whether a convolution takes the Winograd tiles: a 3x3 stride-1 undilated
// filter where the products saved outweigh the transforms, whose work grows
// with the input and the output planes (the products' with their product):
// in * out / (in + out) >= 10 planes per group (measured on AVX-512 and AVX2,
// 16 and 16 gain on 32x32 planes and lose up to 6% on 16x16 ones, 64 and 64
// gain 1.2x to 1.6x), on planes of at least 8x8 outputs (the filters'
// transforms are shared by the tiles of a plane).
inline bool winograd_tiles(const ConvShape& s) {
  const int64_t in = s.in_channels / s.groups;
  const int64_t out = s.out_channels / s.groups;
  return !is_depthwise(s) && s.kernel_h == 3 && s.kernel_w == 3 && s.stride_h == 1 &&
         s.stride_w == 1 && s.dilation_h == 1 && s.dilation_w == 1 &&
         in * out >= 10 * (in + out) && s.out_height * s.out_width >= 64;
}

inline bool winograd_enabled() {
  const char* setting = std::getenv("MULA_CPU_WINOGRAD");
  return setting == nullptr || std::strcmp(setting, "0") != 0;
}

// The entries xi of a 4x4 transform.
constexpr int64_t kTransformEntries = 16;

// The planes of one Winograd convolution: `planes` input planes of rows x
// cols, placed at (top, left) in the zero-padded plane that the filters
// correlate with, and output planes of out_rows x out_cols.
struct WinogradShape {
  int64_t planes, rows, cols, top, left, out_rows, out_cols;
};

// sums[o * sums_stride + p] += sum_t g[o * stride + t] * v[p * stride + t] over
// `tiles` tiles (whole vectors) for OB grad_output planes and PB input
// planes: the register-blocked reduction of the weight gradient for one xi,
// each sum in lanes, then across them (sum_each: Vec::sum's fixed order).
template <typename Vec, int OB, int PB>
void reduce_tiles(const typename Vec::Scalar* g, const typename Vec::Scalar* v, int64_t stride,
                  int64_t tiles, typename Vec::Scalar* sums, int64_t sums_stride) {
  using V = typename Vec::V;
  V acc[OB][PB];
  for (int o = 0; o < OB; ++o) {
    for (int p = 0; p < PB; ++p) acc[o][p] = Vec::zero();
  }
  for (int64_t t = 0; t < tiles; t += Vec::kLanes) {
    V go[OB];
    for (int o = 0; o < OB; ++o) go[o] = Vec::in_register(Vec::load(g + o * stride + t));
    for (int p = 0; p < PB; ++p) {
      const V x = Vec::load(v + p * stride + t);
      for (int o = 0; o < OB; ++o) acc[o][p] = Vec::fma(go[o], x, acc[o][p]);
    }
  }
  // Summed from a copy: with acc's own address taken GCC kept the double
  // accumulators in memory, storing all of them on every step (the
  // reduction ran at half speed; weight_grad_rows' likewise).
  V sums_of[OB * PB];
#pragma GCC unroll 32
  for (int i = 0; i < OB * PB; ++i) sums_of[i] = acc[i / PB][i % PB];
  sum_each<Vec>(sums_of, OB * PB, [&](int i, typename Vec::Scalar sum) {
    sums[i / PB * sums_stride + i % PB] += sum;
  });
}

// Calls body(o, std::integral_constant<int, OB>{}) for blocks of
// kWeightChannelBlock consecutive grad_output planes, then single ones.
template <typename Vec, typename Body>
void for_each_weight_block(int64_t channels, Body&& body) {
  constexpr int kBlock = Vec::kWeightChannelBlock;
  int64_t o = 0;
  for (; o + kBlock <= channels; o += kBlock) body(o, std::integral_constant<int, kBlock>{});
  for (; o < channels; ++o) body(o, std::integral_constant<int, 1>{});
}

// One thread's Winograd convolutions of a shape: blocks of up to kMaxBlock
// output planes from the same input planes. The plane's tiles run in bands
// of tile rows, all input planes of a band transformed at once (the whole
// plane where that fits in kBandBytes, then kept for the next block of the
// same planes), and within a band in chunks of tile rows whose products stay
// in cache until the output transform reads them. Tile t of a band is tile
// column t % tiles_w of its tile row t / tiles_w; a row's transforms run in
// whole vectors, the last one spilling into the next row's tiles (which that
// row then overwrites) or past the band's last (values never stored).
template <typename Acc>
class WinogradTiles {
  using Vec = SimdFor<Acc>;
  using V = typename Vec::V;
  static constexpr int64_t kLanes = Vec::kLanes;
  // Accumulators of the products: OB output planes x kVectors vectors.
  static constexpr int kVectors = 2 * Vec::kChannelRowBlock;
  // Under ScratchCache::kLargest, so that a thread keeps its scratch.
  static constexpr int64_t kBandBytes = int64_t{4} << 20;
  // The weight gradient's reductions run over this many vectors of tiles at
  // a time, whose transforms stay in cache for every block of planes.
  static constexpr int64_t kReduceTiles = 64 * kLanes;

 public:
  static constexpr int64_t kMaxBlock = 32;  // the bits of run()'s mask

  // Whether the weight gradient gains from the tiles, given that the
  // forward's do (winograd_tiles): each of its sums ends in a sum across a
  // vector's lanes, which at fewer than 8 vectors of tiles per plane costs
  // more than the products saved (measured: 4 vectors 4% slower than the
  // direct tiles, 9 vectors 1.5x faster). With the forward's planes per
  // group it gains from 16 input and 32 output planes on (1.1x to 1.25x in
  // float on AVX-512, 1.1x to 1.4x in double; level to 1.3x on AVX2).
  static bool weight_gradient_gains(const ConvShape& s) {
    return (s.out_height + 1) / 2 * ((s.out_width + 1) / 2) >= 8 * kLanes;
  }

  // weight_gradient: whether weight_grad() runs too (its grad_output
  // transforms take a band's worth of scratch).
  explicit WinogradTiles(const WinogradShape& s, bool weight_gradient = false)
      : s_(s),
        filter_stride_(round_up(s.planes, kLanes)),
        tile_rows_((s.out_rows + 1) / 2),
        tiles_w_((s.out_cols + 1) / 2),
        row_cols_(round_up(tiles_w_, kLanes)),
        half_cols_(row_cols_ + kLanes),
        chunk_rows_(clamp_to(4 * kLanes / max_of(tiles_w_, 1), 1, max_of(tile_rows_, 1))),
        band_rows_(band_rows(weight_gradient ? max_of(s.planes, kMaxBlock) : s.planes)),
        band_stride_(plane_stride_of<Acc>(band_tiles(band_rows_) + kLanes)),
        staged_((2 * band_rows_ + 2) * 2 * half_cols_),
        halves_((2 * band_rows_ + 2) * 2 * half_cols_),
        v_(kTransformEntries * s.planes * band_stride_),
        m_(kTransformEntries * kMaxBlock * chunk_tiles(chunk_rows_)),
        out_(2 * chunk_rows_ * 2 * row_cols_),
        taps_(9 * filter_stride_),
        u_(kTransformEntries * kMaxBlock * filter_stride_),
        grad_tiles_(weight_gradient ? kTransformEntries * kMaxBlock * band_stride_ : 0),
        grad_sums_(weight_gradient ? kTransformEntries * kMaxBlock * filter_stride_ : 0) {
    // A chunk's products read up to a vector past the tiles a band's
    // transforms write: zeros, never stored.
    const int64_t written = band_tiles(band_rows_);
    for (int64_t row = 0; row < kTransformEntries * s.planes; ++row) {
      fill(v_.get() + row * band_stride_ + written, band_stride_ - written, Acc(0));
    }
  }

  // The filters of the next run: u[xi][o][p] = (G w G^T)[xi] for the 3x3
  // filters w of `count` output planes o (at most kMaxBlock) and every input
  // plane p, filter (o, p) at w + o * o_stride + p * p_stride (its taps in
  // row-major order, reversed when flipped). Copied tap by tap into rows
  // over p first, so that the transform runs on vectors of planes.
  template <typename T>
  void load_filters(const T* w, int64_t o_stride, int64_t p_stride, bool flipped, int64_t count) {
    const V half = Vec::broadcast(Acc(0.5));
    const int64_t next = count * filter_stride_;  // from one xi to the next
    Acc* taps = taps_.get();
    for (int64_t o = 0; o < count; ++o) {
      for (int64_t p = 0; p < s_.planes; ++p) {
        const T* filter = w + o * o_stride + p * p_stride;
        for (int t = 0; t < 9; ++t) taps[t * filter_stride_ + p] = to_acc(filter[flipped ? 8 - t : t]);
      }
      for (int t = 0; t < 9; ++t) {
        fill(taps + t * filter_stride_ + s_.planes, filter_stride_ - s_.planes, Acc(0));
      }
      for (int64_t p = 0; p < filter_stride_; p += kLanes) {
        V g[9];
        for (int t = 0; t < 9; ++t) g[t] = Vec::load(taps + t * filter_stride_ + p);
        V rows[4][3];  // G g
        for (int c = 0; c < 3; ++c) {
          rows[0][c] = g[c];
          rows[1][c] = Vec::mul(Vec::add(Vec::add(g[c], g[3 + c]), g[6 + c]), half);
          rows[2][c] = Vec::mul(Vec::add(Vec::sub(g[c], g[3 + c]), g[6 + c]), half);
          rows[3][c] = g[6 + c];
        }
        for (int r = 0; r < 4; ++r) {  // (G g) G^T
          const V* h = rows[r];
          Acc* entries = u_.get() + 4 * r * next + o * filter_stride_ + p;
          Vec::store(entries, h[0]);
          Vec::store(entries + next, Vec::mul(Vec::add(Vec::add(h[0], h[1]), h[2]), half));
          Vec::store(entries + 2 * next, Vec::mul(Vec::add(Vec::sub(h[0], h[1]), h[2]), half));
          Vec::store(entries + 3 * next, h[2]);
        }
      }
    }
  }

  // out_o = bias[o] + sum_p w_op (x) in_p for the `count` filters of
  // load_filters. The input planes (consecutive, rows x cols apart) of one
  // key are the same planes: transformed once while consecutive calls pass
  // that key and the whole plane fits one band. Returns a mask whose bit o
  // says whether every value stored into output plane o is finite.
  template <typename T>
  uint32_t run(const T* in, int64_t key, int64_t count, const Acc* bias, T* out) {
    uint32_t finite = every_plane(count);
    for (int64_t band = 0; band < tile_rows_; band += band_rows_) {
      const int64_t rows = inputs_of_band(in, key, band);
      for (int64_t chunk = band; chunk < band + rows; chunk += chunk_rows_) {
        const int64_t chunk_rows = min_of(chunk_rows_, band + rows - chunk);
        multiply(count, v_.get() + (chunk - band) * tiles_w_, chunk_tiles(chunk_rows));
        for (int64_t o = 0; o < count; ++o) {
          transform_outputs(o, count, chunk_rows, bias[o]);
          const int64_t out_rows = min_of(2 * chunk_rows, s_.out_rows - 2 * chunk);
          if (!all_finite(out_.get(), 2 * row_cols_, out_rows, s_.out_cols)) {
            finite &= ~(uint32_t{1} << o);
          }
          store_plane(out_.get(), 2 * row_cols_, out_rows, s_.out_cols,
                      out + (o * s_.out_rows + 2 * chunk) * s_.out_cols);
        }
      }
    }
    return finite;
  }

  // grad_w[o][p][tap] = the weight gradient of filter (o, p) from the
  // `count` grad_output planes at grad_out (out_rows x out_cols apart) and
  // the input planes of `key` (as run's); a mask of the planes o whose
  // gradients are all finite.
  template <typename T>
  uint32_t weight_grad(const T* in, int64_t key, const T* grad_out, int64_t count, Acc* grad_w) {
    Acc* sums = grad_sums_.get();
    fill(sums, kTransformEntries * count * filter_stride_, Acc(0));
    for (int64_t band = 0; band < tile_rows_; band += band_rows_) {
      const int64_t rows = inputs_of_band(in, key, band);
      for (int64_t o = 0; o < count; ++o) {
        transform_grad_output(grad_out + o * s_.out_rows * s_.out_cols, band, rows,
                              grad_tiles_.get() + o * band_stride_, count * band_stride_);
      }
      const int64_t band_tiles = chunk_tiles(rows);
      for (int64_t xi = 0; xi < kTransformEntries; ++xi) {
        Acc* xi_sums = sums + xi * count * filter_stride_;
        for (int64_t t = 0; t < band_tiles; t += kReduceTiles) {
          const Acc* g = grad_tiles_.get() + xi * count * band_stride_ + t;
          const Acc* v = v_.get() + xi * s_.planes * band_stride_ + t;
          const int64_t tiles = min_of(kReduceTiles, band_tiles - t);
          for_each_weight_block<Vec>(count, [&](int64_t o, auto o_block) {
            for_each_channel_block<Vec>(s_.planes, [&](int64_t p, auto p_block) {
              reduce_tiles<Vec, decltype(o_block)::value, decltype(p_block)::value>(
                  g + o * band_stride_, v + p * band_stride_, band_stride_, tiles,
                  xi_sums + o * filter_stride_ + p, filter_stride_);
            });
          });
        }
      }
    }
    return untransform_weight_grad(count, grad_w);
  }

 private:
  // Whether rows x cols values of buf (rows `stride` apart) are finite: x - x
  // is 0 for a finite x, NaN otherwise.
  static bool all_finite(const Acc* buf, int64_t stride, int64_t rows, int64_t cols) {
    V check = Vec::zero();
    Acc tail(0);
    for (int64_t r = 0; r < rows; ++r) {
      const Acc* row = buf + r * stride;
      int64_t c = 0;
      for (; c + kLanes <= cols; c += kLanes) {
        const V x = Vec::load(row + c);
        check = Vec::add(check, Vec::sub(x, x));
      }
      for (; c < cols; ++c) tail += row[c] - row[c];
    }
    return Vec::sum(check) + tail == Acc(0);
  }

  // g[xi * xi_stride + t] = (A d A^T)[xi] for the tiles t of tile rows
  // [band, band + rows) of one grad_output plane, d its 2x2 block (zero past
  // the plane's edges), A^T = [[1, 1, 1, 0], [0, 1, -1, -1]].
  template <typename T>
  void transform_grad_output(const T* plane, int64_t band, int64_t rows, Acc* g,
                             int64_t xi_stride) {
    const int64_t staged_cols = 2 * half_cols_;
    stage_halves(plane, s_.out_rows, s_.out_cols, -2 * band, 0, 2 * rows);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < row_cols_; j += kLanes) {
        V h[2][4];  // d A^T, per row of the block
        for (int y = 0; y < 2; ++y) {
          const Acc* e = halves_.get() + (2 * r + y) * staged_cols + j;
          const V left = Vec::load(e), right = Vec::load(e + half_cols_);
          h[y][0] = left;
          h[y][1] = Vec::add(left, right);
          h[y][2] = Vec::sub(left, right);
          h[y][3] = Vec::sub(Vec::zero(), right);
        }
        Acc* entries = g + r * tiles_w_ + j;
        for (int c = 0; c < 4; ++c) {  // A (d A^T)
          Vec::store(entries + c * xi_stride, h[0][c]);
          Vec::store(entries + (4 + c) * xi_stride, Vec::add(h[0][c], h[1][c]));
          Vec::store(entries + (8 + c) * xi_stride, Vec::sub(h[0][c], h[1][c]));
          Vec::store(entries + (12 + c) * xi_stride, Vec::sub(Vec::zero(), h[1][c]));
        }
      }
    }
    // The products past the band's tiles read zeros.
    const int64_t written = band_tiles(rows);
    for (int64_t xi = 0; xi < kTransformEntries; ++xi) {
      fill(g + xi * xi_stride + written, band_stride_ - written, Acc(0));
    }
  }

  // grad_w[o][p][tap] = (G^T X G)[tap] for X the 4x4 sums of filter (o, p),
  // G^T = [[1, 1/2, 1/2, 0], [0, 1/2, -1/2, 0], [0, 1/2, 1/2, 1]], computed
  // on vectors of input planes (the sums' rows are filter_stride_ long, the
  // planes past the last one zeros); the mask of run().
  uint32_t untransform_weight_grad(int64_t count, Acc* grad_w) {
    const V half = Vec::broadcast(Acc(0.5));
    const int64_t xi_stride = count * filter_stride_;
    uint32_t finite = every_plane(count);
    Acc* taps = taps_.get();  // [tap][p], filter_stride_ apart
    for (int64_t o = 0; o < count; ++o) {
      V check = Vec::zero();
      const Acc* x = grad_sums_.get() + o * filter_stride_;
      for (int64_t p = 0; p < filter_stride_; p += kLanes) {
        V rows[3][4];  // G^T X
        for (int c = 0; c < 4; ++c) {
          const V x0 = Vec::load(x + c * xi_stride + p), x1 = Vec::load(x + (4 + c) * xi_stride + p),
                  x2 = Vec::load(x + (8 + c) * xi_stride + p),
                  x3 = Vec::load(x + (12 + c) * xi_stride + p);
          rows[0][c] = Vec::add(x0, Vec::mul(Vec::add(x1, x2), half));
          rows[1][c] = Vec::mul(Vec::sub(x1, x2), half);
          rows[2][c] = Vec::add(Vec::mul(Vec::add(x1, x2), half), x3);
        }
        for (int r = 0; r < 3; ++r) {  // (G^T X) G
          const V* h = rows[r];
          const V tap[3] = {Vec::add(h[0], Vec::mul(Vec::add(h[1], h[2]), half)),
                            Vec::mul(Vec::sub(h[1], h[2]), half),
                            Vec::add(Vec::mul(Vec::add(h[1], h[2]), half), h[3])};
          for (int c = 0; c < 3; ++c) {
            Vec::store(taps + (3 * r + c) * filter_stride_ + p, tap[c]);
            check = Vec::add(check, Vec::sub(tap[c], tap[c]));
          }
        }
      }
      Acc* filters = grad_w + o * s_.planes * 9;
      for (int64_t p = 0; p < s_.planes; ++p) {
        for (int t = 0; t < 9; ++t) filters[p * 9 + t] = taps[t * filter_stride_ + p];
      }
      if (!(Vec::sum(check) == Acc(0))) finite &= ~(uint32_t{1} << o);
    }
    return finite;
  }

  // A mask with a bit for each of `count` planes.
  static uint32_t every_plane(int64_t count) { return (uint32_t{1} << (count - 1) << 1) - 1; }

  // The number of tile rows of the band from tile row `band`, its input
  // planes' transforms in v_ (kept from the last call while the planes of
  // `key` fill one band).
  template <typename T>
  int64_t inputs_of_band(const T* in, int64_t key, int64_t band) {
    const int64_t rows = min_of(band_rows_, tile_rows_ - band);
    if (band_rows_ < tile_rows_ || key != key_) transform_inputs(in, band, rows);
    key_ = band_rows_ < tile_rows_ ? -1 : key;
    return rows;
  }

  // The tiles that the transforms of `rows` tile rows write.
  int64_t band_tiles(int64_t rows) const { return (rows - 1) * tiles_w_ + row_cols_; }
  // The products of `rows` tile rows: whole vectors over their tiles.
  int64_t chunk_tiles(int64_t rows) const { return round_up(band_tiles(rows), kLanes); }

  int64_t band_rows(int64_t planes) const {
    const int64_t fit = kBandBytes / (kTransformEntries * max_of(planes, 1) *
                                      max_of(tiles_w_, 1) * int64_t(sizeof(Acc)));
    if (fit >= tile_rows_) return max_of(tile_rows_, 1);
    return max_of(fit / chunk_rows_, 1) * chunk_rows_;
  }

  // halves_ = a plane (rows x cols) placed at (top, left), zero outside it,
  // staged_rows rows of 2 * half_cols_ columns, each row as its even
  // columns, then its odd ones.
  template <typename T>
  void stage_halves(const T* plane, int64_t rows, int64_t cols, int64_t top, int64_t left,
                    int64_t staged_rows) {
    const int64_t staged_cols = 2 * half_cols_;
    stage_plane(plane, rows, cols, top, left, staged_.get(), staged_rows, staged_cols);
    for (int64_t y = 0; y < staged_rows; ++y) {
      const Acc* row = staged_.get() + y * staged_cols;
      Acc* even = halves_.get() + y * staged_cols;
      for (int64_t j = 0; j < half_cols_; j += kLanes) {
        V e, o;
        Vec::deinterleave(Vec::load(row + 2 * j), Vec::load(row + 2 * j + kLanes), e, o);
        Vec::store(even + j, e);
        Vec::store(even + half_cols_ + j, o);
      }
    }
  }

  // v[xi][p][t] = (B^T d B)[xi] for the tiles t of tile rows [band, band +
  // rows) of every input plane p.
  template <typename T>
  void transform_inputs(const T* in, int64_t band, int64_t rows) {
    const int64_t staged_rows = 2 * rows + 2;
    const int64_t staged_cols = 2 * half_cols_;
    const int64_t xi_stride = s_.planes * band_stride_;
    for (int64_t p = 0; p < s_.planes; ++p) {
      stage_halves(in + p * s_.rows * s_.cols, s_.rows, s_.cols, s_.top - 2 * band, s_.left,
                   staged_rows);
      Acc* v = v_.get() + p * band_stride_;
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t j = 0; j < row_cols_; j += kLanes) {
          transform_input_tiles(halves_.get() + 2 * r * staged_cols + j, staged_cols,
                                v + r * tiles_w_ + j, xi_stride);
        }
      }
    }
  }

  // The transforms of kLanes neighbouring tiles: tile x's 4x4 block is
  // column 2x + c of four staged rows, c = 0..3 the even, odd, next even and
  // next odd column.
  void transform_input_tiles(const Acc* even, int64_t row_stride, Acc* v, int64_t xi_stride) {
    V d[4][4];  // [row][c]
    for (int r = 0; r < 4; ++r) {
      const Acc* e = even + r * row_stride;
      const Acc* o = e + half_cols_;
      d[r][0] = Vec::load(e);
      d[r][1] = Vec::load(o);
      d[r][2] = Vec::load(e + 1);
      d[r][3] = Vec::load(o + 1);
    }
    for (int c = 0; c < 4; ++c) {  // B^T d
      const V d0 = d[0][c], d1 = d[1][c], d2 = d[2][c], d3 = d[3][c];
      d[0][c] = Vec::sub(d0, d2);
      d[1][c] = Vec::add(d1, d2);
      d[2][c] = Vec::sub(d2, d1);
      d[3][c] = Vec::sub(d1, d3);
    }
    for (int r = 0; r < 4; ++r) {  // (B^T d) B
      const V* h = d[r];
      Acc* entries = v + 4 * r * xi_stride;
      Vec::store(entries, Vec::sub(h[0], h[2]));
      Vec::store(entries + xi_stride, Vec::add(h[1], h[2]));
      Vec::store(entries + 2 * xi_stride, Vec::sub(h[2], h[1]));
      Vec::store(entries + 3 * xi_stride, Vec::sub(h[1], h[3]));
    }
  }

  // m[xi][o][t] = sum_p u[xi][o][p] v[xi][p][t] for the `tiles` tiles of a
  // chunk (chunk_tiles), from v's first.
  void multiply(int64_t count, const Acc* v, int64_t tiles) {
    for (int64_t xi = 0; xi < kTransformEntries; ++xi) {
      const Acc* ux = u_.get() + xi * count * filter_stride_;
      const Acc* vx = v + xi * s_.planes * band_stride_;
      Acc* mx = m_.get() + xi * count * tiles;
      for_each_channel_block<Vec>(count, [&](int64_t o, auto block) {
        constexpr int OB = decltype(block)::value;
        int64_t t = 0;
        for (; t + kVectors * kLanes <= tiles; t += kVectors * kLanes) {
          multiply_tiles<Vec, OB, kVectors>(ux + o * filter_stride_, filter_stride_, s_.planes,
                                            vx + t, band_stride_,
                                            mx + o * tiles + t, tiles);
        }
        for (; t < tiles; t += kLanes) {
          multiply_tiles<Vec, OB, 1>(ux + o * filter_stride_, filter_stride_, s_.planes, vx + t,
                                     band_stride_,
                                     mx + o * tiles + t, tiles);
        }
      });
    }
  }

  // out_ = bias + A^T m A for output plane o's tiles of a chunk of
  // chunk_rows tile rows (m_ as multiply left it for `count` planes).
  void transform_outputs(int64_t o, int64_t count, int64_t chunk_rows, Acc bias) {
    const int64_t tiles = chunk_tiles(chunk_rows);
    const int64_t xi_stride = count * tiles;
    const V start = Vec::broadcast(bias);
    for (int64_t r = 0; r < chunk_rows; ++r) {
      for (int64_t j = 0; j < row_cols_; j += kLanes) {
        const Acc* m = m_.get() + o * tiles + r * tiles_w_ + j;
        V rows[2][4];  // A^T m
        for (int c = 0; c < 4; ++c) {
          const V m0 = Vec::load(m + c * xi_stride), m1 = Vec::load(m + (4 + c) * xi_stride),
                  m2 = Vec::load(m + (8 + c) * xi_stride), m3 = Vec::load(m + (12 + c) * xi_stride);
          rows[0][c] = Vec::add(Vec::add(m0, m1), m2);
          rows[1][c] = Vec::sub(Vec::sub(m1, m2), m3);
        }
        for (int y = 0; y < 2; ++y) {  // (A^T m) A, interleaved into the output row
          const V* h = rows[y];
          const V left = Vec::add(Vec::add(Vec::add(h[0], h[1]), h[2]), start);
          const V right = Vec::add(Vec::sub(Vec::sub(h[1], h[2]), h[3]), start);
          V low, high;
          Vec::interleave(left, right, low, high);
          Acc* dst = out_.get() + (2 * r + y) * 2 * row_cols_ + 2 * j;
          Vec::store(dst, low);
          Vec::store(dst + kLanes, high);
        }
      }
    }
  }

  WinogradShape s_;
  int64_t filter_stride_;  // between the filters of two output planes in u_
  int64_t tile_rows_, tiles_w_, row_cols_, half_cols_, chunk_rows_, band_rows_, band_stride_;
  int64_t key_ = -1;
  Scratch<Acc> staged_, halves_, v_, m_, out_, taps_, u_;
  // weight_grad's grad_output transforms [xi][o][t] and sums [xi][o][p].
  Scratch<Acc> grad_tiles_, grad_sums_;
};

}  // namespace
}  // namespace mula::cpu
