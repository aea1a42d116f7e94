"""Multi-process data-parallel training under torchrun: process group set-up
and batch norm synchronised across processes (gloo on the CPU, NCCL on GPUs)."""
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclass
class Context:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str = "auto") -> Context:
    """Joins the process group when started by torchrun (WORLD_SIZE set)."""
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Context(device=torch.device("cuda" if use_cuda else "cpu"))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return Context(rank, world_size, torch.device("cuda", local_rank) if use_cuda else torch.device("cpu"))


def teardown(context: Context) -> None:
    if context.distributed:
        dist.destroy_process_group()


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the gradient of a sum that every process uses is
    again the sum of the processes' gradients."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return _AllReduceSum.apply(grad)


class CrossProcessBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the whole global batch, on
    any device (torch.nn.SyncBatchNorm runs on GPUs only). Two passes, as a
    single-process batch norm computes them: the global mean, then the global
    mean of squared deviations from it; both sums are all-reduced
    differentiably, so the backward pass sees the global statistics too."""

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        local = input.to(torch.promote_types(input.dtype, torch.float32))  # half types: float32 statistics
        count = _AllReduceSum.apply(local.new_tensor([local.numel() // local.shape[1]]))
        mean = _AllReduceSum.apply(local.sum((0, 2, 3))) / count
        centred = local - mean.view(1, -1, 1, 1)
        var = _AllReduceSum.apply(centred.square().sum((0, 2, 3))) / count
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            self.running_mean.lerp_(mean.to(self.running_mean.dtype), self.momentum)
            unbiased = var * count / (count - 1).clamp_min(1)
            self.running_var.lerp_(unbiased.to(self.running_var.dtype), self.momentum)
        scale = self.weight * torch.rsqrt(var + self.eps)
        return (centred * scale.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)).to(input.dtype)


def synchronise_batch_norm(model: nn.Module, device: torch.device) -> nn.Module:
    """Replaces every BatchNorm2d by its cross-process version (in place),
    keeping its parameters and buffers."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            replacement = CrossProcessBatchNorm2d(child.num_features, child.eps, child.momentum,
                                                  child.affine, child.track_running_stats)
            for key, value in list(child.named_parameters(recurse=False)) + list(child.named_buffers(recurse=False)):
                setattr(replacement, key, value)  # the same tensors: optimizers keep working
            setattr(model, name, replacement)
        else:
            synchronise_batch_norm(child, device)
    return model


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum over processes (no-op in a single process); used for metric counts."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
    return tensor


__all__ = ["Context", "setup", "teardown", "synchronise_batch_norm", "all_reduce_sum"]
