"""``compare``: every image x every method x every metric, batched, resumable, sharded.

::

    result = xcam.compare(model, "images.csv", methods=["gradcam", "gradcampp"],
                          metrics=["pointing_game", "deletion"], out="runs/cmp")
    result.table()      # tidy rows: {"index", "image", "method", "metric", "value"}
    result.summary()    # per method x metric: mean, 95 % bootstrap CI, rank, paired test vs best
    result.timing()     # per method: seconds and forward passes per image

How a run proceeds, ``batch_size`` images at a time:

1. a :class:`torch.utils.data.DataLoader` (``num_workers``) reads the images (upright, RGB; see
   :func:`xcam.evaluation.data.load_images`) and brings them to the model input's geometry with
   their boxes; the batch runs once through the model in eval mode and each image's target class
   is chosen (``targets=``);
2. every method explains the batch (a stochastic one image by image, with a generator seeded by
   (``seed``, image key)), and every metric scores the maps (faithfulness metrics reuse the clean
   forward pass), so that no score depends on the batch size or on the number of processes;
3. one JSON line per image and per (image, method) is appended to ``out/records.jsonl``
   (``records.rank{r}.jsonl`` per process under torchrun; no other file counts) and flushed;
   thumbnails and overlays are PNG files beside it (``thumbnails/``, ``overlays/``). A re-run with
   the same ``out`` skips every pair already written, so an interrupted run resumes where it
   stopped; a half-written or unreadable record is reported with a warning and redone. An image
   that cannot be read (missing, empty, truncated, not an image, a decompression bomb), or a method
   that fails on one image, is recorded with its error and skipped; the run goes on, and a resume
   does not retry it.

The run folder is compare's alone: it never deletes or replaces a file it did not write (a
``table.csv`` of your own, say) unless ``overwrite=True``.

Controls (``blank``, ``random``, ``center``, ``edges``) are added to the methods unless
``controls=False``. Every metric is driven by its metadata (:class:`xcam.metrics.Metric`:
``needs``, ``scope``, ``curves``, ``baseline_label``, ...), so that compare names none of them.

Scale-out: under ``torchrun --nproc_per_node N`` (``WORLD_SIZE`` > 1), :func:`compare` joins the
process group (gloo on CPU, nccl on GPU), takes every ``N``-th batch of ``batch_size`` consecutive
images (each image exactly once), writes ``records.rank{r}.jsonl``, and gathers every record on
every rank; rank 0 writes the table, the summary and the report, which equal a single-process run's.

:func:`plan` is the dry run: forward passes per method and metric, and the time a run would take,
estimated from one timed batch (or, for a long run, from the forward passes and one timed pass).
"""

from __future__ import annotations

import inspect
import os
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import eval_mode
from ..errors import InputError, InputTypeError
from ..outputs import OutputFn
from .data import ImageData, load_data
from .distributed import Dist, join_process_group
from .engine import Plan, estimate, run_comparison
from .records import RECORD_FILE
from .results import Comparison
from .spec import (
    CONTROLS,
    DEFAULT_METHODS,
    DEFAULT_METRICS,
    TARGET_POLICIES,
    CompareError,
    ResumeError,
    RunConfig,
    RunFolderError,
    metric_settings,
    parse_methods,
    parse_metrics,
    resolve_preprocess,
    sanity_layers,
)

__all__ = [
    "compare",
    "plan",
    "Plan",
    "Comparison",
    "CompareError",
    "ResumeError",
    "RunFolderError",
    "RECORD_FILE",
    "DEFAULT_METHODS",
    "DEFAULT_METRICS",
    "CONTROLS",
    "sanity_layers",
    "RunConfig",
]


def compare(
    model: nn.Module,
    data: Any,
    methods: Sequence[str] | Mapping[str, Callable[[nn.Module], Any]] | str | None = None,
    metrics: Sequence[str] | str | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    preprocess: Callable[[Tensor], Tensor] | None = None,
    image_size: int | None = None,
    targets: str | int = "auto",
    method_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    metric_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    controls: bool = True,
    seed: int = 0,
    device: str | torch.device | None = None,
    columns: str | Mapping[str, str] | None = None,
    limit: int | None = None,
    grid_images: int = 8,
    thumbnail: int = 112,
    sanity_images: int = 4,
    sanity_layer_names: Sequence[str] | None = None,
    max_failures: int = 10,
    progress: bool | None = None,
    overwrite: bool = False,
    report: bool = True,
    distributed: bool | None = None,
    model_name: str | None = None,
    output: OutputFn | None = None,
    classes: Any = None,
    batch_size: int = 32,
    num_workers: int = 0,
) -> Comparison:
    """Explain every image with every method, score every map with every metric.

    Args:
        model: a classifier returning (B, classes) scores; put it in eval mode. It is moved to
            ``device``.
        data: a folder, a ``.csv`` manifest with boxes, a ``torchvision`` ``ImageFolder``, a list
            of paths, or an :class:`xcam.data.ImageData` (see :func:`xcam.data.load_data`).
        methods: registered explainer names (default ``("gradcam", "gradcampp")``), a
            comma-separated string, or a dict ``{label: factory}`` with ``factory(model) ->
            explainer``. Controls are appended unless ``controls=False``.
        metrics: registered metric names (default: pointing game, energy pointing game,
            MaxBoxAcc, deletion, insertion, average drop, increase in confidence). Localization
            metrics are NaN for images without boxes. ``"model_parameter_randomization"`` runs on
            the first ``sanity_images`` images; ``"random_logit"`` and ``"max_sensitivity"`` per
            image.
        out: folder for the records (resumable), the table, summary and report; ``None`` keeps
            everything in memory. The folder is compare's alone: it reads only its own record
            files (``records.jsonl``, ``records.rank{r}.jsonl``) and never deletes or replaces a
            file it did not write (unless ``overwrite=True``).
        preprocess: how an image becomes the model's input, geometry included: an
            :class:`xcam.models.Preprocess`, torchvision ``weights.transforms()``, a torchvision /
            timm ``Compose``, a Hugging Face image processor (see
            :meth:`xcam.models.Preprocess.from_transform`); ground-truth boxes follow its resize
            and center crop. A plain callable maps pixels in [0, 255] (B, 3, H, W) to the model
            input and must keep H and W (images are squashed to ``image_size``). Default: ImageNet
            mean / std, squashed to 224, with a warning.
        image_size: the model input's side (default: the preprocessing's, or 224); a resize before
            a center crop scales with it.
        targets: ``"auto"`` (the label when the data has one, else the top class),
            ``"label"``, ``"predicted"``, or one class index for every image.
        method_kwargs: constructor arguments per method label, e.g. ``{"scorecam": {"batch_size":
            32}}``. Stochastic explainers get ``seed=seed`` unless given.
        metric_kwargs: arguments per metric, e.g. ``{"deletion": {"steps": 50}}``. Stochastic
            metrics get ``seed=seed`` unless given.
        controls: add the ``blank``, ``random``, ``center`` and ``edges`` controls.
        seed: seeds explainers, metrics and the bootstrap.
        device: where to run (default: where the model's parameters are).
        columns: the column mapping of a manifest (see :func:`xcam.data.load_data`).
        limit: only the first ``limit`` images (see :func:`xcam.data.load_data`).
        grid_images: the first images get thumbnails for the report's grid.
        thumbnail: side of those thumbnails in pixels.
        sanity_images: images used by ``model_parameter_randomization``.
        sanity_layer_names: blocks it re-initializes, output side first (default
            :func:`sanity_layers`).
        max_failures: a method that fails on this many images in a row without one success stops
            the run (a systematic error rather than a bad image).
        progress: ``True``: a tqdm progress bar; ``None`` (default): tqdm when stderr is a
            terminal, else a log line with the ETA every few seconds; ``False``: nothing.
        overwrite: delete the records already in ``out`` instead of resuming.
        report: write ``report.html`` as well as the CSV / JSON files (rank 0 only).
        distributed: ``None`` joins a process group when ``WORLD_SIZE`` > 1; ``False`` never.
        model_name: recorded in the provenance (and checked when resuming).
        output: a callable ``f(model_output) -> (B, classes) Tensor`` for models whose output
            :func:`xcam.outputs.logits` cannot read; passed on to every explainer and metric that
            takes ``output=``.
        classes: the class names the report and tables show for the targets: a list, a names
            file (one per line, or JSON), ``"imagenet"``, or a torchvision weights enum (its
            ``meta["categories"]``); see :func:`xcam.models.class_names`. Not part of the run's
            settings: a resume may add or change them.
        batch_size: images per batch through the model, every method and every metric. Scores do
            not depend on it (stochastic methods and metrics draw from a generator seeded by
            (``seed``, image key)).
        num_workers: DataLoader worker processes that decode images (0: in this process).

    The model runs in eval mode inside (:func:`xcam._checks.eval_mode`): its training flags are
    restored on return, and its batch-norm buffers are never updated.

    Returns:
        :class:`Comparison` (on every rank).

    Raises:
        ResumeError: ``out`` holds results computed with other settings (pass ``overwrite=True``
            or another ``out``).
        RunFolderError: ``out`` is a file, or holds a file compare did not write that it would
            replace (pass ``overwrite=True`` or another ``out``).
        CompareError: a method failed on its first ``max_failures`` images.
    """
    options = {k: v for k, v in locals().items() if k not in ("model", "data", "methods", "metrics")}
    cfg, dataset, ctx = configure(model, data, methods, metrics, options)
    try:
        with eval_mode(model):  # flags restored on return; batch-norm buffers never updated
            return run_comparison(model, dataset, cfg, ctx)
    finally:
        ctx.close()


def plan(model: nn.Module, data: Any, methods: Any = None, metrics: Any = None, **options: Any) -> Plan:
    """The dry run of :func:`compare` with the same arguments: costs and an estimated time.

    Nothing is written. Lists the forward passes (images through the model) per image of every
    method and every metric, and times one batch of every method and metric on the first images
    to estimate the run's duration; where that batch would take over a minute, it times the clean
    pass only and multiplies by the forward passes (a lower bound; ``Plan.timed`` is False).

    Returns:
        :class:`~xcam.evaluation.engine.Plan`; ``print(plan)`` shows the table.
    """
    bound = inspect.signature(compare).bind(model, data, methods, metrics, **options)
    bound.apply_defaults()
    given = {k: v for k, v in bound.arguments.items() if k not in ("model", "data", "methods", "metrics")}
    given.update(distributed=False, out=None)
    cfg, dataset, ctx = configure(model, data, methods, metrics, given)
    with eval_mode(model):
        return estimate(model, dataset, cfg)


def check_options(o: types.SimpleNamespace) -> None:
    """Check the plain arguments of :func:`compare` (raises InputError, InputTypeError, RunFolderError)."""
    is_index = isinstance(o.targets, int) and not isinstance(o.targets, bool)
    if o.targets not in TARGET_POLICIES and not is_index:
        raise InputError(f"targets must be one of {TARGET_POLICIES} or a class index, got {o.targets!r}")
    for name, value in (("grid_images", o.grid_images), ("sanity_images", o.sanity_images)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InputError(f"{name} must be an int >= 0, got {value!r}")
    if not isinstance(o.seed, int) or isinstance(o.seed, bool):
        raise InputTypeError(f"seed must be an int, got {o.seed!r}")
    if o.image_size is not None and (not isinstance(o.image_size, int) or isinstance(o.image_size, bool)
                                   or o.image_size < 1):
        raise InputError(f"image_size must be an int >= 1 (the model input's side) or None, got "
                         f"{o.image_size!r}")
    if o.output is not None and not callable(o.output):
        raise InputTypeError(f"output must be a callable f(model_output) -> (B, classes) tensor, got "
                             f"{type(o.output).__name__}")
    if o.out is not None and Path(o.out).exists() and not Path(o.out).is_dir():
        raise RunFolderError(f"out {str(o.out)!r} is a file, not a folder; pass a folder (it is created "
                             "when missing)")
    if not isinstance(o.batch_size, int) or isinstance(o.batch_size, bool) or o.batch_size < 1:
        raise InputError(f"batch_size must be an int >= 1 (images per batch), got {o.batch_size!r}")
    if not isinstance(o.num_workers, int) or isinstance(o.num_workers, bool) or o.num_workers < 0:
        raise InputError(f"num_workers must be an int >= 0 (DataLoader processes), got {o.num_workers!r}")


def configure(model: nn.Module, data: Any, methods: Any, metrics: Any,
              options: Mapping[str, Any]) -> tuple[RunConfig, ImageData, Dist]:
    """The checked :class:`RunConfig` of a call to :func:`compare`, its data and its process group."""
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    o = types.SimpleNamespace(**options)
    check_options(o)
    from .models import class_names

    names = class_names(o.classes)
    preprocess, size = resolve_preprocess(o.preprocess, o.image_size)
    spec = parse_methods(methods, o.controls)
    metric_names = parse_metrics(metrics)
    user_method_kwargs = {k: dict(v) for k, v in (o.method_kwargs or {}).items()}
    unknown = sorted(set(user_method_kwargs) - set(spec))
    if unknown:
        raise InputError(f"method_kwargs names {unknown}, which are not among the methods {list(spec)}")
    user_metric_kwargs = {k: dict(v) for k, v in (o.metric_kwargs or {}).items()}
    unknown = sorted(set(user_metric_kwargs) - set(metric_names))
    if unknown:
        raise InputError(f"metric_kwargs names {unknown}, which are not among the metrics {metric_names}")
    mkw = {name: metric_settings(name, user_metric_kwargs.get(name, {}), o.seed) for name in metric_names}
    dataset = load_data(data, columns=o.columns, limit=o.limit)

    first: torch.device = torch.device(o.device) if o.device is not None else next(
        (p.device for p in model.parameters()), torch.device("cpu"))
    ctx, joined = join_process_group(o.distributed, first)
    cfg = RunConfig(
        spec=spec, metrics=metric_names, metric_kwargs=mkw, method_kwargs=user_method_kwargs,
        preprocess=preprocess, size=size, targets=o.targets, seed=o.seed,
        device=joined if joined is not None else first, out=Path(o.out) if o.out is not None else None,
        grid_images=o.grid_images, thumbnail=o.thumbnail, sanity_images=o.sanity_images,
        sanity_layer_names=o.sanity_layer_names, max_failures=o.max_failures, progress=o.progress,
        overwrite=o.overwrite, report=o.report, model_name=o.model_name, output_fn=o.output,
        batch_size=o.batch_size, num_workers=o.num_workers, classes=names)
    return cfg, dataset, ctx


class _CallableModule(types.ModuleType):
    """``xcam.compare`` is this module, and calling it calls :func:`compare`.

    The lazy package attribute and ``import xcam.compare`` then agree on one object.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Comparison:
        return compare(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
