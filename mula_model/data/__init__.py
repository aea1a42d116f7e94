"""MuLA's data: LIP-format data sets, synthetic people, augmentation, targets and loading.

    from mula_model.data import SyntheticPeople, LIPDataset, TrainTransform, EvalTransform, make_loader
    train = SyntheticPeople(2000, seed=0, image_size=128, transform=TrainTransform(input_size=128))
    for batch in make_loader(train, 16, workers=2, seed=0, epoch=epoch): ...
    batch["image"] (B, 3, S, S), batch["heatmaps"] (B, 17, S/4, S/4), batch["parsing"] (B, S, S) int64

Predictions map back to the original image with points_to_original / labels_to_original and
the sample's "matrix"; heatmaps_to_joints decodes heatmaps as the evaluation protocol does.
"""
from .files import (
                    AnnotationError,
                    atomic_write,
                    read_annotations,
                    read_label_png,
                    read_pose_csv,
                    read_rgb,
                    read_val_csv,
                    save_image,
                    write_annotations,
                    write_label_png,
                    write_pose_csv,
                    write_val_csv,
)
from .lip import SPLITS, LIPDataset, write_lip_dataset
from .loader import make_loader
from .record import (
                    FLIP_HEATMAP_CHANNELS,
                    FLIP_JOINTS,
                    FLIP_PARTS,
                    JOINT,
                    JOINT_NAMES,
                    NUM_JOINTS,
                    NUM_PARTS,
                    PART,
                    PART_NAMES,
                    SKELETON,
                    PersonRecord,
                    missing_joints,
                    normalize_joints,
)
from .synthetic import SyntheticPeople
from .targets import HEATMAP_STRIDE, default_sigma, gaussian_blur, heatmaps_to_joints, make_heatmaps
from .transforms import (
                    IMAGE_MEAN,
                    EvalTransform,
                    TrainTransform,
                    image_to_tensor,
                    labels_to_original,
                    points_to_original,
                    tensor_to_image,
)

__all__ = ["AnnotationError", "atomic_write", "read_annotations", "read_label_png", "read_pose_csv", "read_rgb",
           "read_val_csv", "save_image", "write_annotations", "write_label_png", "write_pose_csv", "write_val_csv",
           "SPLITS", "LIPDataset", "write_lip_dataset", "make_loader", "FLIP_HEATMAP_CHANNELS", "FLIP_JOINTS",
           "FLIP_PARTS", "JOINT", "JOINT_NAMES", "NUM_JOINTS", "NUM_PARTS", "PART", "PART_NAMES", "SKELETON",
           "PersonRecord", "missing_joints", "normalize_joints", "SyntheticPeople", "HEATMAP_STRIDE",
           "default_sigma", "gaussian_blur", "heatmaps_to_joints", "make_heatmaps", "IMAGE_MEAN", "EvalTransform",
           "TrainTransform", "image_to_tensor", "labels_to_original", "points_to_original", "tensor_to_image"]
