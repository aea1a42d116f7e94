// Runs the emulated CUDA kernels (forward, the fused backward)
// over shapes that reach every code path (register-filter sizes 3/5/7, the
// generic kernel, non-square kernels, stride, dilation, padding, groups, bias
// modes, planes split across tiles with the two-pass weight gradient, tiles
// shrunk to fit shared memory, empty batch) in all four dtypes, and compares
// them to a naive float64 loop. Built without torch, with sanitizers by ctest.
//
// Usage: check_emulated_kernels [substring]  (runs the cases whose name
// contains it). Exit status 0 when every result matches.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "../../cuda/dynamic_conv_launch.h"
#include "../cuda_emulator.h"

namespace {

using mula::ConvShape;
using mula::DType;

enum class Bias { kNone, kShared, kPerSample };

struct Case {
  const char* name;
  std::int64_t batch, in_channels, out_channels, groups;
  int height, width, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  Bias bias;
};

// Deterministic values in [-1, 1).
struct Random {
  std::uint64_t state;
  double next() {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return double(state >> 11) / double(1ull << 52) * 2.0 - 1.0;
  }
};

// Storage round trip per dtype, so the oracle sees exactly the kernel's inputs.
struct Storage {
  DType type;
  std::size_t bytes;
  double tolerance;  // relative to the sum of absolute terms
  const char* name;
};

void encode(const Storage& st, const std::vector<double>& values, std::vector<unsigned char>& out) {
  out.assign(values.size() * st.bytes, 0);
  for (std::size_t i = 0; i < values.size(); ++i) {
    unsigned char* p = out.data() + i * st.bytes;
    switch (st.type) {
      case DType::kDouble: std::memcpy(p, &values[i], 8); break;
      case DType::kFloat: { const float v = float(values[i]); std::memcpy(p, &v, 4); break; }
      case DType::kHalf: { const __half v = __float2half_rn(float(values[i])); std::memcpy(p, &v, 2); break; }
      case DType::kBFloat16: { const __nv_bfloat16 v = __float2bfloat16_rn(float(values[i])); std::memcpy(p, &v, 2); break; }
    }
  }
}

std::vector<double> decode(const Storage& st, const std::vector<unsigned char>& in) {
  std::vector<double> out(in.size() / st.bytes);
  for (std::size_t i = 0; i < out.size(); ++i) {
    const unsigned char* p = in.data() + i * st.bytes;
    switch (st.type) {
      case DType::kDouble: std::memcpy(&out[i], p, 8); break;
      case DType::kFloat: { float v; std::memcpy(&v, p, 4); out[i] = v; break; }
      case DType::kHalf: { __half v; std::memcpy(&v, p, 2); out[i] = __half2float(v); break; }
      case DType::kBFloat16: { __nv_bfloat16 v; std::memcpy(&v, p, 2); out[i] = __bfloat162float(v); break; }
    }
  }
  return out;
}

std::vector<double> random_values(std::size_t count, const Storage& st, Random& random) {
  std::vector<double> values(count);
  for (auto& v : values) v = random.next();
  std::vector<unsigned char> stored;
  encode(st, values, stored);
  return decode(st, stored);  // rounded to the storage type
}

ConvShape make_shape(const Case& c) {
  ConvShape s{};
  s.batch = c.batch; s.in_channels = c.in_channels; s.out_channels = c.out_channels; s.groups = c.groups;
  s.in_height = c.height; s.in_width = c.width;
  s.kernel_h = c.kernel_h; s.kernel_w = c.kernel_w;
  s.stride_h = c.stride_h; s.stride_w = c.stride_w; s.pad_h = c.pad_h; s.pad_w = c.pad_w;
  s.dilation_h = c.dilation_h; s.dilation_w = c.dilation_w;
  s.out_height = mula::output_size(c.height, c.kernel_h, c.stride_h, c.pad_h, c.dilation_h);
  s.out_width = mula::output_size(c.width, c.kernel_w, c.stride_w, c.pad_w, c.dilation_w);
  return s;
}

// The naive oracle: value and sum of |terms| (for the tolerance) per element.
struct Oracle {
  std::vector<double> output, output_abs, grad_input, grad_input_abs, grad_weight, grad_weight_abs,
      grad_bias, grad_bias_abs;
};

Oracle naive(const ConvShape& s, const std::vector<double>& input, const std::vector<double>& weight,
             const std::vector<double>& bias, Bias bias_mode, const std::vector<double>& grad_output) {
  const std::int64_t cin_g = s.in_channels / s.groups, cout_g = s.out_channels / s.groups;
  const std::int64_t taps = std::int64_t(s.kernel_h) * s.kernel_w;
  const std::int64_t in_plane = std::int64_t(s.in_height) * s.in_width;
  const std::int64_t out_plane = std::int64_t(s.out_height) * s.out_width;
  Oracle o;
  o.output.assign(s.batch * s.out_channels * out_plane, 0.0);
  o.output_abs = o.output;
  o.grad_input.assign(s.batch * s.in_channels * in_plane, 0.0);
  o.grad_input_abs = o.grad_input;
  o.grad_weight.assign(s.batch * s.out_channels * cin_g * taps, 0.0);
  o.grad_weight_abs = o.grad_weight;
  o.grad_bias.assign(s.batch * s.out_channels, 0.0);
  o.grad_bias_abs = o.grad_bias;
  for (std::int64_t n = 0; n < s.batch; ++n)
    for (std::int64_t co = 0; co < s.out_channels; ++co)
      for (int oy = 0; oy < s.out_height; ++oy)
        for (int ox = 0; ox < s.out_width; ++ox) {
          const std::int64_t out_index = ((n * s.out_channels + co) * s.out_height + oy) * s.out_width + ox;
          const double g = grad_output[out_index];
          double value = 0, magnitude = 0;
          if (bias_mode != Bias::kNone) {
            value = bias[bias_mode == Bias::kShared ? co : n * s.out_channels + co];
            magnitude = std::fabs(value);
          }
          o.grad_bias[n * s.out_channels + co] += g;
          o.grad_bias_abs[n * s.out_channels + co] += std::fabs(g);
          for (std::int64_t cl = 0; cl < cin_g; ++cl) {
            const std::int64_t ci = co / cout_g * cin_g + cl;
            for (int kh = 0; kh < s.kernel_h; ++kh)
              for (int kw = 0; kw < s.kernel_w; ++kw) {
                const int iy = oy * s.stride_h - s.pad_h + kh * s.dilation_h;
                const int ix = ox * s.stride_w - s.pad_w + kw * s.dilation_w;
                if (iy < 0 || iy >= s.in_height || ix < 0 || ix >= s.in_width) continue;
                const std::int64_t in_index = (n * s.in_channels + ci) * in_plane + std::int64_t(iy) * s.in_width + ix;
                const std::int64_t w_index = ((n * s.out_channels + co) * cin_g + cl) * taps + kh * s.kernel_w + kw;
                value += input[in_index] * weight[w_index];
                magnitude += std::fabs(input[in_index] * weight[w_index]);
                o.grad_input[in_index] += g * weight[w_index];
                o.grad_input_abs[in_index] += std::fabs(g * weight[w_index]);
                o.grad_weight[w_index] += g * input[in_index];
                o.grad_weight_abs[w_index] += std::fabs(g * input[in_index]);
              }
          }
          o.output[out_index] = value;
          o.output_abs[out_index] = magnitude;
        }
  return o;
}

bool compare(const char* what, const Storage& st, const std::vector<double>& got,
             const std::vector<double>& expected, const std::vector<double>& magnitude) {
  if (got.size() != expected.size()) {
    std::printf("  %s: size %zu, expected %zu\n", what, got.size(), expected.size());
    return false;
  }
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double tolerance = st.tolerance * (magnitude[i] + 1e-3) + 1e-300;
    if (!(std::fabs(got[i] - expected[i]) <= tolerance)) {
      std::printf("  %s[%zu] = %.17g, expected %.17g (tolerance %.3g)\n", what, i, got[i], expected[i], tolerance);
      return false;
    }
  }
  return true;
}

bool check(const Case& c, const Storage& st) {
  const ConvShape s = make_shape(c);
  Random random{0x9e3779b97f4a7c15ull ^ std::uint64_t(c.height * 131 + c.kernel_h * 7 + int(st.type))};
  const std::int64_t cin_g = s.in_channels / s.groups;
  const auto input = random_values(s.batch * s.in_channels * s.in_height * s.in_width, st, random);
  const auto weight = random_values(s.batch * s.out_channels * cin_g * s.kernel_h * s.kernel_w, st, random);
  const auto bias = random_values(c.bias == Bias::kPerSample ? s.batch * s.out_channels : s.out_channels, st, random);
  const std::int64_t out_count = s.batch * s.out_channels * s.out_height * s.out_width;
  const auto grad_output = random_values(out_count, st, random);
  const Oracle o = naive(s, input, weight, bias, c.bias, grad_output);

  std::vector<unsigned char> input_d, weight_d, bias_d, grad_output_d;
  encode(st, input, input_d);
  encode(st, weight, weight_d);
  encode(st, bias, bias_d);
  encode(st, grad_output, grad_output_d);
  std::vector<unsigned char> output_d(o.output.size() * st.bytes), grad_input_d(o.grad_input.size() * st.bytes),
      grad_weight_d(o.grad_weight.size() * st.bytes), grad_bias_d(o.grad_bias.size() * st.bytes),
      workspace(mula::cuda::backward_workspace_bytes(s, st.type));

  bool ok = true;
  auto launched = [&](cudaError_t status, const char* what) {
    if (status != cudaSuccess) std::printf("  %s launch failed: %s\n", what, cudaGetErrorString(status));
    ok = ok && status == cudaSuccess;
  };
  const void* bias_data = c.bias == Bias::kNone ? nullptr : bias_d.data();
  launched(mula::cuda::launch_forward({s, st.type, input_d.data(), weight_d.data(), bias_data,
                                       c.bias == Bias::kPerSample, output_d.data()},
                                      nullptr),
           "forward");
  // The backward with the given gradient pointers (null: not wanted).
  const auto backward = [&](void* grad_input, void* grad_weight, void* grad_bias) {
    return mula::cuda::launch_backward({s, st.type, grad_output_d.data(), input_d.data(), weight_d.data(),
                                        grad_input, grad_weight, grad_bias},
                                       workspace.data(), nullptr);
  };
  launched(backward(grad_input_d.data(), grad_weight_d.data(), grad_bias_d.data()), "backward");
  ok = ok && compare("output", st, decode(st, output_d), o.output, o.output_abs);
  ok = ok && compare("grad_input", st, decode(st, grad_input_d), o.grad_input, o.grad_input_abs);
  ok = ok && compare("grad_weight", st, decode(st, grad_weight_d), o.grad_weight, o.grad_weight_abs);
  ok = ok && compare("grad_bias", st, decode(st, grad_bias_d), o.grad_bias, o.grad_bias_abs);

  // Each gradient alone (the others' pointers null) gives the same values.
  std::vector<unsigned char> input_only(grad_input_d.size()), weight_only(grad_weight_d.size()),
      bias_only(grad_bias_d.size());
  launched(backward(input_only.data(), nullptr, nullptr), "grad_input only");
  launched(backward(nullptr, weight_only.data(), nullptr), "grad_weight only");
  launched(backward(nullptr, nullptr, bias_only.data()), "grad_bias only");
  ok = ok && input_only == grad_input_d && weight_only == grad_weight_d && bias_only == grad_bias_d;
  return ok;
}

// clang-format off
const Case kCases[] = {
  // name                    N  Cin Cout g   H   W  kh kw sh sw ph pw dh dw  bias
  {"depthwise_k3",           2, 3,  3,  3,  9,  11, 3, 3, 1, 1, 1, 1, 1, 1, Bias::kPerSample},
  {"depthwise_k5_stride2",   1, 2,  2,  2,  13, 12, 5, 5, 2, 2, 2, 1, 1, 1, Bias::kShared},
  {"depthwise_k7_mula",      2, 2,  2,  2,  12, 10, 7, 7, 1, 1, 3, 3, 1, 1, Bias::kNone},
  {"depthwise_k7_dilation2", 1, 2,  2,  2,  17, 15, 7, 7, 1, 1, 6, 5, 2, 2, Bias::kShared},
  {"split_planes_k7",        1, 2,  2,  2,  41, 37, 7, 7, 1, 1, 3, 3, 1, 1, Bias::kPerSample},
  {"split_planes_generic",   1, 1,  1,  1,  35, 40, 2, 4, 1, 2, 1, 2, 1, 1, Bias::kShared},
  {"generic_nonsquare",      2, 2,  4,  2,  8,  9,  3, 5, 2, 1, 0, 2, 1, 2, Bias::kPerSample},
  {"generic_k1",             1, 3,  2,  1,  5,  6,  1, 1, 1, 1, 0, 0, 1, 1, Bias::kShared},
  {"dense_groups1_k3",       2, 3,  2,  1,  7,  6,  3, 3, 2, 2, 1, 1, 1, 1, Bias::kNone},
  {"groups2_k5_dilation2",   1, 4,  6,  2,  11, 12, 5, 5, 1, 2, 4, 3, 2, 1, Bias::kPerSample},
  {"shrunk_tile_dilation",   1, 1,  1,  1,  90, 90, 5, 5, 1, 1, 0, 0, 12, 12, Bias::kShared},
  {"empty_batch",            0, 2,  2,  2,  8,  8,  3, 3, 1, 1, 1, 1, 1, 1, Bias::kPerSample},
};
const Storage kStorages[] = {
  {DType::kDouble, 8, 1e-12, "float64"},
  {DType::kFloat, 4, 1e-5, "float32"},
  {DType::kHalf, 2, 2e-3, "float16"},
  {DType::kBFloat16, 2, 1e-2, "bfloat16"},
};
// clang-format on

}  // namespace

int main(int argc, char** argv) {
  const char* filter = argc > 1 ? argv[1] : "";
  int failures = 0, runs = 0;
  for (const Case& c : kCases) {
    for (const Storage& st : kStorages) {
      const std::string name = std::string(c.name) + "/" + st.name;
      if (name.find(filter) == std::string::npos) continue;
      const bool ok = check(c, st);
      std::printf("%-40s %s\n", name.c_str(), ok ? "ok" : "MISMATCH");
      failures += !ok;
      ++runs;
    }
  }
  // A dilated kernel too wide for any shared-memory tile is refused up front.
  ConvShape too_wide = make_shape({"too_wide", 1, 1, 1, 1, 400, 400, 3, 3, 1, 1, 0, 0, 150, 150, Bias::kNone});
  if (mula::cuda::fits_shared_memory(too_wide, DType::kDouble)) {
    std::printf("fits_shared_memory accepted a 301 x 301 dilated kernel\n");
    ++failures;
  }
  std::printf("%d of %d runs matched the naive loop\n", runs - failures, runs);
  return failures == 0 && runs > 0 ? 0 : 1;
}
