"""Fake (meta) kernels and autograd for the C++ operators, registered with
torch.library so the ops work under torch.compile, torch.export and autograd.
The schemas live in csrc/ops.cpp."""
import torch
from torch import Tensor

_forward = torch.ops.mula_ops.dynamic_conv2d
_backward = torch.ops.mula_ops.dynamic_conv2d_backward


def _output_size(size, kernel, stride, padding, dilation):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


@torch.library.register_fake("mula_ops::dynamic_conv2d")
def _dynamic_conv2d_fake(input, weight, bias, stride, padding, dilation, groups):
    torch._check(input.dim() == 4, lambda: f"dynamic_conv2d: expected input to be 4-D, got {input.dim()}-D")
    torch._check(weight.dim() == 5, lambda: f"dynamic_conv2d: expected weight to be 5-D, got {weight.dim()}-D")
    for name, tensor in (("weight", weight), ("bias", bias)):
        torch._check(tensor is None or tensor.device == input.device,
                     lambda: f"dynamic_conv2d: expected {name} on the same device as input ({input.device})")
    torch._check(weight.shape[0] == input.shape[0],
                 lambda: "dynamic_conv2d: expected weight.size(0) to equal the batch size of input")
    out_h = _output_size(input.shape[2], weight.shape[3], stride[0], padding[0], dilation[0])
    out_w = _output_size(input.shape[3], weight.shape[4], stride[1], padding[1], dilation[1])
    return input.new_empty((input.shape[0], weight.shape[1], out_h, out_w))


@torch.library.register_fake("mula_ops::dynamic_conv2d_backward")
def _dynamic_conv2d_backward_fake(grad_output, input, weight, stride, padding, dilation, groups, output_mask):
    grad_input = input.new_empty(input.shape) if output_mask[0] else input.new_empty((0,))
    grad_weight = weight.new_empty(weight.shape) if output_mask[1] else weight.new_empty((0,))
    grad_bias = (grad_output.new_empty((grad_output.shape[0], grad_output.shape[1]))
                 if output_mask[2] else grad_output.new_empty((0,)))
    return grad_input, grad_weight, grad_bias


def _setup_context(ctx, inputs, output):
    input, weight, bias, stride, padding, dilation, groups = inputs
    ctx.save_for_backward(input, weight)
    ctx.hyper_parameters = (stride, padding, dilation, groups)
    ctx.shared_bias = bias is not None and bias.dim() == 1


def _dynamic_conv2d_autograd(ctx, grad_output: Tensor):
    input, weight = ctx.saved_tensors
    output_mask = list(ctx.needs_input_grad[:3])
    grad_input, grad_weight, grad_bias = _backward(
        grad_output, input, weight, *ctx.hyper_parameters, output_mask)
    if output_mask[2] and ctx.shared_bias:
        grad_bias = grad_bias.sum(0)  # the kernels return one bias gradient per sample
    return (grad_input if output_mask[0] else None,
            grad_weight if output_mask[1] else None,
            grad_bias if output_mask[2] else None,
            None, None, None, None)


torch.library.register_autograd("mula_ops::dynamic_conv2d", _dynamic_conv2d_autograd,
                                setup_context=_setup_context)
