// Calling mula_ops::dynamic_conv2d from C++ (libtorch), through the dispatcher
// as any registered torch operator: per-sample 7x7 depthwise filters, MuLA's
// case, checked against at::conv2d run one sample at a time.
//
// Build and run: see CMakeLists.txt (ctest runs this as libtorch_example).
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/torch.h>

#include <iostream>
#include <optional>

int main() {
  const int64_t batch = 2, channels = 4, size = 16, kernel = 7, padding = 3;
  torch::manual_seed(0);
  const auto input = torch::randn({batch, channels, size, size});
  const auto weight =
      torch::randn({batch, channels, 1, kernel, kernel});  // one filter bank per sample
  const auto bias = torch::randn({batch, channels});

  auto dynamic_conv2d =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("mula_ops::dynamic_conv2d", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                            c10::IntArrayRef, c10::IntArrayRef, c10::IntArrayRef, int64_t)>();
  const auto output =
      dynamic_conv2d.call(input, weight, bias, {1, 1}, {padding, padding}, {1, 1}, channels);

  for (int64_t n = 0; n < batch; ++n) {
    const auto expected = at::conv2d(input[n].unsqueeze(0), weight[n], bias[n], {1, 1},
                                     {padding, padding}, {1, 1}, channels);
    if (!torch::allclose(output[n].unsqueeze(0), expected, 1e-5, 1e-5)) {
      std::cerr << "sample " << n << " differs from F.conv2d\n";
      return 1;
    }
  }
  std::cout << "dynamic_conv2d " << output.sizes() << " matches F.conv2d per sample\n";
  return 0;
}
