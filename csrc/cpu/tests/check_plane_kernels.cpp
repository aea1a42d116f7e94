// Runs every instruction-set build of the CPU plane kernels this CPU has on
// buffers of exactly the tensors' sizes, under ASan/UBSan (ctest): the tiles'
// vector loads, sliding windows and tails must stay inside the staged planes
// and the tensors. The forward is also checked against a naive float64
// correlation, so a kernel that reads the right bytes wrongly fails too;
// bfloat16 runs too, for the builds that compute it on its own layouts.
// Exit status 0 when every case holds.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "../plane_kernels.h"

namespace {

using mula::BackwardArgs;
using mula::ConvShape;
using mula::DType;
using mula::ForwardArgs;

struct Case {
  int64_t in_channels, out_channels, groups, size_h, size_w, kernel, stride, padding, dilation;
};

ConvShape shape_of(const Case& c) {
  ConvShape s;
  s.batch = 2;
  s.in_channels = c.in_channels;
  s.out_channels = c.out_channels;
  s.groups = c.groups;
  s.in_height = c.size_h;
  s.in_width = c.size_w;
  s.kernel_h = s.kernel_w = c.kernel;
  s.stride_h = s.stride_w = c.stride;
  s.pad_h = s.pad_w = c.padding;
  s.dilation_h = s.dilation_w = c.dilation;
  s.out_height = mula::output_size(c.size_h, c.kernel, c.stride, c.padding, c.dilation);
  s.out_width = mula::output_size(c.size_w, c.kernel, c.stride, c.padding, c.dilation);
  return s;
}

// bfloat16 storage for the values below, multiples of 1/32 that it holds
// exactly (so conversion by truncation is exact).
struct BFloat16 {
  uint16_t bits = 0;
  BFloat16() = default;
  explicit BFloat16(double value) {
    const float f = static_cast<float>(value);
    uint32_t b;
    std::memcpy(&b, &f, sizeof b);
    bits = static_cast<uint16_t>(b >> 16);
  }
  explicit operator double() const {
    const uint32_t b = uint32_t{bits} << 16;
    float f;
    std::memcpy(&f, &b, sizeof f);
    return f;
  }
};

const char* dtype_name(DType dtype) {
  return dtype == DType::kFloat ? "float" : dtype == DType::kDouble ? "double" : "bfloat16";
}

// A deterministic spread of values in [-1, 1).
template <typename T>
std::vector<T> values(std::size_t count, int seed) {
  std::vector<T> v(count);
  for (std::size_t i = 0; i < count; ++i) v[i] = static_cast<T>(((i * 37 + seed * 11) % 64) / 32.0 - 1.0);
  return v;
}

// output[n, oc, y, x] by the definition, in float64.
template <typename T>
std::vector<double> naive_forward(const ConvShape& s, const std::vector<T>& input,
                                  const std::vector<T>& weight) {
  const int64_t in_per_group = s.in_channels / s.groups, out_per_group = s.out_channels / s.groups;
  std::vector<double> out(s.batch * s.out_channels * s.out_height * s.out_width, 0.0);
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t oc = 0; oc < s.out_channels; ++oc)
      for (int64_t y = 0; y < s.out_height; ++y)
        for (int64_t x = 0; x < s.out_width; ++x) {
          double sum = 0;
          for (int64_t icg = 0; icg < in_per_group; ++icg) {
            const int64_t ic = oc / out_per_group * in_per_group + icg;
            for (int64_t i = 0; i < s.kernel_h; ++i)
              for (int64_t j = 0; j < s.kernel_w; ++j) {
                const int64_t iy = y * s.stride_h - s.pad_h + i * s.dilation_h;
                const int64_t ix = x * s.stride_w - s.pad_w + j * s.dilation_w;
                if (iy < 0 || iy >= s.in_height || ix < 0 || ix >= s.in_width) continue;
                sum += double(input[((n * s.in_channels + ic) * s.in_height + iy) * s.in_width + ix]) *
                       double(weight[(((n * s.out_channels + oc) * in_per_group + icg) * s.kernel_h + i) *
                                         s.kernel_w + j]);
              }
          }
          out[((n * s.out_channels + oc) * s.out_height + y) * s.out_width + x] = sum;
        }
  return out;
}

template <typename T>
bool check(const mula::cpu::PlaneKernels& kernels, const Case& c, DType dtype, double tolerance) {
  const ConvShape s = shape_of(c);
  const int64_t in_per_group = s.in_channels / s.groups;
  const auto input = values<T>(s.batch * s.in_channels * s.in_height * s.in_width, 1);
  const auto weight = values<T>(s.batch * s.out_channels * in_per_group * s.kernel_h * s.kernel_w, 2);
  const auto grad_output = values<T>(s.batch * s.out_channels * s.out_height * s.out_width, 3);
  std::vector<T> output(grad_output.size()), grad_input(input.size()), grad_weight(weight.size()),
      grad_bias(s.batch * s.out_channels);

  const ForwardArgs forward{s, dtype, input.data(), weight.data(), nullptr, false, output.data()};
  kernels.forward(forward, 0, s.batch * s.out_channels);
  const BackwardArgs backward{s, dtype, grad_output.data(), input.data(), weight.data(),
                              grad_input.data(), grad_weight.data(), grad_bias.data()};
  kernels.backward_output_planes(backward, 0, s.batch * s.out_channels);
  if (!mula::is_depthwise(s)) kernels.backward_input_planes(backward, 0, s.batch * s.in_channels);

  const auto expected = naive_forward(s, input, weight);
  double error = 0;
  // Relative to the value (bfloat16 rounds the output), at least 1.
  for (std::size_t i = 0; i < expected.size(); ++i) {
    error = std::fmax(error, std::fabs(double(output[i]) - expected[i]) / std::fmax(1.0, std::fabs(expected[i])));
  }
  const bool ok = error <= tolerance;
  std::printf("%-11s k%ld s%ld d%ld g%ld %ldx%ld %ld->%ld %-6s max error %.2e %s\n", kernels.isa,
              c.kernel, c.stride, c.dilation, c.groups, c.size_h, c.size_w, c.in_channels,
              c.out_channels, dtype_name(dtype), error, ok ? "ok" : "MISMATCH");
  return ok;
}

}  // namespace

int main() {
  std::vector<const mula::cpu::PlaneKernels*> builds{&mula::cpu::plane_kernels_generic()};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    builds.push_back(&mula::cpu::plane_kernels_avx2());
  if (__builtin_cpu_supports("avx512f")) builds.push_back(&mula::cpu::plane_kernels_avx512());
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512bf16")) {
    builds.push_back(&mula::cpu::plane_kernels_avx512_bf16());
  }
  // Depthwise, channel-blocked (blocks of every size: 13 = 6 + 4 + 2 + 1
  // output planes; 7 input planes, so the weight gradient's plane blocks
  // have tails) and the general loops; 1x1 to 7x7, stride 2, dilation 2;
  // planes narrower than a vector, and 32 wide (whole vectors, no pad
  // columns); groups of 4 planes with a 1x1 filter (where GCC 12 once
  // vectorized the generic build's tiles into reads past the last plane);
  // a 1x1 matrix product of planes whose last pixels fill no whole vector.
  // Winograd tiles: tile rows shorter than a vector (their last vector
  // spills into the next row), odd output sizes, grad_input's margin
  // 2 - padding negative, the weight gradient on them (25x37), and a plane
  // in bands of tile rows.
  const Case cases[] = {{4, 4, 4, 7, 9, 3, 1, 1, 1},   {4, 4, 4, 32, 32, 7, 1, 3, 1},
                        {4, 4, 4, 32, 32, 3, 2, 1, 1}, {4, 4, 4, 19, 37, 5, 1, 4, 2},
                        {7, 13, 1, 32, 32, 1, 1, 0, 1}, {7, 13, 1, 32, 32, 3, 1, 1, 1},
                        {4, 14, 2, 9, 11, 5, 2, 2, 1}, {4, 14, 2, 12, 10, 7, 1, 6, 2},
                        {2, 4, 2, 8, 8, 2, 1, 1, 1}, {16, 16, 4, 32, 32, 1, 1, 0, 1},
                        {33, 40, 1, 25, 37, 3, 1, 1, 1}, {48, 64, 2, 12, 40, 3, 1, 0, 1},
                        {20, 20, 1, 10, 11, 3, 1, 3, 1}, {20, 20, 1, 128, 128, 3, 1, 1, 1},
                        {6, 26, 2, 7, 9, 1, 1, 0, 1}};
  bool ok = true;
  for (const auto* kernels : builds) {
    for (const Case& c : cases) {
      ok &= check<float>(*kernels, c, DType::kFloat, 1e-4);
      ok &= check<double>(*kernels, c, DType::kDouble, 1e-10);
      ok &= check<BFloat16>(*kernels, c, DType::kBFloat16, 1.0 / 256);
    }
  }
  return ok ? 0 : 1;
}
