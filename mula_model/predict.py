"""Prediction on image files: for each image, a picture with the skeleton and
the parsing overlaid, and the raw outputs (joints, heatmaps, labels)."""
import io
import os
from pathlib import Path
from typing import List

import numpy as np
import torch

from . import visualize
from .data import (
    EvalTransform,
    PersonRecord,
    atomic_write,
    heatmaps_to_joints,
    labels_to_original,
    normalize_joints,
    points_to_original,
    read_rgb,
    save_image,
)
from .data.targets import REFERENCE_INPUT_SIZE
from .evaluate import BLUR_SIGMA_AT_256, predict_batch


def image_record(path) -> PersonRecord:
    """An unannotated record for an image file; the person is assumed to fill the image."""
    image = read_rgb(path)
    height, width = image.shape[:2]
    return PersonRecord(os.path.basename(path), image, normalize_joints([[0, 0, 0]] * 16),
                        np.array([width / 2, height / 2], dtype=np.float32), 0.0)


@torch.no_grad()
def predict_record(model, record: PersonRecord, input_size: int, device="cpu", flip: bool = True) -> dict:
    """Evaluation-protocol prediction for one image, mapped back to its pixels:
    joints (16, 2), confidence (16,) heatmap maxima, parsing (H, W) labels,
    heatmaps (17, S/4, S/4) at the model's resolution."""
    model.eval()
    sample = EvalTransform(input_size)(record, 0)
    heatmaps, labels = predict_batch(model, sample["image"].unsqueeze(0).to(device), flip)
    matrix = sample["matrix"].numpy()
    joints = heatmaps_to_joints(heatmaps, input_size, BLUR_SIGMA_AT_256 * input_size / REFERENCE_INPUT_SIZE)
    return {"joints": points_to_original(joints[0].cpu().numpy(), matrix).astype(np.float32),
            "confidence": heatmaps[0, :16].amax(dim=(1, 2)).cpu().numpy(),
            "parsing": labels_to_original(labels[0].to(torch.uint8).cpu().numpy(), matrix, record.size),
            "heatmaps": heatmaps[0].cpu().numpy()}


def predict_images(model, image_paths: List[str], out_dir, input_size: int, device="cpu") -> List[Path]:
    """Writes <stem>_prediction.png (skeleton | parsing overlay) and
    <stem>_prediction.npz (raw outputs) per image; returns the pictures' paths."""
    out_dir = Path(out_dir)
    written = []
    for path in image_paths:
        record = image_record(path)
        outputs = predict_record(model, record, input_size, device)
        picture = out_dir / f"{Path(path).stem}_prediction.png"
        visualize.save_prediction(picture, record.image, outputs["joints"], outputs["parsing"])
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **outputs)
        atomic_write(out_dir / f"{Path(path).stem}_prediction.npz", buffer.getvalue())
        written.append(picture)
    return written


def save_prediction_grid(path, model, dataset, count: int, input_size: int, device="cpu") -> Path:
    """One picture of the first `count` records of a data set, a row each:
    skeleton and parsing of the prediction, then of the ground truth, under
    a strip that names the four columns."""
    rows = []
    for index in range(min(count, len(dataset))):
        record = dataset.record(index)
        outputs = predict_record(model, record, input_size, device)
        rows.append(np.concatenate([visualize.render_prediction(record.image, outputs["joints"], outputs["parsing"]),
                                    visualize.render_prediction(record.image, record.joints, record.parsing)], axis=1))
    titles = ["predicted pose", "predicted parsing", "true pose", "true parsing"]
    save_image(path, visualize.with_column_titles(np.concatenate(rows, axis=0), titles))
    return Path(path)
