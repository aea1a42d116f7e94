"""Augmentation and evaluation transforms: a PersonRecord in, a training/evaluation sample out.

Both transforms build one 2x3 affine matrix that maps original-image pixel coordinates to
input pixel coordinates (pixel centres at integers), warp the image (bilinear, grey 128 fill)
and the parsing (nearest, fill 0) with it, map the joints with it, and record it in the
sample so predictions can be mapped back with `points_to_original` / `labels_to_original`.

Sample dict (every value collates with the default DataLoader collate):
    image         float32 (3, S, S), RGB / 255 - 0.5 (IMAGE_MEAN)
    heatmaps      float32 (17, S/4, S/4), see targets.make_heatmaps
    parsing       int64 (S, S), labels 0-19 (0 where padded; all 0 when has_parsing is False)
    joints        float32 (16, 3) [x, y, visible] in input pixels, NaN for missing joints
    joints_orig   float32 (16, 3) the annotation in original pixels (not flipped)
    matrix        float64 (2, 3) original -> input pixels (includes the flip)
    orig_size     int64 (2,) original (H, W)
    flipped, has_parsing  bool;  index  int64;  name  str
"""
import math

import numpy as np
import torch
from PIL import Image

from .record import FLIP_JOINTS, FLIP_PARTS
from .targets import REFERENCE_INPUT_SIZE, default_sigma, make_heatmaps

IMAGE_MEAN = 0.5
GREY_FILL = 128
PARSING_FILL = 0
# LIP's scale_provided is the person's height / 200 px; 1.171 / scale brings a person to the
# height the spec's 256-pixel crop expects (about 234 px).
SCALE_NUMERATOR = 1.171


def image_to_tensor(image):
    """RGB uint8 (H, W, 3) -> float32 tensor (3, H, W) normalised as the model expects."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255).sub_(IMAGE_MEAN)


def tensor_to_image(tensor):
    """Inverse of image_to_tensor: (3, H, W) tensor -> RGB uint8 (H, W, 3)."""
    image = (tensor.detach().cpu().float() + IMAGE_MEAN).mul(255).round().clamp(0, 255)
    return image.to(torch.uint8).permute(1, 2, 0).numpy()


def _pil_affine_data(matrix_out_to_in):
    """PIL samples input point A @ (u + 0.5) for output pixel u (corner convention); convert a
    pixel-centre matrix into that convention."""
    a = np.asarray(matrix_out_to_in, dtype=np.float64)
    shift = a[:, :2].sum(axis=1) * -0.5 + a[:, 2] + 0.5
    return (a[0, 0], a[0, 1], shift[0], a[1, 0], a[1, 1], shift[1])


def invert_affine(matrix):
    """Inverse of a 2x3 affine matrix."""
    full = np.vstack([np.asarray(matrix, dtype=np.float64), [0, 0, 1]])
    return np.linalg.inv(full)[:2]


def warp_image(image, matrix, size, fill=GREY_FILL):
    """Warp RGB uint8 (H, W, 3) into (size, size) with matrix (source -> destination), bilinear."""
    data = _pil_affine_data(invert_affine(matrix))
    out = Image.fromarray(image).transform((size, size), Image.Transform.AFFINE, data,
                                           resample=Image.Resampling.BILINEAR, fillcolor=(fill,) * 3)
    return np.asarray(out)


def warp_labels(labels, matrix, out_size, fill=PARSING_FILL):
    """Warp a uint8 label map with matrix (source -> destination), nearest; out_size (H, W)."""
    data = _pil_affine_data(invert_affine(matrix))
    out = Image.fromarray(np.asarray(labels, dtype=np.uint8)).transform(
        (out_size[1], out_size[0]), Image.Transform.AFFINE, data,
        resample=Image.Resampling.NEAREST, fillcolor=fill)
    return np.asarray(out)


def transform_points(points, matrix):
    """Apply a 2x3 matrix to points (..., 2); NaN stays NaN."""
    points = np.asarray(points, dtype=np.float64)
    matrix = np.asarray(matrix, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def points_to_original(points, matrix):
    """Map points (..., 2) in input pixels back to the original image given the sample's matrix."""
    return transform_points(points, invert_affine(matrix))


def labels_to_original(labels, matrix, orig_size):
    """Map a label map predicted at input size back to the original (H, W), nearest neighbour."""
    return warp_labels(labels, invert_affine(matrix), orig_size)


def _make_sample(record, matrix, flipped, input_size, sigma, index):
    image = warp_image(record.image, matrix, input_size)
    joints = record.joints.astype(np.float32).copy()
    joints[:, :2] = transform_points(record.joints[:, :2], matrix)
    has_parsing = record.parsing is not None
    if has_parsing:
        parsing = warp_labels(record.parsing, matrix, (input_size, input_size))
    else:
        parsing = np.zeros((input_size, input_size), dtype=np.uint8)
    if flipped:
        joints = joints[FLIP_JOINTS]
        parsing = FLIP_PARTS.astype(np.uint8)[parsing]
    return {
        "image": image_to_tensor(image),
        "heatmaps": torch.from_numpy(make_heatmaps(joints, input_size, sigma)),
        "parsing": torch.from_numpy(parsing.astype(np.int64)),
        "joints": torch.from_numpy(joints),
        "joints_orig": torch.from_numpy(record.joints.astype(np.float32)),
        "matrix": torch.from_numpy(np.asarray(matrix, dtype=np.float64)),
        "orig_size": torch.tensor(record.size, dtype=torch.int64),
        "flipped": flipped,
        "has_parsing": has_parsing,
        "index": index,
        "name": record.name,
    }


def _check_input_size(input_size):
    if not isinstance(input_size, int) or input_size <= 0 or input_size % 4:
        raise ValueError(f"input_size must be a positive multiple of 4 (the heatmap stride), got {input_size!r}")


class TrainTransform:
    """The spec's augmentation, in order: scale, rotation about the person centre, crop around
    the (shifted) centre, horizontal flip with left/right swaps; then the targets.

    Pixel constants are given for a 256 input and scaled by input_size / 256 (the person
    fills the same fraction of the crop at any size): max_shift 40 -> 20 at 128, sigma 7 -> 3.5.
    scale = 1.171 / scale_provided (0 means 1) * U(scale_range) * input_size / 256.

    Randomness comes from numpy's Generator seeded with (seed, epoch, index), so a sample
    depends only on those three numbers: worker count and order do not matter. Call
    set_epoch(e) before each epoch (make_loader does it).
    """

    def __init__(self, input_size=256, sigma=None, scale_range=(0.8, 1.5), max_rotation=40.0,
                 max_shift=40.0, flip_prob=0.5, seed=0):
        _check_input_size(input_size)
        self.input_size = input_size
        self.sigma = default_sigma(input_size) if sigma is None else sigma
        self.scale_range = scale_range
        self.max_rotation = max_rotation
        self.max_shift = max_shift * input_size / REFERENCE_INPUT_SIZE
        self.flip_prob = flip_prob
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def matrix(self, record, rng):
        """Draw the augmentation for one record: (2x3 matrix original -> input, flipped)."""
        size = self.input_size
        provided = record.scale_provided if record.scale_provided > 0 else 1.0
        scale = SCALE_NUMERATOR / provided * rng.uniform(*self.scale_range) * size / REFERENCE_INPUT_SIZE
        angle = math.radians(rng.uniform(-self.max_rotation, self.max_rotation))
        shift = rng.uniform(-self.max_shift, self.max_shift, size=2)
        flipped = bool(rng.random() < self.flip_prob)
        cos, sin = scale * math.cos(angle), scale * math.sin(angle)
        linear = np.array([[cos, -sin], [sin, cos]])
        centre = np.asarray(record.objpos, dtype=np.float64)
        target = (size - 1) / 2 + shift
        matrix = np.hstack([linear, (target - linear @ centre)[:, None]])
        if flipped:
            matrix = np.array([[-1.0, 0, size - 1], [0, 1, 0]]) @ np.vstack([matrix, [0, 0, 1]])
        return matrix, flipped

    def __call__(self, record, index):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        matrix, flipped = self.matrix(record, rng)
        return _make_sample(record, matrix, flipped, self.input_size, self.sigma, index)


class EvalTransform:
    """The evaluation protocol: resize the long edge to input_size, centre, pad with grey 128.
    Deterministic; the sample's matrix maps predictions back to the original image."""

    def __init__(self, input_size=256, sigma=None):
        _check_input_size(input_size)
        self.input_size = input_size
        self.sigma = default_sigma(input_size) if sigma is None else sigma

    def set_epoch(self, epoch):
        """Nothing is random here; present so loaders treat both transforms alike."""

    def matrix(self, record):
        height, width = record.size
        factor = self.input_size / max(height, width)
        offset_x = (self.input_size - width * factor) / 2
        offset_y = (self.input_size - height * factor) / 2
        # x_in = factor * (x + 0.5) - 0.5 + offset: pixel edges map onto pixel edges.
        return np.array([[factor, 0, factor * 0.5 - 0.5 + offset_x],
                         [0, factor, factor * 0.5 - 0.5 + offset_y]])

    def __call__(self, record, index):
        return _make_sample(record, self.matrix(record), False, self.input_size, self.sigma, index)
