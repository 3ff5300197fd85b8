"""Small, fast torchvision networks for the LFI-CAM tests."""

from __future__ import annotations

import torch
import torchvision
from torch import nn
from torchvision.models.efficientnet import EfficientNet, MBConvConfig


def randomize_bn(model: nn.Module, seed: int) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, so eval mode is not the identity."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return model


def small_resnet(num_classes: int = 4, seed: int = 0) -> nn.Module:
    """torchvision ResNet-18 without the stem max pool: a 4x4 attention map at 64x64 inputs."""
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(num_classes=num_classes)
    model.maxpool = nn.Identity()
    return randomize_bn(model, seed + 100)


def tiny_efficientnet(num_classes: int = 4, seed: int = 0, dropout: float = 0.2,
                      stochastic_depth_prob: float = 0.2) -> nn.Module:
    """A torchvision EfficientNet a few thousand parameters large (output stride 8, 64 channels),
    with dropout and stochastic depth, so that training uses the global RNG."""
    torch.manual_seed(seed)
    setting = [MBConvConfig(1, 3, 1, 16, 16, 1), MBConvConfig(4, 3, 2, 16, 24, 1),
               MBConvConfig(4, 3, 2, 24, 32, 1)]
    return EfficientNet(setting, dropout=dropout, last_channel=64, num_classes=num_classes,
                        stochastic_depth_prob=stochastic_depth_prob)
