"""What a comparison runs: methods, metrics, their settings and the frozen :class:`RunConfig`.

Everything here is checked before any image is read, so that a typo fails at once with a
suggestion; :class:`RunConfig` then carries the settings through the engine, the runner and the
records, once.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import InputError, InputTypeError, XcamError, warn
from ..methods.controls import CONTROL_NAMES
from ..metrics.base import Metric
from ..outputs import OutputFn
from ..registry import EXPLAINERS, METRICS

__all__ = ["DEFAULT_METHODS", "DEFAULT_METRICS", "CONTROLS", "TARGET_POLICIES", "CompareError",
           "ResumeError", "RunFolderError", "RunConfig", "sanity_layers", "image_seed"]

DEFAULT_METHODS = ("gradcam", "gradcampp")


CONTROLS = CONTROL_NAMES  # blank, random, center, edges: the floors every method must beat


DEFAULT_METRICS = (
    "pointing_game",
    "energy_pointing_game",
    "max_box_acc",
    "deletion",
    "insertion",
    "average_drop",
    "increase_in_confidence",
)


TARGET_POLICIES = ("auto", "label", "predicted")


class CompareError(XcamError, RuntimeError):
    """A comparison cannot go on (e.g. a method failed on every image it tried)."""


class ResumeError(XcamError, ValueError):
    """``out`` holds results computed with other settings."""


class RunFolderError(XcamError, FileExistsError):
    """``out`` is a file, or holds files that compare did not write and would replace."""


def metric_of(name: str) -> Metric[..., Any]:
    """The registered :class:`xcam.metrics.Metric` and its metadata."""
    metric = METRICS.get(name)
    if not isinstance(metric, Metric):
        raise InputTypeError(f"metric {name!r} is registered as {type(metric).__name__}, not an "
                             "xcam.metrics.Metric; register it with @xcam.metrics.metric(...)")
    return metric


def describe(obj: Any) -> str:
    """A description that is the same from one run to the next (no memory addresses)."""
    from .models import Preprocess

    if isinstance(obj, (str, Preprocess)):
        return repr(obj)
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{getattr(obj, '__module__', '?')}.{name}"


def parse_methods(
    methods: Sequence[str] | Mapping[str, Callable[[nn.Module], Any]] | str | None,
    controls: bool,
) -> dict[str, str | Callable[[nn.Module], Any]]:
    """Label -> registered name or factory; controls appended."""
    if methods is None:
        spec: dict[str, str | Callable[[nn.Module], Any]] = {m: m for m in DEFAULT_METHODS}
    elif isinstance(methods, str):
        spec = {m.strip(): m.strip() for m in methods.split(",") if m.strip()}
    elif isinstance(methods, Mapping):
        spec = dict(methods)
        for label, factory in spec.items():
            if not isinstance(factory, str) and not callable(factory):
                raise InputTypeError(
                    f"methods[{label!r}] must be a registered name or a factory model -> explainer, "
                    f"got {type(factory).__name__}"
                )
    elif isinstance(methods, Sequence):
        spec = {}
        for m in methods:
            if not isinstance(m, str):
                raise InputTypeError(
                    f"methods must hold registered names (see xcam.list_explainers()), got {m!r}; "
                    "pass a dict {label: factory} for explainers built by your own code"
                )
            spec[m] = m
    else:
        raise InputTypeError(f"methods must be a list of names or a dict label -> factory, got "
                             f"{type(methods).__name__}")
    if not spec:
        raise InputError("methods is empty; pass at least one explainer name (xcam.list_explainers())")
    for name in spec.values():
        if isinstance(name, str):
            EXPLAINERS.get(name)  # unknown name: an error with a suggestion, before any work
    if controls:
        for c in CONTROLS:
            if c not in spec and c in EXPLAINERS:
                spec[c] = c
    return spec


def parse_metrics(metrics: Sequence[str] | str | None) -> list[str]:
    if metrics is None:
        names = list(DEFAULT_METRICS)
    elif isinstance(metrics, str):
        names = [m.strip() for m in metrics.split(",") if m.strip()]
    elif isinstance(metrics, Sequence):
        names = list(metrics)
    else:
        raise InputTypeError(f"metrics must be a list of names, got {type(metrics).__name__}")
    for name in names:
        if not isinstance(name, str):
            raise InputTypeError(f"metrics must hold names (see xcam.list_metrics()), got {name!r}")
        METRICS.get(name)
    if len(set(names)) != len(names):
        raise InputError(f"metrics lists a name twice: {names}")
    return names


def build_explainer(label: str, spec: str | Callable[[nn.Module], Any], model: nn.Module,
                     kwargs: dict[str, Any], seed: int,
                     output_fn: OutputFn | None = None) -> tuple[Any, dict[str, Any]]:
    """The explainer and the constructor kwargs actually used (seed and progress filled in)."""
    if not isinstance(spec, str):
        if kwargs:
            raise InputError(f"method_kwargs[{label!r}]: a factory method takes no kwargs; bind them "
                             "in the factory")
        explainer = spec(model)
        if not callable(explainer):
            raise InputTypeError(f"methods[{label!r}]: the factory returned {type(explainer).__name__}, "
                                 "not an explainer")
        return explainer, {}
    cls = EXPLAINERS.get(spec)
    params = inspect.signature(cls).parameters
    used = dict(kwargs)
    unknown = sorted(k for k in used if k not in params)
    if unknown:
        valid = [p for p in params if p not in ("self", "model")]
        raise InputError(f"method_kwargs[{label!r}]: {spec} takes no {unknown}; valid: {valid}")
    if "seed" in params and "seed" not in used:
        used["seed"] = seed
    if "progress" in params and "progress" not in used:
        used["progress"] = False
    extra = {"output": output_fn} if output_fn is not None and "output" in params else {}
    return cls(model, **used, **extra), used


def metric_settings(name: str, user: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The settings metric ``name`` runs with.

    The user's, checked against its ``settings``, plus its defaults (``seed``).
    """
    m = metric_of(name)
    kw = dict(user)
    bad = sorted((set(kw) - set(m.parameters)) | (set(kw) & m.data_parameters))
    if bad:
        raise InputError(f"metric_kwargs[{name!r}]: {sorted(bad)} cannot be set; valid: {list(m.settings)}")
    for key, value in m.default_kwargs(seed).items():
        kw.setdefault(key, value)
    return kw


@dataclass(frozen=True)
class RunConfig:
    """The settings of one run, checked and resolved by :func:`compare`.

    Attributes:
        spec: method label -> registered name or factory ``model -> explainer`` (controls included).
        metrics: metric names, in order.
        metric_kwargs: the settings each metric runs with (defaults filled in).
        method_kwargs: the user's constructor arguments per method label.
        preprocess: pixels in [0, 255] (B, 3, H, W) -> model input.
        size: the model input's (height, width).
        targets: the target policy (``"auto"``, ``"label"``, ``"predicted"``) or a class index.
        seed: seeds explainers, metrics and the bootstrap.
        device: where the model runs.
        out: the run folder, or None.
        grid_images: the first images get thumbnails.
        thumbnail: the thumbnails' side in pixels.
        sanity_images: images of the ``sample_only`` metrics.
        sanity_layer_names: blocks they re-initialize, or None for :func:`sanity_layers`.
        max_failures: failures in a row, without a success, that stop the run.
        progress: show a progress bar (None: when stderr is a terminal).
        overwrite: start the folder again.
        report: write ``report.html``.
        model_name: recorded in the provenance.
        output_fn: picks (B, classes) scores from the model's output, or None.
        batch_size: images per batch through every method and metric.
        num_workers: DataLoader processes that decode images (0: in this process).
        classes: class names, index -> name, or None.
    """

    spec: dict[str, str | Callable[[nn.Module], Any]]
    metrics: list[str]
    metric_kwargs: dict[str, dict[str, Any]]
    method_kwargs: dict[str, dict[str, Any]]
    preprocess: Callable[[Tensor], Tensor]
    size: tuple[int, int]
    targets: str | int
    seed: int
    device: torch.device
    out: Path | None = None
    grid_images: int = 8
    thumbnail: int = 112
    sanity_images: int = 4
    sanity_layer_names: Sequence[str] | None = None
    max_failures: int = 10
    progress: bool | None = None
    overwrite: bool = False
    report: bool = True
    model_name: str | None = None
    output_fn: OutputFn | None = None
    batch_size: int = 32
    num_workers: int = 0
    classes: list[str] | None = None

    @property
    def labels(self) -> list[str]:
        """The method labels, in order."""
        return list(self.spec)

    @property
    def per_image_metrics(self) -> list[str]:
        """The metrics scored on every (image, method) pair."""
        return [n for n in self.metrics if not metric_of(n).sample_only]

    @property
    def sample_metrics(self) -> list[str]:
        """The metrics run once per method on the first ``sanity_images`` images."""
        return [n for n in self.metrics if metric_of(n).sample_only]


def resolve_preprocess(preprocess: Any, image_size: int | None) -> tuple[Callable[[Tensor], Tensor],
                                                                        tuple[int, int]]:
    """The preprocessing compare uses, and the model input's (height, width)."""
    from .models import Preprocess

    if preprocess is None:
        default = Preprocess.named("imagenet", image_size or 224)
        warn(f"xcam.compare: no preprocess given; using ImageNet mean / std with images squashed to "
             f"{default.hw[0]} x {default.hw[1]} (Preprocess.named('imagenet')); pass the model's own, "
             "e.g. preprocess=weights.transforms() (torchvision), a timm transform or a Hugging Face "
             "image processor")
        return default, default.hw
    prep: Preprocess | None
    try:
        prep = Preprocess.from_transform(preprocess)
    except InputTypeError:
        if not callable(preprocess):
            raise InputTypeError(
                f"preprocess must be an xcam.models.Preprocess, torchvision weights.transforms(), a "
                f"torchvision / timm Compose, a Hugging Face image processor or a callable, got "
                f"{type(preprocess).__name__}") from None
        prep = None
    if prep is not None:
        if image_size is not None:
            prep = prep.with_size(image_size)
        return prep, prep.hw
    # a plain callable: pixels in [0, 255] (B, 3, H, W) -> model input, H and W kept
    side = int(image_size or getattr(preprocess, "size", 224) or 224)
    probe = torch.full((1, 3, side, side), 127.0)
    try:
        shape = tuple(preprocess(probe).shape)
    except Exception as err:  # noqa: BLE001 - re-raised with the contract it broke
        raise InputError(
            f"preprocess {describe(preprocess)} failed on a (1, 3, {side}, {side}) tensor of pixels "
            f"in [0, 255] ({type(err).__name__}: {err}); a plain callable takes such tensors, or pass "
            "torchvision weights.transforms() / an xcam.models.Preprocess") from err
    if len(shape) != 4 or shape[-2:] != (side, side):
        raise InputError(
            f"preprocess {describe(preprocess)} turned (1, 3, {side}, {side}) pixels into {shape}: "
            "it resizes or crops, and boxes cannot follow a plain callable; pass torchvision "
            "weights.transforms(), a timm / Hugging Face preprocessing or an xcam.models.Preprocess("
            "size=..., resize=...), which compare applies to images and boxes together")
    return preprocess, (side, side)


def explainer_settings(spec: str, used_kwargs: dict[str, Any], explainer: Any) -> dict[str, Any]:
    """The constructor arguments that re-create ``explainer`` (its resolved layer included)."""
    ekw = dict(used_kwargs)
    layer = explainer.params().get("layer") if hasattr(explainer, "params") else None
    takes_layer = "layer" in inspect.signature(EXPLAINERS.get(spec)).parameters
    if takes_layer and ekw.get("layer") is None and layer is not None:
        ekw["layer"] = layer
    return ekw


def sanity_layers(model: nn.Module) -> list[str]:
    """Blocks to re-initialize for the sanity check, output side first.

    The model's direct children that own parameters; a ``Sequential`` or ``ModuleList`` child is
    split into its own children (ResNet-18: ``fc, layer4, ..., layer1, bn1, conv1``). Coarser
    than :func:`xcam.metrics.cascade_layers` (every parametrised module), which can mean hundreds
    of explanations per image.
    """
    names: list[str] = []

    def owns(module: nn.Module) -> bool:
        return any(True for _ in module.parameters())

    for name, child in model.named_children():
        if isinstance(child, (nn.Sequential, nn.ModuleList)):
            names += [f"{name}.{n}" for n, c in child.named_children() if owns(c)]
        elif owns(child):
            names.append(name)
    return names[::-1]



def image_seed(seed: int, key: str) -> int:
    """The seed of image ``key`` in a run seeded with ``seed``: 62 bits of SHA-256 of both.

    Every stochastic method and metric draws from a generator seeded with it, so that an image's
    scores depend neither on the batch it lands in nor on the process that runs it.
    """
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 2
