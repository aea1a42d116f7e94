"""The LIP single-person data set on disk (the release's folder names):

    root/
      TrainVal_images/train_images/<im_name>                  (JPEG)
      TrainVal_images/val_images/<im_name>
      Testing_images/testing_images/<im_name>
      TrainVal_parsing_annotations/train_segmentations/<stem>.png   (labels 0-19)
      TrainVal_parsing_annotations/val_segmentations/<stem>.png
      TrainVal_pose_annotations/LIP_SP_TRAIN_annotations.json
      TrainVal_pose_annotations/LIP_SP_VAL_annotations.json
      TrainVal_pose_annotations/LIP_SP_TEST_annotations.json  (im_name only)
      TrainVal_pose_annotations/lip_val_set.csv               (validation ground truth)
"""
import os

import torch

from .files import (
    read_annotations,
    read_label_png,
    read_rgb,
    save_image,
    write_annotations,
    write_label_png,
    write_val_csv,
)
from .record import PersonRecord, normalize_joints

SPLITS = ("train", "val", "test")
_IMAGE_DIRS = {"train": "TrainVal_images/train_images", "val": "TrainVal_images/val_images",
               "test": "Testing_images/testing_images"}
_PARSING_DIRS = {"train": "TrainVal_parsing_annotations/train_segmentations",
                 "val": "TrainVal_parsing_annotations/val_segmentations"}
_ANNOTATION_DIR = "TrainVal_pose_annotations"
VAL_CSV = os.path.join(_ANNOTATION_DIR, "lip_val_set.csv")


def _check_split(split):
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def annotation_path(root, split):
    _check_split(split)
    return os.path.join(root, _ANNOTATION_DIR, f"LIP_SP_{split.upper()}_annotations.json")


def image_path(root, split, im_name):
    _check_split(split)
    return os.path.join(root, _IMAGE_DIRS[split], im_name)


def parsing_path(root, split, im_name):
    """Segmentation PNG of an image, or None for the test split (it has none)."""
    _check_split(split)
    if split not in _PARSING_DIRS:
        return None
    return os.path.join(root, _PARSING_DIRS[split], os.path.splitext(im_name)[0] + ".png")


class LIPDataset(torch.utils.data.Dataset):
    """LIP-format split read from root (layout in this module's docstring).

    dataset[i] is transform(record, i) (see transforms.TrainTransform / EvalTransform), or the
    PersonRecord itself when transform is None; dataset.record(i) always gives the record.
    The test split has no joints (all NaN) and no parsing (None).
    """

    def __init__(self, root, split, transform=None):
        _check_split(split)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"LIP data folder not found: {root!r} (expected the layout described in "
                                    f"mula_model.data.lip, e.g. written by write_lip_dataset)")
        self.root = os.fspath(root)
        self.split = split
        self.transform = transform
        self.entries = read_annotations(annotation_path(root, split), with_joints=split != "test")
        image_dir = os.path.join(root, _IMAGE_DIRS[split])
        if not os.path.isdir(image_dir):
            raise FileNotFoundError(f"image folder of the {split} split not found: {image_dir}")

    def __len__(self):
        return len(self.entries)

    def record(self, index):
        entry = self.entries[index]
        name = entry["im_name"]
        image = read_rgb(image_path(self.root, self.split, name))
        labels_path = parsing_path(self.root, self.split, name)
        parsing = None if labels_path is None else read_label_png(labels_path)
        if parsing is not None and parsing.shape != image.shape[:2]:
            raise ValueError(f"{labels_path}: segmentation size {parsing.shape} differs from its image's "
                             f"{image.shape[:2]}")
        if "joints" in entry:
            joints, objpos, scale = entry["joints"], entry["objpos"], entry["scale_provided"]
        else:
            height, width = image.shape[:2]
            joints, objpos, scale = normalize_joints([[0, 0, 0]] * 16), [width / 2, height / 2], 0.0
        return PersonRecord(name, image, joints, objpos, scale, parsing)

    def __getitem__(self, index):
        record = self.record(index)
        return record if self.transform is None else self.transform(record, index)


def write_lip_dataset(root, splits):
    """Write records to root in the LIP layout, readable by LIPDataset.

    splits: {"train": records, "val": records, "test": records} (any subset); records are
    PersonRecords, e.g. a SyntheticPeople. Images are JPEG (quality 95, no chroma subsampling),
    segmentations PNG; the val split also gets lip_val_set.csv. Every file is written atomically.
    """
    for split, records in splits.items():
        _check_split(split)
        records = [records[i] for i in range(len(records))]
        for record in records:
            save_image(image_path(root, split, record.name), record.image)
            labels_path = parsing_path(root, split, record.name)
            if labels_path is not None:
                if record.parsing is None:
                    raise ValueError(f"record {record.name!r} of the {split} split has no parsing map")
                write_label_png(labels_path, record.parsing)
        write_annotations(annotation_path(root, split), records, with_joints=split != "test")
        if split == "val":
            write_val_csv(os.path.join(root, VAL_CSV), [r.name for r in records], [r.joints for r in records])
