"""The training loss of the authors' code: summed over stages (intermediate
supervision), MSE on the pose heatmaps plus a weighted NLL on the parsing
log-probabilities."""
import torch.nn.functional as F
from torch import Tensor

from .models import MuLAOutput


def mula_loss(output: MuLAOutput, heatmaps: Tensor, parsing: Tensor, parsing_weight: float = 0.01) -> Tensor:
    """heatmaps: (N, joints + 1, h, w) float targets; parsing: (N, S, S) int64 labels."""
    total = heatmaps.new_zeros(())
    for pose, log_probs in zip(output.pose, output.parsing):
        total = total + F.mse_loss(pose.float(), heatmaps) + parsing_weight * F.nll_loss(log_probs.float(), parsing)
    return total
