"""The tiny networks every test module shares (one place, built from seeds, fast on 2 CPU cores).

- :class:`TinyNet`: conv-BN-ReLU(inplace) blocks and a GAP -> Linear head (explainers, metrics).
- :func:`tiny`: a seeded GAP -> Linear classifier that the ``xcam`` command can build by name
  (``tests.nets:tiny``), for ``compare`` and the CLI.
- :func:`small_resnet`, :func:`tiny_efficientnet`: torchvision backbones for LFI-CAM.
- :func:`randomize_bn`: non-trivial batch-norm statistics, so eval mode is not the identity.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn
from torchvision.models.efficientnet import EfficientNet, MBConvConfig


class TinyNet(nn.Module):
    """A small CNN with a GAP -> Linear head and an in-place ReLU after the tapped block."""

    def __init__(self, n_classes: int = 5, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width),
        )
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, n_classes)

    def forward(self, x):
        x = self.act(self.features(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def randomize_bn(model: nn.Module, seed: int | torch.Generator) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, so eval mode is not the identity."""
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return model


class Tiny(nn.Module):
    """Conv -> BN -> ReLU -> pool -> conv -> ReLU -> GAP -> Linear; weights fixed by a seed."""

    def __init__(self, num_classes: int = 5, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def tiny(num_classes: int = 5) -> nn.Module:
    """The same weights on every call (seeded; the caller's RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Tiny(num_classes)
        gen = torch.Generator().manual_seed(1)
        bn = model.features[1]
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=gen) * 0.1)
        bn.running_var.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
    return model.eval()


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


def tiny_detector(size: int = 32, seed: int = 0) -> nn.Module:
    """fasterrcnn_mobilenet_v3_large_fpn with random weights, resized to ``size`` px, few proposals.

    For the detector explainers (``model_type`` :class:`xcam.explanation.Detector`) in the
    registry-driven suites. Every box above score 0 is kept, and the heads get larger random
    weights than torchvision's init (std 0.01 / 0.001 makes the proposals the anchors themselves),
    so that the detections depend on the image.
    """
    torch.manual_seed(seed)
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, num_classes=5, box_score_thresh=0.0, min_size=size,
        max_size=size, rpn_pre_nms_top_n_test=20, rpn_post_nms_top_n_test=10, box_detections_per_img=20,
    )
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module, std in [(model.roi_heads.box_predictor.cls_score, 0.5),
                            (model.roi_heads.box_predictor.bbox_pred, 0.05),
                            (model.rpn.head.cls_logits, 0.3), (model.rpn.head.bbox_pred, 0.05)]:
            module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * std)
    return model.eval()


def tiny_vit(num_classes: int = 5, seed: int = 0, *, image_size: int = 32, patch_size: int = 8,
             num_layers: int = 2, dropout: float = 0.0) -> nn.Module:
    """A torchvision VisionTransformer a few thousand parameters large (two blocks, two heads).

    At 32 x 32 it has a 4 x 4 patch grid and a class token (17 tokens); non-zero class token and
    positional embeddings, so the tokens differ from the first block on. The model of the registry suites
    for explainers whose ``model_type`` is :class:`xcam.methods.ViTModel`.
    """
    from torchvision.models.vision_transformer import VisionTransformer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VisionTransformer(image_size=image_size, patch_size=patch_size, num_layers=num_layers,
                                  num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=num_classes,
                                  dropout=dropout, attention_dropout=dropout)
        nn.init.normal_(model.class_token, std=0.5)
        nn.init.normal_(model.heads.head.weight, std=0.5)
        nn.init.normal_(model.heads.head.bias, std=0.1)
    return model.eval()
