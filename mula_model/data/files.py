"""LIP file formats (annotation JSON, pose CSVs, label PNGs) and atomic writes.

Every writer goes through atomic_write: a temporary file in the destination folder, then
os.replace, so a reader never sees a half-written file.
"""
import csv
import io
import json
import math
import os
import tempfile

import numpy as np
from PIL import Image

from .record import NUM_JOINTS, normalize_joints


class AnnotationError(ValueError):
    """A data file does not have the expected content; the message names file and entry."""


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write(path, data):
    """Write bytes to path atomically (temporary file in the same folder + os.replace)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())  # on disk before it replaces the old file
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the usual mode
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def encode_image(array, format):
    """PNG/JPEG bytes of a uint8 (H, W) or (H, W, 3) array."""
    buffer = io.BytesIO()
    options = {"quality": 95, "subsampling": 0} if format == "JPEG" else {}
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buffer, format=format, **options)
    return buffer.getvalue()


def save_image(path, array):
    """Save a uint8 image atomically; the format follows the extension (.png, .jpg)."""
    extension = os.path.splitext(os.fspath(path))[1].lower()
    format = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(extension)
    if format is None:
        raise ValueError(f"path must end in .png, .jpg or .jpeg, got {os.fspath(path)!r}")
    atomic_write(path, encode_image(array, format))


def read_rgb(path):
    """RGB uint8 (H, W, 3) from an image file (grey or RGBA files are converted)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file not found: {path}")
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def write_label_png(path, labels):
    """Save a parsing map (H, W) with labels 0-19 as a single-channel PNG (LIP's format)."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D (H, W) array, got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"labels must lie in [0, 255], got range [{labels.min()}, {labels.max()}]")
    atomic_write(path, encode_image(labels.astype(np.uint8), "PNG"))


def read_label_png(path):
    """uint8 (H, W) label map from a single-channel PNG."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"segmentation file not found: {path}")
    with Image.open(path) as image:
        if image.mode not in ("L", "P", "I", "I;16"):
            raise AnnotationError(f"{path}: expected a single-channel label PNG, got mode {image.mode}")
        return np.asarray(image).astype(np.uint8)


def _number_list(value, length, where, what):
    if not isinstance(value, (list, tuple)) or len(value) != length:
        raise AnnotationError(f"{where}: {what} must be a list of {length} numbers, got {value!r}")
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError):
        raise AnnotationError(f"{where}: {what} must be a list of {length} numbers, got {value!r}") from None


def read_annotations(path, with_joints=True):
    """Entries of a LIP annotation JSON {"root": [{"im_name", "joints", "objpos", "scale_provided"}]}.

    Returns a list of dicts with im_name (str), and when with_joints: joints float32 (16, 3)
    (missing as NaN), objpos float32 (2,), scale_provided float. The test JSON has im_name only:
    read it with with_joints=False. Raises AnnotationError naming the file, entry and field.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        with open(path) as handle:
            document = json.load(handle)
    except json.JSONDecodeError as error:
        raise AnnotationError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(document, dict) or not isinstance(document.get("root"), list):
        raise AnnotationError(f'{path}: expected an object {{"root": [entries]}}')
    entries = []
    for number, entry in enumerate(document["root"]):
        where = f"{path}, entry {number}"
        if not isinstance(entry, dict) or not isinstance(entry.get("im_name"), str) or not entry["im_name"]:
            raise AnnotationError(f"{where}: expected an object with a non-empty string 'im_name'")
        where += f" ({entry['im_name']})"
        parsed = {"im_name": entry["im_name"]}
        if with_joints:
            for key in ("joints", "objpos", "scale_provided"):
                if key not in entry:
                    raise AnnotationError(f"{where}: missing '{key}'")
            joints = entry["joints"]
            if not isinstance(joints, list) or len(joints) != NUM_JOINTS:
                raise AnnotationError(
                    f"{where}: 'joints' must be a list of {NUM_JOINTS} [x, y, visible], got {joints!r}")
            rows = [_number_list(joint, 3, where, f"joint {j}") for j, joint in enumerate(joints)]
            parsed["joints"] = normalize_joints(rows)
            parsed["objpos"] = np.array(_number_list(entry["objpos"], 2, where, "'objpos'"), dtype=np.float32)
            scale = entry["scale_provided"]
            if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale < 0:
                raise AnnotationError(f"{where}: 'scale_provided' must be a number >= 0, got {scale!r}")
            parsed["scale_provided"] = float(scale)
        entries.append(parsed)
    return entries


def _json_number(value):
    return round(float(value), 3)


def write_annotations(path, records, with_joints=True):
    """Write records (objects with name, joints, objpos, scale_provided) as a LIP annotation JSON.
    Missing joints are written as [0, 0, 0] (JSON has no NaN)."""
    root = []
    for record in records:
        entry = {"im_name": record.name}
        if with_joints:
            joints = np.nan_to_num(np.asarray(record.joints, dtype=np.float64), nan=0.0)
            entry["joints"] = [[_json_number(x), _json_number(y), int(v)] for x, y, v in joints]
            entry["objpos"] = [_json_number(v) for v in record.objpos]
            entry["scale_provided"] = round(float(record.scale_provided), 4)
        root.append(entry)
    atomic_write(path, json.dumps({"root": root}).encode())


def _csv_bytes(rows):
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    return text.getvalue().encode()


def _format_coordinate(value):
    return "nan" if math.isnan(value) else f"{value:g}"


def write_val_csv(path, names, joints):
    """LIP validation ground truth: per line the image name then 16 x (x, y, flag), "nan" for a
    missing joint, no header. joints: (M, 16, 3)."""
    rows = []
    for name, person in zip(names, np.asarray(joints, dtype=np.float64)):
        row = [name]
        for x, y, flag in person:
            missing = math.isnan(x) or math.isnan(y)
            row += ["nan", "nan", "nan"] if missing else [_format_coordinate(x), _format_coordinate(y), str(int(flag))]
        rows.append(row)
    atomic_write(path, _csv_bytes(rows))


def _read_csv(path, values_per_joint):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CSV file not found: {path}")
    names, values = [], []
    expected = 1 + NUM_JOINTS * values_per_joint
    with open(path, newline="") as handle:
        for line_number, row in enumerate(csv.reader(handle), start=1):
            if not row:
                continue
            if len(row) != expected:
                raise AnnotationError(f"{path}, line {line_number}: expected the image name and "
                                      f"{NUM_JOINTS} x {values_per_joint} values ({expected} fields), got {len(row)}")
            try:
                numbers = [float(v) for v in row[1:]]
            except ValueError:
                raise AnnotationError(f"{path}, line {line_number}: joint values must be numbers or 'nan'") from None
            names.append(row[0])
            values.append(numbers)
    return names, np.array(values, dtype=np.float32).reshape(-1, NUM_JOINTS, values_per_joint)


def read_val_csv(path):
    """(names, joints float32 (M, 16, 3)) from a LIP validation CSV; missing joints are NaN."""
    names, joints = _read_csv(path, 3)
    return names, np.stack([normalize_joints(j) for j in joints]) if names else joints


def write_pose_csv(path, names, joints):
    """LIP pose prediction output: per line the image name then 16 x (x, y) rounded to integers."""
    joints = np.asarray(joints, dtype=np.float64)[..., :2]
    if np.isnan(joints).any():
        raise ValueError("joints must not contain NaN: LIP's pose output has a position for every joint")
    rows = [[name] + [str(int(round(v))) for v in person.reshape(-1)] for name, person in zip(names, joints)]
    atomic_write(path, _csv_bytes(rows))


def read_pose_csv(path):
    """(names, joints float32 (M, 16, 2)) from a LIP pose prediction CSV."""
    return _read_csv(path, 2)
