"""Model and training settings. Defaults follow the authors' code (spec
sections 2-4); the paper's choices are options."""
import dataclasses
from dataclasses import dataclass
from typing import Optional, Tuple

from mula_ops import IMPLEMENTATIONS

BACKBONES = ("hourglass", "vgg")
NEXT_STAGE_INPUTS = ("preliminary", "refined")


@dataclass
class ModelConfig:
    backbone: str = "hourglass"
    stages: int = 5                      # Hourglass stages (VGG: exactly 1)
    features: int = 256                  # Hourglass width (VGG uses VGG16's widths)
    hourglass_depth: int = 4             # 2x downsamplings per hourglass
    joints: int = 16                     # the pose head adds one background channel
    parts: int = 20                      # parsing classes, background included
    input_size: int = 256
    mutual_adaptation: bool = True       # False: the paper's baseline without adapters
    next_stage_input: str = "preliminary"  # code: preliminary R; paper: refined R'
    align_corners: bool = True           # code (PyTorch 0.2 bilinear) behaviour
    implementation: str = "mula_ops"     # dynamic conv: 'mula_ops' | 'grouped' | 'unfold'

    def __post_init__(self):
        _check_choice("backbone", self.backbone, BACKBONES)
        _check_choice("next_stage_input", self.next_stage_input, NEXT_STAGE_INPUTS)
        _check_choice("implementation", self.implementation, IMPLEMENTATIONS)
        for name in ("stages", "features", "hourglass_depth", "joints", "parts", "input_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"ModelConfig: expected {name} >= 1, got {getattr(self, name)}")
        if self.backbone == "vgg" and self.stages != 1:
            raise ValueError(f"ModelConfig: the VGG model has exactly one stage, got stages={self.stages}")
        if self.features % 4:
            raise ValueError(f"ModelConfig: expected features divisible by 4, got {self.features}")
        stride = 8 if self.backbone == "vgg" else 4 * 2 ** self.hourglass_depth
        if self.input_size % stride:
            raise ValueError(f"ModelConfig: expected input_size divisible by {stride} for this backbone "
                             f"and hourglass_depth, got {self.input_size}")

    @property
    def output_stride(self) -> int:
        return 8 if self.backbone == "vgg" else 4

    def architecture(self) -> dict:
        """The settings that decide the weights' shapes and meaning; the
        implementation of the dynamic conv is not one of them."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "implementation"}


@dataclass
class TrainConfig:
    epochs: int = 250
    batch_size: int = 24                 # global batch, split over DDP processes
    lr: float = 0.0015                   # code: 0.0015 (Hourglass), 0.0001 (VGG)
    # Code schedule: x1 / 0.5 / 0.25 / 0.1 / 0.05 from epochs 150 / 170 / 200 / 230 of 250;
    # milestones are fractions of `epochs` so the schedule scales with it.
    lr_milestones: Tuple[float, ...] = (0.6, 0.68, 0.8, 0.92)
    lr_factors: Tuple[float, ...] = (0.5, 0.25, 0.1, 0.05)
    parsing_weight: float = 0.01         # loss = sum_stages MSE(pose) + w * NLL(parsing)
    seed: int = 0
    shuffle: bool = True
    eval_every: int = 1                  # validate every k epochs (and after the last)
    eval_batch_size: int = 16
    amp: bool = False
    workers: int = 0
    threads: int = 0                     # torch intra-op threads; 0 keeps torch's default, -1 measures the fastest

    def __post_init__(self):
        self.lr_milestones, self.lr_factors = tuple(self.lr_milestones), tuple(self.lr_factors)
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"TrainConfig: expected epochs >= 1 and batch_size >= 1, "
                             f"got {self.epochs} and {self.batch_size}")
        if self.threads < -1:
            raise ValueError(f"TrainConfig: expected threads >= -1 (0: torch's default, -1: measured), "
                             f"got {self.threads}")
        if len(self.lr_milestones) != len(self.lr_factors):
            raise ValueError("TrainConfig: expected as many lr_factors as lr_milestones")

    def lr_factor(self, epoch: int) -> float:
        """The schedule's multiple of lr in a 0-based epoch (torch.optim.lr_scheduler.LambdaLR's lambda)."""
        factor = 1.0
        for milestone, milestone_factor in zip(self.lr_milestones, self.lr_factors):
            if epoch >= round(milestone * self.epochs):
                factor = milestone_factor
        return factor


@dataclass
class DataConfig:
    root: Optional[str] = None           # LIP-format folder; None = the built-in synthetic people
    synthetic_train: int = 2000          # synthetic training images (seed synthetic_seed)
    synthetic_val: int = 200             # held-out synthetic images (another seed)
    synthetic_seed: int = 0
    synthetic_image_size: Optional[int] = None  # drawn image size; None = the model's input size
    scale_range: Tuple[float, float] = (0.8, 1.5)  # training scale augmentation (spec: U(0.8, 1.5))
    heatmap_sigma: Optional[float] = None  # input pixels; None = the spec's 7 at 256, scaled with the input
    synthetic_accessories: float = 0.5   # probability of each of hat, sunglasses, scarf, gloves

    def __post_init__(self):
        self.scale_range = tuple(self.scale_range)
        if self.root is None and min(self.synthetic_train, self.synthetic_val) < 1:
            raise ValueError("DataConfig: expected synthetic_train and synthetic_val >= 1")
        if not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"DataConfig: expected 0 < scale_range[0] <= scale_range[1], got {self.scale_range}")
        if self.heatmap_sigma is not None and self.heatmap_sigma <= 0:
            raise ValueError(f"DataConfig: expected heatmap_sigma > 0 or None, got {self.heatmap_sigma}")

    def synthetic_size(self, input_size: int) -> int:
        return self.synthetic_image_size or input_size


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"ModelConfig: expected {name} to be one of {choices}, got {value!r}")


def from_dict(cls, values: dict):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown settings {sorted(unknown)}")
    return cls(**values)


__all__ = ["ModelConfig", "TrainConfig", "DataConfig", "from_dict"]
