"""One annotated person image, and the LIP conventions every part of the pipeline shares.

Coordinates are in pixels with the centre of pixel (i, j) at x = j, y = i (the LIP/MPII
convention); a missing joint has x = y = NaN and visible = 0.
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np

NUM_JOINTS = 16
NUM_PARTS = 20
BACKGROUND_CHANNEL = NUM_JOINTS  # heatmap channel 16 = 1 - max over the joints

JOINT_NAMES = (
    "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax",
    "upper_neck", "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder",
    "l_elbow", "l_wrist",
)
PART_NAMES = (
    "background", "hat", "hair", "glove", "sunglasses", "upper_clothes", "dress", "coat",
    "socks", "pants", "jumpsuits", "scarf", "skirt", "face", "left_arm", "right_arm",
    "left_leg", "right_leg", "left_shoe", "right_shoe",
)
JOINT = {name: index for index, name in enumerate(JOINT_NAMES)}
PART = {name: index for index, name in enumerate(PART_NAMES)}

# A horizontal flip turns every left joint/part into the matching right one.
FLIP_JOINTS = np.array([5, 4, 3, 2, 1, 0, 6, 7, 8, 9, 15, 14, 13, 12, 11, 10])
FLIP_HEATMAP_CHANNELS = np.append(FLIP_JOINTS, BACKGROUND_CHANNEL)
FLIP_PARTS = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 14, 17, 16, 19, 18])

# Limbs drawn by the visualiser and used to build synthetic people: (joint, joint).
SKELETON = (
    (0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9),
    (7, 12), (12, 11), (11, 10), (7, 13), (13, 14), (14, 15),
)


@dataclass
class PersonRecord:
    """One single-person image with its annotation, as read from disk or drawn.

    name:           image file name, e.g. "100034_483681.jpg".
    image:          RGB uint8 array (H, W, 3).
    joints:         float32 (16, 3) [x, y, visible] in file order (JOINT_NAMES);
                    a missing joint is [NaN, NaN, 0].
    objpos:         float32 (2,) person centre [x, y].
    scale_provided: person height / 200 px (LIP/MPII); 0 means unknown (treated as 1).
    parsing:        uint8 (H, W) labels 0-19 (PART_NAMES), or None (LIP test split).
    """
    name: str
    image: np.ndarray
    joints: np.ndarray
    objpos: np.ndarray
    scale_provided: float
    parsing: Optional[np.ndarray] = None

    @property
    def size(self):
        """(H, W) of the image."""
        return self.image.shape[:2]


def missing_joints(joints):
    """Boolean mask of joints that are not annotated: NaN or (0, 0) coordinates."""
    xy = np.asarray(joints, dtype=np.float64)[..., :2]
    return np.isnan(xy).any(axis=-1) | (xy == 0).all(axis=-1)


def normalize_joints(joints):
    """(16, 3) float32 copy with missing joints (NaN or (0, 0)) set to [NaN, NaN, 0]."""
    joints = np.array(joints, dtype=np.float32).reshape(NUM_JOINTS, 3)
    joints[missing_joints(joints)] = (np.nan, np.nan, 0)
    return joints
