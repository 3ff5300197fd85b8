"""The LFI-CAM network: a torchvision CNN with a Feature Importance Network and attention.

Lee, Jeong, Wang, Lee, "LFI-CAM: Learning Feature Importance for Better Visual Explanation",
ICCV 2021 (arXiv 2105.00937). With ``F`` (B, C, h, w) the output of the backbone's last
convolutional stage and ``x`` the (normalized) input:

- ``G`` = channel mean of ``x``, bilinearly resized to (h, w); ``N_k`` = per-sample min-max of
  ``F_k`` (a constant channel becomes 1, an all-zero channel 0); the FIN input is ``M = N * G``.
- The Feature Importance Network maps ``M`` to ``w`` (B, C): ``depth`` blocks of 3x3 convolution
  (no bias) + BatchNorm + ReLU, global average pooling, softmax over channels.
- ``A = minmax( ReLU( sum_k w_k F_k ) )`` (B, 1, h, w), not detached.
- ``F' = (1 + A) * F`` goes through the backbone's own pooling and classifier head.

Nothing is detached: the FIN's parameters get gradients only through ``(1 + A)``, while the
backbone gets them both directly and through ``A`` and the FIN's input ``M``.

The backbone keeps its parameter names under ``net.backbone``, so its state dict (and pretrained
weights) load unchanged; the FIN is ``net.fin``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_int, did_you_mean, eval_mode
from ..errors import InputError, InputTypeError, warn
from ..postprocess import normalize

__all__ = [
    "LFICAMNet",
    "FeatureImportanceNetwork",
    "AttentionMap",
    "Cost",
    "SUPPORTED_FAMILIES",
    "channel_minmax",
    "fin_input",
]

ReluPlacement = Literal["after_bn", "before_bn", "hidden", "none"]
_RELU_PLACEMENTS = ("after_bn", "before_bn", "hidden", "none")


# -- the pieces of the equations ---------------------------------------------------------------
def channel_minmax(features: Tensor) -> Tensor:
    """``N``: per-sample, per-channel min-max of (B, C, h, w) features over space.

    A channel with a positive range becomes ``(F_k - min) / (max - min)``; a constant channel
    becomes 1, unless it is all zero, which stays 0 (the LFI-CAM pinned definition).
    """
    flat = features.flatten(2)
    lo = flat.amin(dim=2, keepdim=True)
    hi = flat.amax(dim=2, keepdim=True)
    span = hi - lo
    scaled = (flat - lo) / torch.where(span > 0, span, torch.ones_like(span))
    constant = (flat != 0).to(features.dtype)
    return torch.where(span > 0, scaled, constant).reshape(features.shape)


def fin_input(inputs: Tensor, features: Tensor) -> Tensor:
    """``M = N * G``: the FIN's input from the network input (B, 3, H, W) and ``F`` (B, C, h, w).

    ``G`` is the channel mean of ``inputs`` resized bilinearly (``align_corners=False``) to (h, w).
    """
    gray = inputs.mean(dim=1, keepdim=True)
    gray = F.interpolate(gray, size=features.shape[-2:], mode="bilinear", align_corners=False)
    return channel_minmax(features) * gray.to(features.dtype)


class AttentionMap(nn.Module):
    """``A = minmax( ReLU( sum_k w_k F_k ) )``: (B, C) weights, (B, C, h, w) -> (B, 1, h, w).

    A module without parameters, so that a forward hook can read or replace the attention map.
    The min-max is per sample over space; a constant map becomes 0.
    """

    def forward(self, weights: Tensor, features: Tensor) -> Tensor:
        """See the class docstring."""
        cam = torch.relu(torch.einsum("bc,bchw->bhw", weights.to(features.dtype), features))
        return normalize(cam)[:, None]


class FeatureImportanceNetwork(nn.Module):
    """The FIN: ``depth`` blocks of 3x3 conv (no bias) + BN + ReLU, global average pool, softmax.

    Args:
        channels: C, the number of feature channels (input and output).
        depth: number of conv blocks (default 4, as in the paper).
        width: channels of the hidden blocks; ``None`` keeps C everywhere (the paper's FIN). The
            first block maps C -> width and the last width -> C, so it needs ``depth >= 2``.
        relu: where the ReLU goes: ``"after_bn"`` (conv-BN-ReLU, the paper), ``"before_bn"``
            (conv-ReLU-BN), ``"hidden"`` (conv-BN-ReLU except the last block, which ends at BN, so
            the pooled values can be negative) or ``"none"``.
        seed: seed of the Kaiming initialization of the convolutions (``None``: global RNG).

    Shapes: (B, C, h, w) -> (B, C), each row positive and summing to 1.
    """

    def __init__(
        self,
        channels: int,
        depth: int = 4,
        width: int | None = None,
        relu: ReluPlacement = "after_bn",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        check_int("channels", channels, 1)
        check_int("depth", depth, 1)
        if width is not None:
            check_int("width", width, 1)
            if depth < 2:
                raise InputError(
                    f"width={width} sets the hidden channels of the FIN, but depth={depth} has no "
                    "hidden block; use depth >= 2 or width=None"
                )
        if relu not in _RELU_PLACEMENTS:
            hint = did_you_mean(relu, _RELU_PLACEMENTS)
            raise InputError(f"relu must be one of {_RELU_PLACEMENTS}, got {relu!r}{hint}")
        self.channels, self.depth, self.width, self.relu = channels, depth, width, relu
        hidden = channels if width is None else width
        layers: list[nn.Module] = []
        for i in range(depth):
            c_in = channels if i == 0 else hidden
            c_out = channels if i == depth - 1 else hidden
            conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False)
            bn = nn.BatchNorm2d(c_out)
            last = i == depth - 1
            if relu == "after_bn" or (relu == "hidden" and not last):
                layers += [conv, bn, nn.ReLU(inplace=True)]
            elif relu == "before_bn":
                layers += [conv, nn.ReLU(inplace=True), bn]
            else:
                layers += [conv, bn]
        self.blocks = nn.Sequential(*layers)
        self.reset_parameters(seed)

    def reset_parameters(self, seed: int | None = None) -> None:
        """Kaiming-normal convolutions (fan_out, as torchvision's ResNet), BN weight 1 and bias 0."""
        gen = None if seed is None else torch.Generator().manual_seed(int(seed))
        for m in self.blocks:
            if isinstance(m, nn.Conv2d):
                weight = torch.empty(m.weight.shape, dtype=torch.float32)
                nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu", generator=gen)
                with torch.no_grad():
                    m.weight.copy_(weight)
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()

    def logits(self, fin_inputs: Tensor) -> Tensor:
        """The pooled values before the softmax, (B, C)."""
        return cast(Tensor, self.blocks(fin_inputs)).mean(dim=(2, 3))

    def forward(self, fin_inputs: Tensor) -> Tensor:
        """See the class docstring."""
        return torch.softmax(self.logits(fin_inputs), dim=1)


# -- splitting torchvision backbones into features and pooling + head --------------------------
@dataclass(frozen=True)
class BackboneSplit:
    family: str
    layer: str  # dotted name, inside the backbone, of the tapped stage
    features: Callable[[Any, Tensor], Tensor]
    head: Callable[[Any, Tensor], Tensor]


def _vgg_cut(b: Any) -> int:
    """Index in ``b.features`` of the final max pool (it belongs to the head), or len()."""
    n = len(b.features)
    return n - 1 if n and isinstance(b.features[n - 1], nn.MaxPool2d) else n


def _vgg_features(b: Any, x: Tensor) -> Tensor:
    for i in range(_vgg_cut(b)):
        x = b.features[i](x)
    return x


def _vgg_head(b: Any, x: Tensor) -> Tensor:
    for i in range(_vgg_cut(b), len(b.features)):
        x = b.features[i](x)
    return cast(Tensor, b.classifier(torch.flatten(b.avgpool(x), 1)))


def _resnet_features(b: Any, x: Tensor) -> Tensor:
    x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
    return cast(Tensor, b.layer4(b.layer3(b.layer2(b.layer1(x)))))


def _resnet_head(b: Any, x: Tensor) -> Tensor:
    return cast(Tensor, b.fc(torch.flatten(b.avgpool(x), 1)))


def _densenet_features(b: Any, x: Tensor) -> Tensor:
    return F.relu(b.features(x))


def _functional_pool_head(b: Any, x: Tensor) -> Tensor:
    return cast(Tensor, b.classifier(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)))


def _plain_features(b: Any, x: Tensor) -> Tensor:
    return cast(Tensor, b.features(x))


def _pool_classifier_head(b: Any, x: Tensor) -> Tensor:
    return cast(Tensor, b.classifier(torch.flatten(b.avgpool(x), 1)))


def _regnet_features(b: Any, x: Tensor) -> Tensor:
    return cast(Tensor, b.trunk_output(b.stem(x)))


def _regnet_head(b: Any, x: Tensor) -> Tensor:
    return cast(Tensor, b.fc(b.avgpool(x).flatten(start_dim=1)))


def _convnext_head(b: Any, x: Tensor) -> Tensor:
    return cast(Tensor, b.classifier(b.avgpool(x)))


def _lite_features(b: Any, x: Tensor) -> Tensor:
    return cast(Tensor, b.extract_features(x))


def _lite_head(b: Any, x: Tensor) -> Tensor:
    return cast(Tensor, b._fc(b._dropout(b._avg_pooling(x).flatten(1))))


def _extra_splits() -> list[tuple[type, BackboneSplit]]:
    """Splits for non-torchvision classifiers, when their package is installed.

    EfficientNet-Lite (PyPI ``efficientnet-lite-pytorch``, :func:`xcam.models.efficientnet_lite0`):
    ``F`` is ``extract_features``, ``ReLU6(_bn1(...))``; the ReLU6 module is shared with the stem,
    so the named layer is ``_bn1`` (as DenseNet's ``features``, whose final ReLU is functional).
    On the plain model the tap ``"_avg_pooling:input"`` is exactly ``F``.
    """
    try:
        from efficientnet_lite_pytorch import EfficientNet as LiteEfficientNet
    except ModuleNotFoundError:
        return []
    return [(LiteEfficientNet, BackboneSplit("efficientnet_lite", "_bn1", _lite_features, _lite_head))]


def _splits() -> list[tuple[type, BackboneSplit]]:
    """Torchvision class -> split, mirroring each class's own ``forward``."""
    from torchvision import models as tvm

    return [
        *_extra_splits(),
        (tvm.ResNet, BackboneSplit("resnet", "layer4", _resnet_features, _resnet_head)),
        (tvm.VGG, BackboneSplit("vgg", "features", _vgg_features, _vgg_head)),
        (tvm.DenseNet, BackboneSplit("densenet", "features", _densenet_features, _functional_pool_head)),
        (tvm.MobileNetV2, BackboneSplit("mobilenet_v2", "features", _plain_features, _functional_pool_head)),
        (tvm.MobileNetV3, BackboneSplit("mobilenet_v3", "features", _plain_features, _pool_classifier_head)),
        (tvm.EfficientNet, BackboneSplit("efficientnet", "features", _plain_features, _pool_classifier_head)),
        (tvm.RegNet, BackboneSplit("regnet", "trunk_output", _regnet_features, _regnet_head)),
        (tvm.ConvNeXt, BackboneSplit("convnext", "features", _plain_features, _convnext_head)),
    ]


SUPPORTED_FAMILIES = (
    "resnet/resnext/wide_resnet", "vgg", "densenet", "mobilenet_v2", "mobilenet_v3",
    "efficientnet_b*/v2", "regnet", "convnext", "efficientnet_lite (efficientnet-lite-pytorch)",
)


def split_for(backbone: nn.Module) -> BackboneSplit:
    for cls, split in _splits():
        if isinstance(backbone, cls):
            return split
    raise InputError(
        f"backbone: LFICAMNet splits a torchvision classifier into its last convolutional stage and "
        f"its pooling + head, and knows these families: {', '.join(SUPPORTED_FAMILIES)}; got "
        f"{type(backbone).__name__}. Build the backbone with torchvision.models, e.g. "
        "torchvision.models.resnet50(num_classes=10) or xcam.lfi.build_backbone('resnet50', 10)"
    )


@dataclass(frozen=True)
class Cost:
    """Parameters and FLOPs of an :class:`LFICAMNet` for one image of ``input_size``.

    FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode`: 2 per multiply-add of
    convolutions and matrix products; normalization, activations and pooling are not counted.
    """

    input_size: tuple[int, int, int]
    attention_size: tuple[int, int]
    backbone_params: int
    fin_params: int
    backbone_flops: int
    fin_flops: int

    @property
    def total_params(self) -> int:
        """Parameters of the backbone and the FIN together."""
        return self.backbone_params + self.fin_params

    @property
    def total_flops(self) -> int:
        """FLOPs of the backbone and the FIN together."""
        return self.backbone_flops + self.fin_flops

    def __str__(self) -> str:
        rows = [
            ("", "params (M)", "GFLOPs"),
            ("backbone + head", f"{self.backbone_params / 1e6:.2f}", f"{self.backbone_flops / 1e9:.3f}"),
            ("FIN", f"{self.fin_params / 1e6:.2f}", f"{self.fin_flops / 1e9:.3f}"),
            ("total", f"{self.total_params / 1e6:.2f}", f"{self.total_flops / 1e9:.3f}"),
        ]
        lines = [f"{a:<16}{b:>12}{c:>10}" for a, b, c in rows]
        h, w = self.attention_size
        lines.append(f"input {self.input_size}, attention map {h}x{w}")
        return "\n".join(lines)


class LFICAMNet(nn.Module):
    """A torchvision CNN classifier with LFI-CAM's Feature Importance Network and attention.

    ``logits = head( (1 + A) * F )`` with ``F`` the backbone's last convolutional stage and
    ``A = minmax( ReLU( sum_k w_k F_k ) )``, ``w = FIN( minmax_k(F) * G )`` (see the module
    docstring). The FIN learns only through ``(1 + A)``; train with :func:`xcam.lfi.fit`.

    Args:
        backbone: a torchvision classifier of a supported family (:data:`SUPPORTED_FAMILIES`):
            ResNet/ResNeXt, VGG, DenseNet, MobileNetV2/V3, EfficientNet (B0-B7, V2), RegNet,
            ConvNeXt; and EfficientNet-Lite from ``efficientnet-lite-pytorch``. Its own pooling
            and head are kept; its parameters stay under ``backbone.``.
        depth: FIN conv blocks (default 4, the paper).
        width: hidden FIN channels (``None``: C, the paper). A ResNet-50 FIN of the paper's size
            adds about 151 M parameters; ``width=256`` cuts that to about 11 M.
        relu: ReLU placement in the FIN, see :class:`FeatureImportanceNetwork`.
        seed: seed of the FIN initialization (``None``: the global RNG).

    Example:
        >>> net = LFICAMNet(torchvision.models.resnet18(num_classes=10), depth=2, width=128)
        >>> logits, attention = net(x, return_attention=True)  # (B, 10), (B, 1, h, w) in [0, 1]
        >>> print(net.cost((3, 224, 224)))
    """

    def __init__(
        self,
        backbone: nn.Module,
        depth: int = 4,
        width: int | None = None,
        relu: ReluPlacement = "after_bn",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(backbone, nn.Module):
            raise InputTypeError(
                f"backbone must be a torchvision classifier (nn.Module), got {type(backbone).__name__}"
            )
        if isinstance(backbone, LFICAMNet):
            raise InputError("backbone is already an LFICAMNet; pass its .backbone to re-wrap it")
        self._split = split_for(backbone)
        self.backbone = backbone
        self.family = self._split.family
        layer = self._split.layer
        if self.family == "vgg":  # the tap is the last module before the final max pool
            layer = f"features.{_vgg_cut(backbone) - 1}"
        self.layer = f"backbone.{layer}"
        self.arch: str | None = None  # torchvision model name, set by build helpers (checkpoints)
        self.classes: list[str] | None = None  # class names, set when trained on an ImageFolder
        channels, self._in_channels = self._probe_channels(backbone)
        self.channels = channels
        fin = FeatureImportanceNetwork(channels, depth=depth, width=width, relu=relu, seed=seed)
        param = next(backbone.parameters(), None)
        if param is not None:
            fin = fin.to(device=param.device, dtype=param.dtype)
        self.fin = fin
        self.attention = AttentionMap()
        self._warned_1x1 = False

    @staticmethod
    def _probe_channels(backbone: nn.Module) -> tuple[int, int]:
        """C of the tapped stage, from one forward of a small zero image in eval mode."""
        conv = next((m for m in backbone.modules() if isinstance(m, nn.Conv2d)), None)
        in_channels = conv.in_channels if conv is not None else 3
        param = next(backbone.parameters(), None)
        with eval_mode(backbone), torch.no_grad():
            probe = torch.zeros(
                1, in_channels, 64, 64,
                device=param.device if param is not None else None,
                dtype=param.dtype if param is not None else None,
            )
            features = split_for(backbone).features(backbone, probe)
        if features.dim() != 4:
            raise InputError(
                f"backbone: the last convolutional stage of {type(backbone).__name__} returned shape "
                f"{tuple(features.shape)}, not (B, C, h, w)"
            )
        return int(features.shape[1]), in_channels

    # -- the forward pass, piece by piece ------------------------------------------------------
    def features(self, inputs: Tensor) -> Tensor:
        """``F``: the backbone's last convolutional stage, (B, C, h, w)."""
        return self._split.features(self.backbone, inputs)

    def head(self, features: Tensor) -> Tensor:
        """The backbone's own pooling and classifier applied to (B, C, h, w) features."""
        return self._split.head(self.backbone, features)

    def importance(self, inputs: Tensor) -> Tensor:
        """``w``: the FIN's channel weights (B, C), positive and summing to 1 per sample."""
        features = self.features(inputs)
        return cast(Tensor, self.fin(fin_input(inputs, features)))

    def forward(self, inputs: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Logits (B, K); with ``return_attention`` also ``A`` (B, 1, h, w) in [0, 1]."""
        if not isinstance(inputs, Tensor) or inputs.dim() != 4:
            got = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
            raise InputError(f"inputs must be a (B, C, H, W) tensor, got {got}")
        features = self.features(inputs)
        if features.shape[-1] * features.shape[-2] == 1 and not self._warned_1x1:
            self._warned_1x1 = True
            warn(
                f"LFICAMNet: the attention map of {self.layer!r} is 1x1 for inputs of size "
                f"{tuple(inputs.shape[-2:])}, so A is 0 and the FIN cannot learn; use larger inputs"
            )
        weights = self.fin(fin_input(inputs, features))
        attention = self.attention(weights, features)
        logits = self.head((1 + attention) * features)
        return (logits, attention) if return_attention else logits

    # -- bookkeeping ---------------------------------------------------------------------------
    def backbone_parameters(self) -> list[nn.Parameter]:
        """Parameters of the backbone and its head (everything but the FIN)."""
        return list(self.backbone.parameters())

    def attention_params(self) -> dict[str, Any]:
        """What produced the attention map (for :class:`~xcam.explanation.AttentionModel`)."""
        return {"layer": self.layer, "depth": self.fin.depth, "width": self.fin.width}

    def config(self) -> dict[str, Any]:
        """Constructor settings and provenance, stored in checkpoints (plain Python values)."""
        linears = [m for m in self.backbone.modules() if isinstance(m, nn.Linear)]
        return {
            "family": self.family, "arch": self.arch, "classes": self.classes,
            "num_classes": linears[-1].out_features if linears else None,
            "channels": self.channels, "depth": self.fin.depth, "width": self.fin.width,
            "relu": self.fin.relu,
        }

    def cost(self, input_size: tuple[int, int, int] | tuple[int, int] = (3, 224, 224)) -> Cost:
        """Parameters and FLOPs for one image of ``input_size`` ((C, H, W) or (H, W)).

        Runs one forward pass of a zero image in eval mode under ``torch.no_grad()``; the
        ``training`` flags are restored.
        """
        from torch.utils.flop_counter import FlopCounterMode

        size = tuple(int(s) for s in input_size)
        if len(size) == 2:
            size = (self._in_channels, *size)
        if len(size) != 3 or min(size) < 1:
            raise InputError(f"input_size must be (C, H, W) or (H, W) of positive ints, got {input_size}")
        param = next(self.parameters())
        x = torch.zeros(1, *size, device=param.device, dtype=param.dtype)
        counter = FlopCounterMode(display=False)
        with eval_mode(self), torch.no_grad(), counter:
            _, attention = self(x, return_attention=True)
        counts = counter.get_flop_counts()
        total = sum(counts.get("Global", {}).values())
        fin = sum(counts.get(f"{type(self).__name__}.fin", {}).values())
        n_fin = sum(p.numel() for p in self.fin.parameters())
        n_all = sum(p.numel() for p in self.parameters())
        return Cost(
            input_size=size,
            attention_size=(int(attention.shape[-2]), int(attention.shape[-1])),
            backbone_params=n_all - n_fin, fin_params=n_fin,
            backbone_flops=int(total - fin), fin_flops=int(fin),
        )

    def extra_repr(self) -> str:
        """The family, tapped layer and channel count, for ``repr``."""
        return f"family={self.family!r}, layer={self.layer!r}, channels={self.channels}"
