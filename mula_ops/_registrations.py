"""Fake (meta) kernels and autograd for the C++ operators, registered with
torch.library so the ops work under torch.compile, torch.export and autograd
to any order. The schemas live in csrc/dynamic_conv_schema.h.

``register(namespace)`` registers them for ``namespace::dynamic_conv2d`` and
``namespace::dynamic_conv2d_backward``: mula_ops for its own kernels, and the
tests for the emulated CUDA kernels (``mula_emulated``), so both run through
this one autograd."""
import torch
from torch import Tensor

from ._arguments import output_size


def output_memory_format(input: Tensor) -> torch.memory_format:
    """The output keeps the input's memory format, as F.conv2d does (the C++
    side reads at::Tensor::suggest_memory_format, which this mirrors)."""
    return torch._prims_common.suggest_memory_format(input)


def register(namespace: str) -> None:
    forward = getattr(torch.ops, namespace).dynamic_conv2d
    backward = getattr(torch.ops, namespace).dynamic_conv2d_backward

    @torch.library.register_fake(f"{namespace}::dynamic_conv2d")
    def _forward_fake(input, weight, bias, stride, padding, dilation, groups):
        torch._check(input.dim() == 4, lambda: f"dynamic_conv2d: expected input to be 4-D, got {input.dim()}-D")
        torch._check(weight.dim() == 5, lambda: f"dynamic_conv2d: expected weight to be 5-D, got {weight.dim()}-D")
        for name, tensor in (("weight", weight), ("bias", bias)):
            torch._check(tensor is None or tensor.device == input.device,
                         lambda: f"dynamic_conv2d: expected {name} on the same device as input ({input.device})")
        torch._check(weight.shape[0] == input.shape[0],
                     lambda: "dynamic_conv2d: expected weight.size(0) to equal the batch size of input")
        out_h, out_w = (output_size(*sizes) for sizes in
                        zip(input.shape[2:], weight.shape[3:], stride, padding, dilation))
        return input.new_empty((input.shape[0], weight.shape[1], out_h, out_w)).contiguous(
            memory_format=output_memory_format(input))

    @torch.library.register_fake(f"{namespace}::dynamic_conv2d_backward")
    def _backward_fake(grad_output, input, weight, stride, padding, dilation, groups, output_mask):
        grad_input = input.new_empty(input.shape) if output_mask[0] else input.new_empty((0,))
        grad_weight = weight.new_empty(weight.shape) if output_mask[1] else weight.new_empty((0,))
        grad_bias = (grad_output.new_empty((grad_output.shape[0], grad_output.shape[1]))
                     if output_mask[2] else grad_output.new_empty((0,)))
        return grad_input, grad_weight, grad_bias

    def _forward_setup_context(ctx, inputs, output):
        input, weight, bias, stride, padding, dilation, groups = inputs
        ctx.save_for_backward(input, weight)
        ctx.hyper_parameters = (stride, padding, dilation, groups)
        ctx.shared_bias = bias is not None and bias.dim() == 1

    def _forward_autograd(ctx, grad_output: Tensor):
        input, weight = ctx.saved_tensors
        output_mask = list(ctx.needs_input_grad[:3])
        grad_input, grad_weight, grad_bias = backward(
            grad_output, input, weight, *ctx.hyper_parameters, output_mask)
        if output_mask[2] and ctx.shared_bias:
            grad_bias = grad_bias.sum(0)  # the kernels return one bias gradient per sample
        return (grad_input if output_mask[0] else None,
                grad_weight if output_mask[1] else None,
                grad_bias if output_mask[2] else None,
                None, None, None, None)

    def _backward_setup_context(ctx, inputs, output):
        grad_output, input, weight, stride, padding, dilation, groups, output_mask = inputs
        ctx.save_for_backward(grad_output, input, weight)
        ctx.hyper_parameters = (stride, padding, dilation, groups)
        ctx.output_mask = output_mask

    def _backward_autograd(ctx, grad_grad_input, grad_grad_weight, grad_grad_bias):
        """The backward is linear in grad_output and bilinear in (grad_output,
        input) and (grad_output, weight), so its own gradients are the forward
        and the fused backward again:
            grad_input  = B(go, w)     ->  d/d go: F(ggi, w),      d/dw: B_w(go, ggi)
            grad_weight = B(go, x)     ->  d/d go: F(x, ggw),      d/dx: B_x(go, ggw)
            grad_bias   = sum(go)      ->  d/d go: ggb broadcast (F's per-sample bias)
        where F is the forward and B_x, B_w the backward's grad_input, grad_weight."""
        grad_output, input, weight = ctx.saved_tensors
        hyper = ctx.hyper_parameters
        wanted = [g if asked else None for g, asked in
                  zip((grad_grad_input, grad_grad_weight, grad_grad_bias), ctx.output_mask)]
        grad_grad_input, grad_grad_weight, grad_grad_bias = wanted
        need_grad_output, need_input, need_weight = ctx.needs_input_grad[:3]

        grad_of_grad_output = None
        if need_grad_output:
            terms = []
            if grad_grad_input is not None or grad_grad_bias is not None:
                # A zero input plane carries the per-sample bias term alone.
                source = grad_grad_input if grad_grad_input is not None else torch.zeros_like(input)
                terms.append(forward(source, weight, grad_grad_bias, *hyper))
            if grad_grad_weight is not None:
                terms.append(forward(input, grad_grad_weight, None, *hyper))
            grad_of_grad_output = sum(terms[1:], terms[0]) if terms else None

        grad_of_input = None
        if need_input and grad_grad_weight is not None:
            grad_of_input = backward(grad_output, input, grad_grad_weight, *hyper, [True, False, False])[0]
        grad_of_weight = None
        if need_weight and grad_grad_input is not None:
            grad_of_weight = backward(grad_output, grad_grad_input, weight, *hyper, [False, True, False])[1]
        return grad_of_grad_output, grad_of_input, grad_of_weight, None, None, None, None, None

    torch.library.register_autograd(f"{namespace}::dynamic_conv2d", _forward_autograd,
                                    setup_context=_forward_setup_context)
    torch.library.register_autograd(f"{namespace}::dynamic_conv2d_backward", _backward_autograd,
                                    setup_context=_backward_setup_context)


register("mula_ops")
