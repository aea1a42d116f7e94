"""Procedurally drawn people with exact joint and part ground truth (the built-in data set).

A person is built in a body frame from random proportions and limb angles, placed with a
random size, rotation and position, and painted back to front (hair behind the head, legs,
clothes, shoes, torso, arms, head) with numpy over each shape's bounding box; the label map is
painted with the same masks, so every pixel's part label is exact. Joints stay inside their
limbs (wrists on the forearm, ankles under the shoe), so after any augmentation a joint lies
on its own part.
"""
import math

import numpy as np
import torch

from .record import NUM_JOINTS, PART, PersonRecord

_SKIN_TONES = np.array([[255, 224, 196], [241, 194, 160], [224, 172, 105], [198, 134, 66],
                        [141, 85, 36], [92, 57, 33]], dtype=np.float32)
_HAIR_TONES = np.array([[20, 17, 15], [60, 40, 25], [110, 75, 40], [180, 140, 80], [200, 190, 170],
                        [130, 30, 20]], dtype=np.float32)


def _unit(angle):
    """Direction at angle radians from straight down (image y grows downwards)."""
    return np.array([math.sin(angle), math.cos(angle)])


def _random_colour(rng, low=30, high=230):
    return rng.uniform(low, high, size=3).astype(np.float32)


class _Canvas:
    """An RGB float image and its label map, painted shape by shape."""

    def __init__(self, height, width):
        self.height, self.width = height, width
        self.image = np.zeros((height, width, 3), dtype=np.float32)
        self.labels = np.zeros((height, width), dtype=np.uint8)

    def _window(self, low, high):
        x0, y0 = max(int(math.floor(low[0])), 0), max(int(math.floor(low[1])), 0)
        x1, y1 = min(int(math.ceil(high[0])) + 1, self.width), min(int(math.ceil(high[1])) + 1, self.height)
        if x0 >= x1 or y0 >= y1:
            return None
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        return (slice(y0, y1), slice(x0, x1)), xs, ys

    def _paint(self, window, mask, label, colour, shading):
        region, xs, ys = window
        if label is not None:
            self.labels[region][mask] = label
        colour = np.asarray(colour, dtype=np.float32)
        if shading:
            # A soft diagonal light so parts are not flat cards.
            light = 1 + shading * np.tanh((xs - xs.mean() - (ys - ys.mean())) / (1 + xs.shape[1]))
            self.image[region][mask] = (colour[None] * light[mask][:, None])
        else:
            self.image[region][mask] = colour

    def capsule(self, a, b, radius, label, colour, shading=0.3):
        """Segment a-b thickened by radius (a limb)."""
        a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
        window = self._window(np.minimum(a, b) - radius, np.maximum(a, b) + radius)
        if window is None:
            return
        _, xs, ys = window
        d = b - a
        t = np.clip(((xs - a[0]) * d[0] + (ys - a[1]) * d[1]) / max(float(d @ d), 1e-6), 0, 1)
        mask = (xs - a[0] - t * d[0]) ** 2 + (ys - a[1] - t * d[1]) ** 2 <= radius * radius
        self._paint(window, mask, label, colour, shading)

    def ellipse(self, centre, radii, angle, label, colour, shading=0.3):
        """Ellipse with semi-axes radii = (across, along) rotated by angle from vertical."""
        extent = max(radii)
        centre = np.asarray(centre, dtype=np.float32)
        window = self._window(centre - extent, centre + extent)
        if window is None:
            return
        _, xs, ys = window
        cos, sin = math.cos(angle), math.sin(angle)
        dx, dy = xs - centre[0], ys - centre[1]
        across, along = dx * cos - dy * sin, dx * sin + dy * cos
        mask = (across / radii[0]) ** 2 + (along / radii[1]) ** 2 <= 1
        self._paint(window, mask, label, colour, shading)

    def polygon(self, points, label, colour, shading=0.3):
        """Filled polygon (even-odd rule)."""
        points = np.asarray(points, dtype=np.float32)
        window = self._window(points.min(axis=0), points.max(axis=0))
        if window is None:
            return
        _, xs, ys = window
        inside = np.zeros(xs.shape, dtype=bool)
        for (x0, y0), (x1, y1) in zip(points, np.roll(points, -1, axis=0)):
            crosses = (y0 > ys) != (y1 > ys)
            x_cross = x0 + (ys - y0) * (x1 - x0) / ((y1 - y0) if y1 != y0 else 1e-6)
            inside ^= crosses & (xs < x_cross)
        self._paint(window, inside, label, colour, shading)


def _background(canvas, rng):
    """A smooth two-colour gradient under random rectangles, discs and bars (clutter)."""
    height, width = canvas.height, canvas.width
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (xs * math.cos(angle) + ys * math.sin(angle)) / max(height, width)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    first, second = _random_colour(rng, 20, 235), _random_colour(rng, 20, 235)
    canvas.image[:] = first + ramp[..., None] * (second - first)
    size = max(height, width)
    for _ in range(rng.integers(4, 12)):
        kind = rng.choice(3, p=[0.45, 0.4, 0.15])  # rectangles, discs, a few bars
        centre = rng.uniform(0, 1, size=2) * (width, height)
        colour = _random_colour(rng, 10, 245)
        if kind == 0:
            half = rng.uniform(0.03, 0.2, size=2) * size
            angle = rng.uniform(-0.5, 0.5)
            corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
            rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
            canvas.polygon(centre + corners @ rotation.T, None, colour, shading=0.2)
        elif kind == 1:
            radius = rng.uniform(0.02, 0.1) * size
            canvas.ellipse(centre, (radius, radius * rng.uniform(0.5, 1.5)), rng.uniform(0, math.pi), None, colour)
        else:
            end = centre + rng.uniform(-0.4, 0.4, size=2) * size
            canvas.capsule(centre, end, rng.uniform(0.005, 0.02) * size, None, colour, shading=0)


def _pose(rng):
    """Joints (16, 2) of a frontal person in units of their height (head-top to ankles = 1),
    and the limb widths and head size used to draw them."""
    p = {}
    scale = rng.uniform(0.9, 1.1, size=6)
    torso, neck, head, thigh, shin = 0.30 * scale[0], 0.04, 0.17 * scale[1], 0.23 * scale[2], 0.22 * scale[2]
    upper_arm, forearm = 0.17 * scale[3], 0.15 * scale[3]
    shoulder_half, hip_half = 0.10 * scale[4], 0.065 * scale[5]
    lean = rng.uniform(-0.25, 0.25)
    up, across = -_unit(lean), np.array([math.cos(lean), -math.sin(lean)])  # across points to the person's left
    p["pelvis"] = np.zeros(2)
    p["thorax"] = p["pelvis"] + torso * up
    tilt = lean + rng.uniform(-0.3, 0.3)
    p["upper_neck"] = p["thorax"] + neck * -_unit(tilt)
    p["head_top"] = p["upper_neck"] + head * -_unit(tilt)
    below = 0.02 * -up
    p["r_shoulder"] = p["thorax"] - shoulder_half * across + below
    p["l_shoulder"] = p["thorax"] + shoulder_half * across + below
    p["r_hip"], p["l_hip"] = p["pelvis"] - hip_half * across, p["pelvis"] + hip_half * across
    for side, outward in (("r", -1), ("l", 1)):
        # Angles are measured from straight down; positive values swing the limb outwards.
        arm = lean + outward * rng.uniform(-0.3, 2.6)
        elbow_bend = outward * rng.uniform(-0.6, 2.2) * rng.choice([1, -1], p=[0.7, 0.3])
        p[f"{side}_elbow"] = p[f"{side}_shoulder"] + upper_arm * _unit(arm)
        p[f"{side}_wrist"] = p[f"{side}_elbow"] + forearm * _unit(arm + elbow_bend)
        leg = lean + outward * (rng.uniform(-0.1, 0.5) if rng.random() < 0.85 else rng.uniform(0.5, 1.3))
        knee_bend = -outward * rng.uniform(-0.2, 0.7)
        p[f"{side}_knee"] = p[f"{side}_hip"] + thigh * _unit(leg)
        p[f"{side}_ankle"] = p[f"{side}_knee"] + shin * _unit(leg + knee_bend)
    joints = np.stack([p[name] for name in _JOINT_ORDER])
    widths = {"arm": 0.048 * rng.uniform(0.8, 1.25), "leg": 0.062 * rng.uniform(0.8, 1.25), "head": head}
    return joints, widths


_JOINT_ORDER = ("r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax",
                "upper_neck", "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist")


def _place(joints, rng, height, width):
    """Scale, rotate and translate body-frame joints into the image, the whole person inside
    (like a LIP crop, the person fills most of the picture); returns (joints, pixels per unit)."""
    angle = rng.uniform(-0.45, 0.45)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    body = (joints - joints.mean(axis=0)) @ rotation.T
    margin = 0.1  # hair, hands and shoes reach this far (in heights) beyond the joints
    low, high = body.min(axis=0) - margin, body.max(axis=0) + margin
    fits = min((width - 1) / (high[0] - low[0]), (height - 1) / (high[1] - low[1]))
    size = min(rng.uniform(0.6, 0.9) * height, fits)
    room = [(-low[i] * size, limit - high[i] * size) for i, limit in enumerate((width - 1, height - 1))]
    offset = [rng.uniform(first, max(first, last)) for first, last in room]  # max: rounding when size == fits
    return body * size + offset, size


def _draw_person(canvas, joints, widths, size, accessories, rng):
    j = {name: joints[i] for i, name in enumerate(_JOINT_ORDER)}
    arm_r, leg_r = widths["arm"] * size, widths["leg"] * size
    head_len = widths["head"] * size
    skin = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] * rng.uniform(0.9, 1.1)
    hair_colour = _HAIR_TONES[rng.integers(len(_HAIR_TONES))]
    top_colour, bottom_colour = _random_colour(rng), _random_colour(rng)
    head_centre = (j["upper_neck"] + j["head_top"]) / 2
    head_down = (j["upper_neck"] - j["head_top"]) / max(np.linalg.norm(j["upper_neck"] - j["head_top"]), 1e-6)
    head_angle = math.atan2(-head_down[0], head_down[1])
    garment = rng.choice(["upper_clothes", "coat", "dress"], p=[0.55, 0.2, 0.25])
    lower = "dress" if garment == "dress" else rng.choice(["pants", "skirt"], p=[0.8, 0.2])

    if rng.random() < 0.4:  # long hair falls behind the shoulders
        canvas.ellipse(head_centre + 0.35 * head_len * head_down, (0.42 * head_len, 0.75 * head_len), head_angle,
                       PART["hair"], hair_colour)
    for side, label in (("r", PART["right_leg"]), ("l", PART["left_leg"])):
        canvas.capsule(j[f"{side}_hip"], j[f"{side}_knee"], leg_r, label, skin)
        canvas.capsule(j[f"{side}_knee"], j[f"{side}_ankle"], leg_r * 0.85, label, skin)
    if lower == "pants":
        length = rng.uniform(0.2, 0.8)  # shorts to long trousers, always above the ankle
        for side in ("r", "l"):
            end = j[f"{side}_knee"] + length * (j[f"{side}_ankle"] - j[f"{side}_knee"])
            canvas.capsule(j[f"{side}_hip"], j[f"{side}_knee"], leg_r * 1.2, PART["pants"], bottom_colour)
            canvas.capsule(j[f"{side}_knee"], end, leg_r * 1.1, PART["pants"], bottom_colour)
        canvas.polygon([j["r_hip"] - (leg_r, 0), j["l_hip"] + (leg_r, 0), j["pelvis"] + (0, 0.08 * size)],
                       PART["pants"], bottom_colour)
    for side, label in (("r", PART["right_shoe"]), ("l", PART["left_shoe"])):
        shin = j[f"{side}_ankle"] - j[f"{side}_knee"]
        shin_dir = shin / max(np.linalg.norm(shin), 1e-6)
        canvas.ellipse(j[f"{side}_ankle"] + 0.25 * leg_r * shin_dir, (leg_r * 1.25, leg_r * 1.05),
                       math.atan2(-shin_dir[0], shin_dir[1]), label, rng.uniform(10, 120) * np.ones(3))
    shoulders = (j["r_shoulder"], j["l_shoulder"])
    hips = (j["r_hip"], j["l_hip"])
    body_down = (j["pelvis"] - j["thorax"]) / max(np.linalg.norm(j["pelvis"] - j["thorax"]), 1e-6)
    across = np.array([body_down[1], -body_down[0]])  # towards the person's left
    torso_outline = [shoulders[0] - 0.6 * arm_r * across, shoulders[1] + 0.6 * arm_r * across,
                     hips[1] + 0.5 * leg_r * across, hips[0] - 0.5 * leg_r * across]
    if lower == "skirt" or garment == "dress":
        knee_mid = (j["r_knee"] + j["l_knee"]) / 2
        hem = j["pelvis"] + rng.uniform(0.45, 1.0) * (knee_mid - j["pelvis"])
        hem_half = np.linalg.norm(j["l_hip"] - j["r_hip"]) / 2 + leg_r * 1.8
        label = PART["dress"] if garment == "dress" else PART["skirt"]
        canvas.polygon([hips[0] - 0.6 * leg_r * across, hips[1] + 0.6 * leg_r * across,
                        hem + hem_half * across, hem - hem_half * across], label,
                       top_colour if garment == "dress" else bottom_colour)
    canvas.capsule(j["thorax"], j["upper_neck"], 0.3 * head_len, PART["face"], skin)
    if garment == "coat":
        coat_end = j["pelvis"] + 0.15 * size * body_down
        torso_outline[2:] = [coat_end + (np.linalg.norm(hips[1] - hips[0]) / 2 + leg_r * 1.3) * across,
                             coat_end - (np.linalg.norm(hips[1] - hips[0]) / 2 + leg_r * 1.3) * across]
    canvas.polygon(torso_outline, PART[garment], top_colour)
    if rng.random() < accessories:
        canvas.capsule(j["thorax"] - 0.5 * arm_r * across - 0.02 * size * body_down,
                       j["thorax"] + 0.5 * arm_r * across - 0.02 * size * body_down,
                       0.45 * head_len, PART["scarf"], _random_colour(rng))
    sleeve = rng.uniform(0.0, 1.6)  # in upper-arm lengths: sleeveless to long sleeves
    gloves = rng.random() < accessories
    glove_colour = _random_colour(rng)
    for side, label in (("r", PART["right_arm"]), ("l", PART["left_arm"])):
        shoulder, elbow, wrist = j[f"{side}_shoulder"], j[f"{side}_elbow"], j[f"{side}_wrist"]
        forearm = wrist - elbow
        forearm_dir = forearm / max(np.linalg.norm(forearm), 1e-6)
        canvas.capsule(shoulder, elbow, arm_r, label, skin)
        canvas.capsule(elbow, wrist, arm_r * 0.85, label, skin)
        canvas.ellipse(wrist + 1.3 * arm_r * forearm_dir, (arm_r * 1.0, arm_r * 1.3),
                       math.atan2(-forearm_dir[0], forearm_dir[1]), PART["glove"] if gloves else label,
                       glove_colour if gloves else skin)
        sleeve_colour = top_colour
        sleeve_label = PART[garment]
        if sleeve > 0.15:
            canvas.capsule(shoulder, elbow if sleeve >= 1 else shoulder + sleeve * (elbow - shoulder),
                           arm_r * 1.2, sleeve_label, sleeve_colour)
        if sleeve > 1:
            canvas.capsule(elbow, elbow + (sleeve - 1) * forearm, arm_r * 1.05, sleeve_label, sleeve_colour)
    # Head: hair cap behind, face in front, optional hat and sunglasses.
    canvas.ellipse(head_centre - 0.04 * head_len * head_down, (0.40 * head_len, 0.52 * head_len), head_angle,
                   PART["hair"], hair_colour)
    face_centre = head_centre + 0.14 * head_len * head_down
    canvas.ellipse(face_centre, (0.32 * head_len, 0.37 * head_len), head_angle, PART["face"], skin)
    across_head = np.array([head_down[1], -head_down[0]])
    eyes = face_centre - 0.05 * head_len * head_down
    if rng.random() < accessories:
        canvas.capsule(eyes - 0.2 * head_len * across_head, eyes + 0.2 * head_len * across_head,
                       0.1 * head_len, PART["sunglasses"], np.full(3, 15.0), shading=0)
    else:
        for sign in (-1, 1):
            canvas.ellipse(eyes + sign * 0.13 * head_len * across_head, (0.04 * head_len,) * 2, 0, None,
                           np.full(3, 25.0), shading=0)
    if rng.random() < accessories:
        brim = head_centre - 0.2 * head_len * head_down
        canvas.polygon([brim - 0.45 * head_len * across_head, brim + 0.45 * head_len * across_head,
                        j["head_top"] - 0.05 * head_len * head_down + 0.3 * head_len * across_head,
                        j["head_top"] - 0.05 * head_len * head_down - 0.3 * head_len * across_head],
                       PART["hat"], _random_colour(rng))
    return j


def draw_person(rng, height, width, accessories=0.5):
    """One synthetic (image uint8 (H, W, 3), parsing uint8 (H, W), joints float32 (16, 3),
    objpos (2,), scale_provided) drawn from rng; accessories: probability of each of hat,
    sunglasses, scarf and gloves."""
    canvas = _Canvas(height, width)
    _background(canvas, rng)
    body, widths = _pose(rng)
    joints, size = _place(body, rng, height, width)
    _draw_person(canvas, joints, widths, size, accessories, rng)
    noise = rng.normal(0, 4, size=canvas.image.shape).astype(np.float32)
    image = np.clip(canvas.image + noise, 0, 255).round().astype(np.uint8)
    rows, columns = np.nonzero(canvas.labels)
    top, bottom = rows.min(), rows.max()
    objpos = np.array([(columns.min() + columns.max()) / 2, (top + bottom) / 2], dtype=np.float32)
    scale_provided = float(bottom - top + 1) / 200
    visible = np.ones((NUM_JOINTS, 1), dtype=np.float32)
    return image, canvas.labels, np.hstack([joints.astype(np.float32), visible]), objpos, scale_provided


class SyntheticPeople(torch.utils.data.Dataset):
    """count synthetic single-person images, record i drawn from numpy's Generator seeded with
    (seed, i): deterministic, independent of order and workers, a few ms per image.

    Frontal people (the person's right side on the image's left, as in LIP) made of the LIP
    parts (hair, hat, face, sunglasses, scarf, upper-clothes/dress/coat, pants/skirt, arms,
    legs, gloves, shoes) in varied poses, sizes, rotations, limb widths and colours over
    cluttered backgrounds. image_size: int or (H, W). dataset[i] is transform(record, i), or
    the PersonRecord when transform is None; dataset.record(i) always gives the record.
    Records carry objpos (person bounding-box centre) and scale_provided (height / 200) like LIP.
    accessories is the probability of each of hat, sunglasses, scarf and gloves (0: none of
    these classes occurs, an easier set).
    With cache=True each record is kept after it is first drawn (about 4 bytes per pixel);
    loader workers hold their own caches, which end with the epoch, so call preload() before
    a multi-worker loader to draw everything once in the main process.
    """

    def __init__(self, count, seed=0, image_size=128, transform=None, cache=True, accessories=0.5):
        if not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be a non-negative int, got {count!r}")
        height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if min(height, width) < 32:
            raise ValueError(f"image_size must be at least 32 pixels, got {image_size!r}")
        if not 0 <= accessories <= 1:
            raise ValueError(f"accessories must be a probability in [0, 1], got {accessories!r}")
        self.count, self.seed, self.size, self.accessories = count, seed, (height, width), accessories
        self.transform = transform
        self._cache = {} if cache else None

    def __len__(self):
        return self.count

    def record(self, index):
        if not 0 <= index < self.count:
            raise IndexError(f"index {index} out of range for {self.count} synthetic people")
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        rng = np.random.default_rng([self.seed, index])
        image, parsing, joints, objpos, scale = draw_person(rng, *self.size, self.accessories)
        record = PersonRecord(f"synthetic_{self.seed}_{index:06d}.jpg", image, joints, objpos, scale, parsing)
        if self._cache is not None:
            self._cache[index] = record
        return record

    def __getitem__(self, index):
        record = self.record(index)
        return record if self.transform is None else self.transform(record, index)

    def preload(self):
        """Draw and cache every record now; returns self."""
        if self._cache is None:
            raise ValueError("preload needs cache=True")
        for index in range(self.count):
            self.record(index)
        return self
