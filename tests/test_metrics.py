"""PCKh and parsing metrics against hand-computed cases and a naive-loop oracle; LIP output files."""
import math
import os

import numpy as np
import pytest

from mula_model.data import (
    EvalTransform,
    SyntheticPeople,
    heatmaps_to_joints,
    labels_to_original,
    make_loader,
    points_to_original,
    read_pose_csv,
    read_val_csv,
    write_pose_csv,
    write_val_csv,
)
from mula_model.metrics import ConfusionMatrix, PCKh, format_parsing, format_pckh

NAN = float("nan")


def person(head_top=(0.0, 0.0), upper_neck=(0.0, 10.0)):
    """Ground truth with head size 10 and every other joint at (100, 100)."""
    joints = np.full((16, 3), 100.0)
    joints[:, 2] = 1
    joints[9, :2], joints[8, :2] = head_top, upper_neck
    return joints


def test_pckh_hand_computed():
    gt = np.stack([person(), person(), person(upper_neck=(NAN, NAN))])
    pred = gt[:, :, :2].copy()
    pred[0, 0] += (3, 4)        # r-ankle: distance 5 = 0.5 x head size, counts (<=)
    pred[0, 5] += (0, 5.01)     # l-ankle: just over, wrong
    pred[1, 5] = (NAN, NAN)     # a NaN prediction is wrong
    gt[1, 0, :2] = NAN          # r-ankle not annotated in image 1: excluded
    pred[2] += 1000             # image 2 has no upper-neck: skipped entirely
    metric = PCKh()
    metric.update(pred, gt)
    result = metric.compute()
    assert metric.counts.tolist() == [1] + [2] * 15
    assert result["per_joint"][0] == 100.0
    assert result["per_joint"][5] == 0.0
    assert result["Ankle"] == 50.0
    assert result["Head"] == result["Wrist"] == result["Hip"] == 100.0
    # Mean pools the 14 joints without pelvis/thorax: 1 + 0 + 2*12 hits over 1 + 2 + 2*12 instances.
    assert result["Mean"] == pytest.approx(100 * 25 / 27)
    assert result["Upper body"] == 100.0
    assert "Ankle" in format_pckh(result)


def test_pckh_threshold_scales_with_head_size():
    gt = person(head_top=(0, 0), upper_neck=(0, 40))[None]  # head size 40 -> radius 20
    pred = gt[:, :, :2].copy()
    pred[0, 10] += (0, 19.9)
    pred[0, 15] += (20.1, 0)
    metric = PCKh()
    metric.update(pred, gt)
    per_joint = metric.compute()["per_joint"]
    assert per_joint[10] == 100.0 and per_joint[15] == 0.0


def naive_pckh(pred, gt, threshold=0.5):
    hits, counts = [0] * 16, [0] * 16
    for p, g in zip(pred, gt):
        if any(math.isnan(v) for v in (*g[8, :2], *g[9, :2])):
            continue
        head = math.dist(g[8, :2], g[9, :2])
        for j in range(16):
            if math.isnan(g[j, 0]) or math.isnan(g[j, 1]):
                continue
            counts[j] += 1
            hits[j] += math.dist(p[j], g[j, :2]) <= threshold * head
    return hits, counts


def test_pckh_matches_naive_loop_in_batches():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 100, size=(40, 16, 3))
    gt[rng.random((40, 16)) < 0.15, :2] = NAN
    pred = gt[:, :, :2] + rng.normal(0, 8, size=(40, 16, 2))
    metric = PCKh()
    for start in range(0, 40, 7):
        metric.update(pred[start:start + 7], gt[start:start + 7])
    hits, counts = naive_pckh(pred, gt)
    assert metric.hits.tolist() == hits and metric.counts.tolist() == counts
    result = metric.compute()
    shoulders = [100 * hits[j] / counts[j] for j in (12, 13)]
    assert result["Shoulder"] == pytest.approx(sum(shoulders) / 2)


def test_pckh_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="predictions must have shape"):
        PCKh().update(np.zeros((2, 14, 2)), np.zeros((2, 14, 3)))
    with pytest.raises(ValueError, match="ground_truth must have shape"):
        PCKh().update(np.zeros((2, 16, 2)), np.zeros((3, 16, 3)))


def test_confusion_matrix_hand_computed():
    metric = ConfusionMatrix(num_classes=4)  # class 3 never occurs: its NaN IoU is ignored
    metric.update(np.array([[0, 1, 1], [1, 0, 2]]), np.array([[0, 0, 1], [1, 2, 255]]))
    assert metric.matrix.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    result = metric.compute()
    assert result["iou"][:3] == pytest.approx([100 / 3, 200 / 3, 0])
    assert math.isnan(result["iou"][3])
    assert result["mean_iou"] == pytest.approx(100 / 3)
    assert result["pixel_accuracy"] == pytest.approx(60)
    assert result["mean_accuracy"] == pytest.approx(50)
    assert result["frequency_weighted_iou"] == pytest.approx(40)
    assert "mIoU 33.3" in format_parsing(result, ["a", "b", "c", "d"])


def test_confusion_matrix_matches_naive_count():
    rng = np.random.default_rng(1)
    gt, pred = rng.integers(0, 20, size=(3, 17, 9)), rng.integers(0, 20, size=(3, 17, 9))
    metric = ConfusionMatrix()
    metric.update(pred, gt)
    expected = np.zeros((20, 20), dtype=np.int64)
    for g, p in zip(gt.ravel(), pred.ravel()):
        expected[g, p] += 1
    assert (metric.matrix == expected).all()


def test_confusion_matrix_rejects_bad_predictions():
    with pytest.raises(ValueError, match=r"predictions must lie in \[0, 20\)"):
        ConfusionMatrix().update(np.array([20]), np.array([1]))
    with pytest.raises(ValueError, match="same shape"):
        ConfusionMatrix().update(np.zeros((2, 2)), np.zeros((2, 3)))


def test_pose_csv_round_trip(tmp_path):
    joints = np.arange(2 * 16 * 2, dtype=np.float64).reshape(2, 16, 2) + 0.4
    path = tmp_path / "pred.csv"
    write_pose_csv(path, ["a.jpg", "b.jpg"], joints)
    first_line = path.read_text().splitlines()[0].split(",")
    assert first_line[:3] == ["a.jpg", "0", "1"] and len(first_line) == 33
    names, read = read_pose_csv(path)
    assert names == ["a.jpg", "b.jpg"] and (read == np.round(joints)).all()
    assert os.listdir(tmp_path) == ["pred.csv"]  # no temporary file left behind
    with pytest.raises(ValueError, match="must not contain NaN"):
        write_pose_csv(path, ["a.jpg"], np.full((1, 16, 2), NAN))


def test_val_csv_round_trip_keeps_missing_joints(tmp_path):
    joints = np.ones((1, 16, 3))
    joints[0, 3] = (NAN, NAN, 0)
    write_val_csv(tmp_path / "val.csv", ["x.jpg"], joints)
    assert "nan,nan,nan" in (tmp_path / "val.csv").read_text()
    names, read = read_val_csv(tmp_path / "val.csv")
    assert names == ["x.jpg"] and np.isnan(read[0, 3, :2]).all() and (read[0, 4] == 1).all()


def test_ground_truth_through_the_evaluation_path_scores_near_100():
    """Targets decoded and mapped back as evaluation does must match the annotation."""
    people = SyntheticPeople(12, seed=4, image_size=(120, 90), transform=EvalTransform(128))
    pckh, confusion = PCKh(), ConfusionMatrix()
    for batch in make_loader(people, 6, shuffle=False):
        joints = heatmaps_to_joints(batch["heatmaps"], 128, blur_sigma=1.5)
        for i in range(len(batch["name"])):
            matrix = batch["matrix"][i].numpy()
            pckh.update(points_to_original(joints[i].numpy(), matrix)[None], batch["joints_orig"][i].numpy()[None])
            labels = labels_to_original(batch["parsing"][i].numpy().astype(np.uint8), matrix, (120, 90))
            confusion.update(labels, people.record(int(batch["index"][i])).parsing)
    assert pckh.counts.sum() == 12 * 16
    assert pckh.compute()["Mean"] >= 98
    parsing = confusion.compute()
    assert parsing["pixel_accuracy"] > 99 and parsing["mean_iou"] > 95
