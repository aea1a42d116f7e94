"""VGG-based MuLA (spec section 3): VGG16 encoders without pool4/pool5
(stride 8, 512 channels) and one stage of mutual adaptation with 3x3
dynamic filters."""
from torch import Tensor, nn

from ..config import ModelConfig
from .adaptation import FactorizedAdaptiveConv, ParameterAdapter, dynamic_kernel_size
from .mula import MuLAOutput, initialize, parsing_log_probs

VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, 512, 512, 512)
VGG_FEATURES = 512


def vgg_encoder() -> nn.Sequential:
    layers, channels = [], 3
    for layer in VGG16_LAYERS:
        if layer == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(channels, layer, 3, padding=1), nn.ReLU(inplace=True)]
            channels = layer
    return nn.Sequential(*layers)


class VGGTask(nn.Module):
    def __init__(self, config: ModelConfig, classes: int):
        super().__init__()
        self.encoder = vgg_encoder()
        self.adapter = self.refine = None
        if config.mutual_adaptation:
            kernel = dynamic_kernel_size(config.input_size // config.output_stride)
            self.adapter = ParameterAdapter(VGG_FEATURES)
            self.refine = FactorizedAdaptiveConv(VGG_FEATURES, kernel, batch_norm=False,
                                                 implementation=config.implementation)
        self.head = nn.Conv2d(VGG_FEATURES, classes, 1)

    def refined(self, own: Tensor, other: Tensor) -> Tensor:
        if self.adapter is None:
            return own
        return own + self.refine(own, self.adapter(other))


class VGGMuLA(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.pose = VGGTask(config, config.joints + 1)
        self.parsing = VGGTask(config, config.parts)
        initialize(self)

    def forward(self, image: Tensor) -> MuLAOutput:
        pose_r, parsing_r = self.pose.encoder(image), self.parsing.encoder(image)
        pose_logits = self.pose.head(self.pose.refined(pose_r, parsing_r))
        parsing_logits = self.parsing.head(self.parsing.refined(parsing_r, pose_r))
        parsing = parsing_log_probs(parsing_logits, image.shape[-2:], self.config.align_corners)
        return MuLAOutput([pose_logits], [parsing])
