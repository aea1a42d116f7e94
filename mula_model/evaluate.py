"""Evaluation with the LIP protocol of the spec (section 5): flip test for
pose, last-stage predictions mapped back to the original image, PCKh@0.5 per
joint group and the parsing scores from one confusion matrix; optionally
writes the pose CSV and the parsing PNGs in LIP's output format."""
import os
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import numpy as np
import torch

from . import metrics
from .amp import autocast
from .data import (
    FLIP_HEATMAP_CHANNELS,
    heatmaps_to_joints,
    labels_to_original,
    make_loader,
    points_to_original,
    write_label_png,
    write_pose_csv,
)
from .data.targets import REFERENCE_INPUT_SIZE

BLUR_SIGMA_AT_256 = 3.0


@dataclass
class Evaluation:
    names: List[str] = field(default_factory=list)
    joints: List[np.ndarray] = field(default_factory=list)  # predicted (16, 2) in original pixels
    pckh: metrics.PCKh = field(default_factory=metrics.PCKh)
    confusion: metrics.ConfusionMatrix = field(default_factory=metrics.ConfusionMatrix)

    def summary(self) -> dict:
        """PCKh@0.5 table and parsing scores, in percent (JSON-serialisable)."""
        pose = {k: float(v) for k, v in self.pckh.compute().items() if k != "per_joint"}
        parsing = {k: float(v) for k, v in self.confusion.compute().items() if k not in ("iou", "accuracy")}
        return {"pckh": pose["Mean"], "miou": parsing["mean_iou"], "pckh_table": pose, "parsing": parsing}


@torch.no_grad()
def predict_batch(model, image: torch.Tensor, flip: bool = True):
    """(pose heatmaps of the last stage, averaged with the flipped image's;
    parsing labels of the last stage) for a batch of model inputs."""
    output = model(image)
    heatmaps = output.pose[-1].float()
    if flip:
        flipped = model(image.flip(-1)).pose[-1].float()
        heatmaps = (heatmaps + flipped.flip(-1)[:, torch.as_tensor(FLIP_HEATMAP_CHANNELS)]) / 2
    return heatmaps, output.parsing[-1].argmax(1)


@torch.no_grad()
def evaluate_model(model, dataset, batch_size: int = 16, device="cpu", amp: bool = False, flip: bool = True,
                   on_parsing: Optional[Callable[[str, np.ndarray], None]] = None) -> Evaluation:
    """Runs the protocol over a data set whose transform is EvalTransform.
    on_parsing(name, labels) receives each parsing map at original size."""
    was_training = model.training
    model.eval()
    evaluation = Evaluation()
    input_size = dataset.transform.input_size
    dtype = next(model.parameters()).dtype
    for batch in make_loader(dataset, batch_size, shuffle=False):
        with autocast(torch.device(device), amp):
            heatmaps, labels = predict_batch(model, batch["image"].to(device, dtype), flip)
        joints = heatmaps_to_joints(heatmaps, input_size, BLUR_SIGMA_AT_256 * input_size / REFERENCE_INPUT_SIZE)
        labels = labels.to(torch.uint8).cpu().numpy()
        for i, name in enumerate(batch["name"]):
            matrix = batch["matrix"][i].numpy()
            predicted = points_to_original(joints[i].cpu().numpy(), matrix)
            evaluation.names.append(name)
            evaluation.joints.append(predicted)
            evaluation.pckh.update(predicted[None], batch["joints_orig"][i].numpy()[None])
            parsing = labels_to_original(labels[i], matrix, tuple(batch["orig_size"][i].tolist()))
            if batch["has_parsing"][i]:
                evaluation.confusion.update(parsing, dataset.record(int(batch["index"][i])).parsing)
            if on_parsing is not None:
                on_parsing(name, parsing)
    model.train(was_training)
    return evaluation


def write_outputs(evaluation: Evaluation, out_dir) -> None:
    """LIP's output format: pose CSV (name, 16 x (x, y) integers)."""
    write_pose_csv(os.path.join(out_dir, "pose_predictions.csv"), evaluation.names, np.stack(evaluation.joints))


def parsing_png_writer(out_dir) -> Callable[[str, np.ndarray], None]:
    folder = os.path.join(out_dir, "parsing")

    def write(name: str, labels: np.ndarray) -> None:
        write_label_png(os.path.join(folder, os.path.splitext(name)[0] + ".png"), labels)
    return write


def format_summary(summary: dict) -> str:
    parsing = summary["parsing"]
    return (metrics.format_pckh(summary["pckh_table"]) + "\n"
            f"parsing: mIoU {parsing['mean_iou']:.1f}  pixel acc {parsing['pixel_accuracy']:.1f}  "
            f"mean acc {parsing['mean_accuracy']:.1f}  fwIoU {parsing['frequency_weighted_iou']:.1f}")
