"""Pose targets: Gaussian heatmaps on the stride-4 grid, and decoding heatmaps back to joints."""
import math

import numpy as np
import torch
import torch.nn.functional as F

from .record import NUM_JOINTS

HEATMAP_STRIDE = 4
REFERENCE_INPUT_SIZE = 256  # the size the spec's pixel constants (sigma 7, shift 40) refer to
SIGMA_AT_256 = 7.0
CUTOFF = 0.01


def default_sigma(input_size):
    """Sigma in input pixels: 7 at 256, scaled with the input so a joint covers the same
    fraction of the person at any input size (e.g. 3.5 at 128)."""
    return SIGMA_AT_256 * input_size / REFERENCE_INPUT_SIZE


def grid_centres(input_size, stride=HEATMAP_STRIDE):
    """Input-pixel coordinates of the heatmap cell centres: stride/2 - 0.5 + g*stride."""
    return stride / 2 - 0.5 + stride * np.arange(input_size // stride, dtype=np.float32)


def make_heatmaps(joints, input_size, sigma=None, stride=HEATMAP_STRIDE):
    """float32 (17, S/stride, S/stride) targets for joints (16, 3) in input pixels.

    One Gaussian exp(-d^2 / (2 sigma^2)) per annotated joint (NaN = missing gives an empty
    channel), values under 0.01 set to 0, clipped to 1; channel 16 = 1 - max over the joints.
    """
    if input_size % stride:
        raise ValueError(f"input_size must be a multiple of the heatmap stride {stride}, got {input_size}")
    sigma = default_sigma(input_size) if sigma is None else sigma
    centres = grid_centres(input_size, stride)
    joints = np.asarray(joints, dtype=np.float32)
    present = ~np.isnan(joints[:, :2]).any(axis=1)
    x = np.where(present, joints[:, 0], 0)[:, None]
    y = np.where(present, joints[:, 1], 0)[:, None]
    gx = np.exp(-((centres[None, :] - x) ** 2) / (2 * sigma * sigma))
    gy = np.exp(-((centres[None, :] - y) ** 2) / (2 * sigma * sigma))
    maps = gy[:, :, None] * gx[:, None, :]
    maps[maps < CUTOFF] = 0
    maps[~present] = 0
    np.clip(maps, 0, 1, out=maps)
    background = 1 - maps.max(axis=0, keepdims=True)
    return np.concatenate([maps, background]).astype(np.float32)


def gaussian_blur(maps, sigma):
    """Separable Gaussian blur of (..., H, W) with radius ceil(3 sigma), zero padding."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
    kernel = torch.exp(-offsets ** 2 / (2 * sigma * sigma))
    kernel = kernel / kernel.sum()
    shape = maps.shape
    planes = maps.reshape(-1, 1, shape[-2], shape[-1])
    planes = F.conv2d(planes, kernel.view(1, 1, 1, -1), padding=(0, radius))
    planes = F.conv2d(planes, kernel.view(1, 1, -1, 1), padding=(radius, 0))
    return planes.reshape(shape)


def heatmaps_to_joints(heatmaps, input_size, blur_sigma=3.0):
    """Joint positions in input pixels from (N, >=16, h, w) heatmaps: float32 (N, 16, 2).

    The evaluation protocol of the spec: resize the joint channels to the input size
    (bilinear), blur with a Gaussian of blur_sigma input pixels (scaled like sigma:
    pass blur_sigma * S / 256 for other sizes if wanted; 0 disables), take the argmax.
    """
    maps = heatmaps[:, :NUM_JOINTS].float()
    maps = F.interpolate(maps, size=(input_size, input_size), mode="bilinear", align_corners=False)
    if blur_sigma > 0:
        maps = gaussian_blur(maps, blur_sigma)
    flat = maps.flatten(2).argmax(dim=2)
    xy = torch.stack([flat % input_size, flat // input_size], dim=2)
    return xy.to(torch.float32)
