"""Evaluation metrics of the LIP protocol: PCKh@0.5 for pose, a confusion matrix for parsing.

Both are accumulators: update() per batch, then compute(); their counts are plain int64
arrays (hits/counts, matrix) that can be summed across processes. Results are percentages.
"""
import numpy as np

from .data.record import JOINT, NUM_JOINTS, NUM_PARTS, PART_NAMES

# Groups of the LIP table: each is the mean of its joints' PCKh (left and right alike).
PCKH_GROUPS = {
    "Head": (JOINT["upper_neck"], JOINT["head_top"]),
    "Shoulder": (JOINT["r_shoulder"], JOINT["l_shoulder"]),
    "Elbow": (JOINT["r_elbow"], JOINT["l_elbow"]),
    "Wrist": (JOINT["r_wrist"], JOINT["l_wrist"]),
    "Hip": (JOINT["r_hip"], JOINT["l_hip"]),
    "Knee": (JOINT["r_knee"], JOINT["l_knee"]),
    "Ankle": (JOINT["r_ankle"], JOINT["l_ankle"]),
}
# Pooled over all their annotated instances (so weighted by how often each joint is annotated).
UPPER_BODY_JOINTS = tuple(range(JOINT["upper_neck"], NUM_JOINTS))
MEAN_JOINTS = tuple(j for j in range(NUM_JOINTS) if j not in (JOINT["pelvis"], JOINT["thorax"]))


def _as_numpy(array, dtype):
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array, dtype=dtype)


class PCKh:
    """PCKh@threshold: a joint is correct when its distance to the ground truth is at most
    threshold x head size, head size = |head-top - upper-neck| (no 0.6 factor).

    Images whose ground truth lacks head-top or upper-neck are skipped; missing ground-truth
    joints (NaN) are excluded; a NaN prediction counts as wrong.
    """

    def __init__(self, threshold=0.5):
        self.threshold = threshold
        self.hits = np.zeros(NUM_JOINTS, dtype=np.int64)
        self.counts = np.zeros(NUM_JOINTS, dtype=np.int64)

    def update(self, predictions, ground_truth):
        """predictions (M, 16, >=2) and ground_truth (M, 16, >=2) in the same pixel frame."""
        predictions = _as_numpy(predictions, np.float64)
        ground_truth = _as_numpy(ground_truth, np.float64)
        if predictions.ndim != 3 or predictions.shape[1:2] != (NUM_JOINTS,) or predictions.shape[2] < 2:
            raise ValueError(f"predictions must have shape (M, {NUM_JOINTS}, 2), got {predictions.shape}")
        if ground_truth.shape[:2] != predictions.shape[:2] or ground_truth.shape[2] < 2:
            raise ValueError(f"ground_truth must have shape ({predictions.shape[0]}, {NUM_JOINTS}, 2 or 3), "
                             f"got {ground_truth.shape}")
        predicted, truth = predictions[..., :2], ground_truth[..., :2]
        head_size = np.linalg.norm(truth[:, JOINT["head_top"]] - truth[:, JOINT["upper_neck"]], axis=1)
        usable = np.isfinite(head_size) & (head_size > 0)
        annotated = ~np.isnan(truth).any(axis=2) & usable[:, None]
        distance = np.linalg.norm(predicted - truth, axis=2)
        with np.errstate(invalid="ignore", divide="ignore"):
            correct = distance <= self.threshold * head_size[:, None]
        self.hits += (correct & annotated).sum(axis=0)
        self.counts += annotated.sum(axis=0)

    def compute(self):
        """{"per_joint": (16,) array, "Head", ..., "Ankle", "Upper body", "Mean"} in percent;
        NaN where nothing was annotated."""
        def pooled(joints):
            count = self.counts[list(joints)].sum()
            return 100.0 * self.hits[list(joints)].sum() / count if count else float("nan")

        per_joint = np.array([pooled((j,)) for j in range(NUM_JOINTS)])
        result = {"per_joint": per_joint}
        for name, joints in PCKH_GROUPS.items():
            values = per_joint[list(joints)]
            result[name] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
        result["Upper body"] = pooled(UPPER_BODY_JOINTS)
        result["Mean"] = pooled(MEAN_JOINTS)
        return result


class ConfusionMatrix:
    """num_classes x num_classes counts, rows = ground truth, columns = prediction.

    Ground-truth values outside [0, num_classes) (e.g. an ignore label 255) are skipped.
    """

    def __init__(self, num_classes=NUM_PARTS):
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, predictions, ground_truth):
        """Label maps of equal shape (any number of dimensions)."""
        predictions = _as_numpy(predictions, np.int64)
        ground_truth = _as_numpy(ground_truth, np.int64)
        if predictions.shape != ground_truth.shape:
            raise ValueError(f"predictions and ground_truth must have the same shape, got "
                             f"{predictions.shape} and {ground_truth.shape}")
        valid = (ground_truth >= 0) & (ground_truth < self.num_classes)
        predicted = predictions[valid]
        if predicted.size and (predicted.min() < 0 or predicted.max() >= self.num_classes):
            raise ValueError(f"predictions must lie in [0, {self.num_classes}), got range "
                             f"[{predicted.min()}, {predicted.max()}]")
        pairs = ground_truth[valid] * self.num_classes + predicted
        self.matrix += np.bincount(pairs, minlength=self.num_classes ** 2).reshape(self.num_classes, -1)

    def compute(self):
        """{"pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou"} in percent,
        plus "iou" and "accuracy" per class (NaN for a class absent from both)."""
        matrix = self.matrix.astype(np.float64)
        correct = np.diag(matrix)
        truth, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = correct / (truth + predicted - correct)
            accuracy = correct / truth
        total = matrix.sum()
        frequency = truth / total if total else truth
        present = truth > 0

        def nanmean(values):
            return 100.0 * float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")

        return {
            "pixel_accuracy": 100.0 * correct.sum() / total if total else float("nan"),
            "mean_accuracy": nanmean(accuracy),
            "mean_iou": nanmean(iou),
            "frequency_weighted_iou": (100.0 * float((frequency[present] * iou[present]).sum()) if total
                                       else float("nan")),
            "iou": 100.0 * iou,
            "accuracy": 100.0 * accuracy,
        }


def format_pckh(result):
    """Two-line table: Head, Shoulder, Elbow, Wrist, Hip, Knee, Ankle, Upper body, Mean."""
    names = list(PCKH_GROUPS) + ["Upper body", "Mean"]
    header = "PCKh@0.5 " + " ".join(f"{name:>10}" for name in names)
    values = "         " + " ".join(f"{result[name]:10.1f}" for name in names)
    return header + "\n" + values


def format_parsing(result, class_names=PART_NAMES):
    """Summary line plus the IoU of every class."""
    summary = (f"pixel acc {result['pixel_accuracy']:.1f}  mean acc {result['mean_accuracy']:.1f}  "
               f"mIoU {result['mean_iou']:.1f}  fwIoU {result['frequency_weighted_iou']:.1f}")
    classes = "  ".join(f"{name} {value:.1f}" for name, value in zip(class_names, result["iou"]))
    return summary + "\nIoU: " + classes
