// Runs one pass of the CUDA kernels on the emulator under its cost model
// (cost_model.h) and prints the counts of every launch as a JSON array.
// Built and driven by benchmarks/gpu_model.py:
//
//   gpu_cost_model --batch 16 --in-channels 256 --out-channels 256 --groups 256
//                  --height 64 --width 64 --kernel 7 --stride 1 --padding 3
//                  --dilation 1 --dtype float32 --pass forward --fraction 0.0625
//
// The operands are zero (the kernels have no data-dependent control flow, so
// the values do not change the counts); --fraction profiles that share of
// every grid's blocks (cost_model.h). Without --bias the convolution has none.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>

#include "../cuda/dynamic_conv_launch.h"
#include "cuda_emulator.h"

namespace {

using mula::ConvShape;
using mula::DType;

// Zeroed device-like memory, 256-byte aligned as cudaMalloc's.
struct Buffer {
  explicit Buffer(std::size_t bytes)
      : data(std::aligned_alloc(256, (bytes + 255) / 256 * 256 + 256), &std::free) {
    std::memset(data.get(), 0, (bytes + 255) / 256 * 256 + 256);
  }
  std::unique_ptr<void, decltype(&std::free)> data;
  void* get() const { return data.get(); }
};

int fail(const std::string& message) {
  std::fprintf(stderr, "gpu_cost_model: %s\n", message.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> options = {
      {"batch", "1"},   {"in-channels", "1"}, {"out-channels", "1"}, {"groups", "1"},
      {"height", "1"},  {"width", "1"},       {"kernel", "1"},       {"stride", "1"},
      {"padding", "0"}, {"dilation", "1"},    {"dtype", "float32"},  {"pass", "forward"},
      {"fraction", "1"}, {"bias", "0"}};
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string name = argv[i];
    if (name.rfind("--", 0) != 0 || options.count(name.substr(2)) == 0)
      return fail("unknown option " + name);
    options[name.substr(2)] = argv[i + 1];
  }
  auto number = [&](const char* name) { return std::strtoll(options[name].c_str(), nullptr, 10); };
  const std::map<std::string, std::pair<DType, std::size_t>> dtypes = {
      {"float32", {DType::kFloat, 4}}, {"float64", {DType::kDouble, 8}},
      {"float16", {DType::kHalf, 2}},  {"bfloat16", {DType::kBFloat16, 2}}};
  if (dtypes.count(options["dtype"]) == 0) return fail("dtype must be float32, float64, float16 or bfloat16");
  const auto [dtype, element] = dtypes.at(options["dtype"]);

  ConvShape s;
  s.batch = number("batch");
  s.in_channels = number("in-channels");
  s.out_channels = number("out-channels");
  s.groups = number("groups");
  s.in_height = number("height");
  s.in_width = number("width");
  s.kernel_h = s.kernel_w = number("kernel");
  s.stride_h = s.stride_w = number("stride");
  s.pad_h = s.pad_w = number("padding");
  s.dilation_h = s.dilation_w = number("dilation");
  s.out_height = mula::output_size(s.in_height, s.kernel_h, s.stride_h, s.pad_h, s.dilation_h);
  s.out_width = mula::output_size(s.in_width, s.kernel_w, s.stride_w, s.pad_w, s.dilation_w);
  if (s.groups <= 0 || s.in_channels % s.groups != 0 || s.out_channels % s.groups != 0 ||
      s.out_height <= 0 || s.out_width <= 0)
    return fail("not a valid convolution");
  if (!mula::cuda::fits_shared_memory(s, dtype)) return fail("the filter does not fit shared memory");

  const std::size_t input = std::size_t(s.batch * s.in_channels * s.in_height * s.in_width);
  const std::size_t output = std::size_t(s.batch * s.out_channels * s.out_height * s.out_width);
  const std::size_t weight = std::size_t(s.batch * s.out_channels * (s.in_channels / s.groups) *
                                         s.kernel_h * s.kernel_w);
  const std::size_t bias = options["bias"] == "1" ? std::size_t(s.batch * s.out_channels) : 0;
  Buffer x(input * element), w(weight * element), y(output * element), b(bias * element);

  mula::emu::CostModel model(std::strtod(options["fraction"].c_str(), nullptr));
  cudaError_t status = cudaSuccess;
  if (options["pass"] == "forward") {
    const mula::ForwardArgs args{s, dtype, x.get(), w.get(), bias ? b.get() : nullptr, true, y.get()};
    status = mula::cuda::launch_forward(args, nullptr);
  } else if (options["pass"] == "backward") {
    Buffer dx(input * element), dw(weight * element), db(bias * element);
    Buffer workspace(mula::cuda::backward_workspace_bytes(s, dtype));
    const mula::BackwardArgs args{s,        dtype,    y.get(), x.get(), w.get(),
                                  dx.get(), dw.get(), bias ? db.get() : nullptr};
    status = mula::cuda::launch_backward(args, workspace.get(), nullptr);
  } else {
    return fail("pass must be forward or backward");
  }
  if (status != cudaSuccess) return fail(cudaGetErrorString(status));
  std::printf("[");
  for (std::size_t i = 0; i < model.launches.size(); ++i)
    std::printf("%s%s", i ? ",\n " : "", mula::emu::to_json(model.launches[i]).c_str());
  std::printf("]\n");
  return 0;
}
