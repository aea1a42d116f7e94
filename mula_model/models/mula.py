"""Hourglass-based MuLA (spec section 2): two encoders, pose and parsing, that
adapt each other's features at every stage."""
from typing import List, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ModelConfig
from .adaptation import FactorizedAdaptiveConv, ParameterAdapter, dynamic_kernel_size
from .hourglass import Hourglass, Stem


class MuLAOutput(NamedTuple):
    pose: List[Tensor]     # per stage: heatmaps (N, joints + 1, S/4, S/4), last channel = background
    parsing: List[Tensor]  # per stage: log-probabilities (N, parts, S, S)


class TaskStage(nn.Module):
    """One stage of one task: hourglass, preliminary feature R, optional
    adaptive refinement R' = R + R_res, prediction head, and the remaps
    that build the next stage's input."""

    def __init__(self, config: ModelConfig, classes: int, last: bool):
        super().__init__()
        c = config.features
        self.hourglass = Hourglass(c, config.hourglass_depth, config.align_corners)
        self.preliminary = nn.Sequential(nn.Conv2d(c, c, 1), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.adapter = self.refine = None
        if config.mutual_adaptation:
            kernel = dynamic_kernel_size(config.input_size // config.output_stride)
            self.adapter = ParameterAdapter(c)  # reads the *other* task's R
            self.refine = FactorizedAdaptiveConv(c, kernel, batch_norm=True, implementation=config.implementation)
        self.head = nn.Conv2d(c, classes, 1)
        self.remap_features = None if last else nn.Conv2d(c, c, 1)
        self.remap_prediction = None if last else nn.Conv2d(classes, c, 1)

    def refined(self, own: Tensor, other: Tensor) -> Tensor:
        if self.adapter is None:
            return own
        return own + self.refine(own, self.adapter(other))

    def next_input(self, stage_input: Tensor, features: Tensor, logits: Tensor) -> Tensor:
        return stage_input + self.remap_features(features) + self.remap_prediction(logits)


class MuLA(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.pose_stem, self.parsing_stem = Stem(config.features), Stem(config.features)
        last = config.stages - 1
        self.pose_stages = nn.ModuleList(TaskStage(config, config.joints + 1, i == last)
                                         for i in range(config.stages))
        self.parsing_stages = nn.ModuleList(TaskStage(config, config.parts, i == last)
                                            for i in range(config.stages))
        initialize(self)
        for stage in (*self.pose_stages, *self.parsing_stages):
            initialize_head(stage.head)

    def forward(self, image: Tensor) -> MuLAOutput:
        pose_input, parsing_input = self.pose_stem(image), self.parsing_stem(image)
        output = MuLAOutput([], [])
        for pose, parsing in zip(self.pose_stages, self.parsing_stages):
            pose_r = pose.preliminary(pose.hourglass(pose_input))
            parsing_r = parsing.preliminary(parsing.hourglass(parsing_input))
            pose_refined = pose.refined(pose_r, parsing_r)
            parsing_refined = parsing.refined(parsing_r, pose_r)
            pose_logits, parsing_logits = pose.head(pose_refined), parsing.head(parsing_refined)
            output.pose.append(pose_logits)
            output.parsing.append(parsing_log_probs(parsing_logits, image.shape[-2:], self.config.align_corners))
            if pose.remap_features is not None:
                from_refined = self.config.next_stage_input == "refined"
                pose_input = pose.next_input(pose_input, pose_refined if from_refined else pose_r, pose_logits)
                parsing_input = parsing.next_input(parsing_input, parsing_refined if from_refined else parsing_r,
                                                   parsing_logits)
        return output


def parsing_log_probs(logits: Tensor, size, align_corners: bool) -> Tensor:
    upsampled = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=align_corners)
    return F.log_softmax(upsampled, dim=1)


def initialize_head(head: nn.Conv2d, std: float = 0.001) -> None:
    """Small prediction heads: Kaiming-initialised ones start the pose MSE at
    about 7 (targets lie in [0, 1]) and spend the first steps undoing that."""
    nn.init.normal_(head.weight, std=std)
    nn.init.zeros_(head.bias)


def initialize(model: nn.Module, generator: Optional[torch.Generator] = None) -> None:
    """Kaiming-normal convolutions with zero bias; BatchNorm weight 1, bias 0."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, generator=generator)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
