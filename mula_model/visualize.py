"""Pictures of predictions: the skeleton drawn on the image and the parsing as a colour overlay."""
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .data.files import save_image
from .data.record import JOINT_NAMES, NUM_PARTS, SKELETON


def _label_palette(count):
    """The PASCAL-style palette LIP's tools use: bits of the label spread over R, G and B."""
    palette = np.zeros((count, 3), dtype=np.uint8)
    for label in range(count):
        value, shift = label, 7
        while value:
            for channel in range(3):
                palette[label, channel] |= ((value >> channel) & 1) << shift
            value >>= 3
            shift -= 1
    return palette


PALETTE = _label_palette(NUM_PARTS)
_SIDE_COLOURS = {"r": (255, 64, 64), "l": (64, 160, 255), "c": (255, 220, 0)}


def _side(joint):
    name = JOINT_NAMES[joint]
    return name[0] if name[:2] in ("r_", "l_") else "c"


def colorize_parsing(labels):
    """RGB uint8 (H, W, 3) picture of a label map (H, W) with values 0-19."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D (H, W) array, got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_PARTS):
        raise ValueError(f"labels must lie in [0, {NUM_PARTS}), got range [{labels.min()}, {labels.max()}]")
    return PALETTE[labels]


def overlay_parsing(image, labels, alpha=0.6):
    """Blend the parsing colours over the image (background pixels left as they are)."""
    image = np.asarray(image, dtype=np.uint8)
    if image.shape[:2] != np.shape(labels):
        raise ValueError(f"labels shape {np.shape(labels)} must equal the image size {image.shape[:2]}")
    colours = colorize_parsing(labels).astype(np.float32)
    blended = image.astype(np.float32)
    person = np.asarray(labels) > 0
    blended[person] = (1 - alpha) * blended[person] + alpha * colours[person]
    return blended.round().astype(np.uint8)


def draw_skeleton(image, joints, width=None):
    """Copy of the image with limbs (red: person's right, blue: left) and joints drawn;
    joints (16, >=2) in image pixels, NaN joints left out."""
    image = Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB")
    joints = np.asarray(joints, dtype=np.float64)[:, :2]
    width = width or max(1, round(max(image.size) / 120))
    draw = ImageDraw.Draw(image)
    for a, b in SKELETON:
        if np.isfinite(joints[[a, b]]).all():
            side = _side(a) if _side(a) != "c" else _side(b)
            draw.line([tuple(joints[a]), tuple(joints[b])], fill=_SIDE_COLOURS[side], width=width)
    radius = width + 1
    for joint, (x, y) in enumerate(joints):
        if np.isfinite([x, y]).all():
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=_SIDE_COLOURS[_side(joint)],
                         outline=(0, 0, 0))
    return np.asarray(image)


def render_prediction(image, joints=None, parsing=None):
    """Side-by-side picture: the image with the skeleton, and the image with the parsing overlay."""
    image = np.asarray(image, dtype=np.uint8)
    panels = [draw_skeleton(image, joints) if joints is not None else image]
    if parsing is not None:
        panels.append(overlay_parsing(image, parsing))
    return np.concatenate(panels, axis=1)


def with_column_titles(picture, titles, height=16):
    """The picture below a white strip that names its columns: len(titles)
    equal columns, each title centred above its own."""
    picture = np.asarray(picture, dtype=np.uint8)
    strip = Image.new("RGB", (picture.shape[1], height), (255, 255, 255))
    draw, font = ImageDraw.Draw(strip), ImageFont.load_default()
    column = picture.shape[1] / len(titles)
    for index, title in enumerate(titles):
        left, top, right, bottom = draw.textbbox((0, 0), title, font=font)
        draw.text((column * (index + 0.5) - (right - left) / 2, (height - (bottom - top)) / 2 - top), title,
                  fill=(0, 0, 0), font=font)
    return np.concatenate([np.asarray(strip), picture], axis=0)


def save_prediction(path, image, joints=None, parsing=None):
    """Write render_prediction(...) as a PNG, atomically."""
    save_image(path, render_prediction(image, joints, parsing))
