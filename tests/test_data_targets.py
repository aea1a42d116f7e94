"""Pose targets against a naive float64 loop, and decoding heatmaps back to joints."""
import math

import numpy as np
import pytest
import torch

from mula_model.data import default_sigma, gaussian_blur, heatmaps_to_joints, make_heatmaps


def naive_heatmap(x, y, size, sigma, stride=4):
    cells = size // stride
    out = np.zeros((cells, cells))
    for gy in range(cells):
        for gx in range(cells):
            cx, cy = stride / 2 - 0.5 + gx * stride, stride / 2 - 0.5 + gy * stride
            value = math.exp(-((cx - x) ** 2 + (cy - y) ** 2) / (2 * sigma ** 2))
            out[gy, gx] = min(value, 1.0) if value >= 0.01 else 0.0
    return out


def joints_with(positions):
    joints = np.full((16, 3), np.nan, dtype=np.float32)
    for index, (x, y) in positions.items():
        joints[index] = (x, y, 1)
    return joints


@pytest.mark.parametrize("size, sigma", [(64, None), (128, 3.5), (256, 7.0)])
def test_heatmaps_match_naive_formula(size, sigma):
    positions = {0: (9.5, 13.5), 7: (size / 2 + 0.3, size / 3 - 1.7), 15: (-3.0, 5.0)}
    maps = make_heatmaps(joints_with(positions), size, sigma)
    sigma = default_sigma(size) if sigma is None else sigma
    assert maps.shape == (17, size // 4, size // 4) and maps.dtype == np.float32
    for joint in range(16):
        expected = naive_heatmap(*positions[joint], size, sigma) if joint in positions else 0
        assert np.allclose(maps[joint], expected, atol=1e-6)
    assert np.allclose(maps[16], 1 - maps[:16].max(axis=0))


def test_peak_sits_on_the_joint_cell():
    # Cell (gx, gy) = (3, 5) is centred at input pixel (13.5, 21.5).
    maps = make_heatmaps(joints_with({4: (13.5, 21.5)}), 64)
    assert maps[4, 5, 3] == 1.0 and np.unravel_index(maps[4].argmax(), maps[4].shape) == (5, 3)
    assert maps[16, 5, 3] == 0.0 and maps[16, 0, 15] == 1.0
    assert (maps[4][maps[4] > 0] >= 0.01).all()


def test_default_sigma_scales_with_input():
    assert default_sigma(256) == 7.0 and default_sigma(128) == 3.5


def test_heatmap_size_must_fit_the_stride():
    with pytest.raises(ValueError, match="multiple of the heatmap stride"):
        make_heatmaps(joints_with({}), 66)


def test_blur_matches_a_2d_gaussian_kernel():
    maps = torch.zeros(1, 1, 21, 21, dtype=torch.float64)
    maps[0, 0, 10, 10] = 1
    blurred = gaussian_blur(maps, 2.0)[0, 0]
    offsets = torch.arange(-10, 11, dtype=torch.float64)
    kernel = torch.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / 8)
    kernel[(offsets.abs()[:, None] > 6) | (offsets.abs()[None, :] > 6)] = 0  # radius ceil(3 sigma)
    assert torch.allclose(blurred, kernel / kernel.sum())


@pytest.mark.parametrize("blur", [0.0, 1.5])
def test_decoding_recovers_the_joints(blur):
    rng = np.random.default_rng(0)
    positions = {j: tuple(rng.uniform(8, 120, size=2)) for j in range(16)}
    maps = torch.from_numpy(make_heatmaps(joints_with(positions), 128))[None]
    decoded = heatmaps_to_joints(maps, 128, blur_sigma=blur)
    assert decoded.shape == (1, 16, 2)
    truth = torch.tensor([positions[j] for j in range(16)], dtype=torch.float32)
    # Bilinear upsampling peaks on a cell centre: at most half a cell (2 px) off per axis.
    assert (decoded[0] - truth).abs().max() <= 2.0
