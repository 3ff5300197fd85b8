"""The :class:`Metric` wrapper, its metadata, and the :func:`metric` decorator that registers it.

Every registered metric carries what a caller needs to run it and to show its scores without
naming it in code (as Quantus's metric classes do): a label and unit for tables, its direction,
the data it needs, its scope (one score per image, or a data-set score built from per-image
parts), whether it returns curves, and hooks that read its result
(:meth:`Metric.per_image`), build its data-set score (:meth:`Metric.aggregate`) and give a
reference score (:meth:`Metric.baseline_scores`). :meth:`Metric.run` calls it from a
:class:`MetricInputs` bundle, so that one loop drives every metric.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, ParamSpec, TypeVar

from torch import Tensor, nn

from .._checks import eval_mode
from ..errors import InputError, InputTypeError
from ..explanation import Explanation
from ..outputs import OutputFn
from ..registry import register_metric

__all__ = [
    "Metric",
    "MetricInputs",
    "PerImage",
    "metric",
    "NEEDS",
    "SCOPES",
    "UNITS",
    "DATA_PARAMETERS",
    "CostFn",
    "PerImageFn",
    "AggregateFn",
    "BaselineFn",
    "PerturbedFn",
]

P = ParamSpec("P")
R = TypeVar("R")

CostFn = Callable[[int, dict[str, Any]], int]
"""``cost(n_images, params) -> images run through the model`` (params: defaults filled in)."""

Scope = Literal["image", "dataset"]

NEEDS = frozenset({"maps", "ground_truth", "model", "inputs", "targets", "explainer"})
"""What a metric may need: the values of :class:`MetricInputs` it cannot run without."""

SCOPES = ("image", "dataset")
UNITS = ("", "%")

#: the parameter that receives each need (ground truth is ``gt`` or ``boxes``)
_NEED_PARAMETERS: dict[str, tuple[str, ...]] = {
    "maps": ("maps",),
    "ground_truth": ("gt", "boxes"),
    "model": ("model",),
    "inputs": ("inputs",),
    "targets": ("targets",),
    "explainer": ("explainer",),
}
#: optional data a caller may share: filled from :class:`MetricInputs` when the metric takes it
_OPTIONAL_PARAMETERS = ("clean_output", "output", "n_classes")

DATA_PARAMETERS = frozenset(
    [p for names in _NEED_PARAMETERS.values() for p in names] + list(_OPTIONAL_PARAMETERS))
"""Parameter names that carry data (filled by :meth:`Metric.run`), never settings."""


@dataclass(frozen=True)
class MetricInputs:
    """Everything a metric may be run on; :meth:`Metric.run` passes what the metric takes.

    Attributes:
        maps: (B, H, W) maps at input resolution.
        ground_truth: bool masks (B, H, W) or boxes per sample (``gt`` / ``boxes``).
        model: the model (a callable returning (B, classes) scores).
        inputs: (B, C, H, W) inputs in the model's input space.
        targets: target classes (None, an int, a sequence or a (B,) LongTensor).
        explainer: an explainer (``explainer(inputs, targets) -> Explanation``); metrics that
            re-create it per randomized model take a registered name or ``factory(model)``.
        clean_output: the model's output on ``inputs``, shared to save a forward pass.
        output: ``f(model_output) -> (B, classes)`` for models :mod:`xcam.outputs` cannot read.
        n_classes: the number of classes (read from ``clean_output`` when left out).
        image_size: ``(H, W)`` of the inputs (for baselines from boxes).
    """

    maps: Tensor | None = None
    ground_truth: object = None
    model: Callable[..., Any] | None = None
    inputs: Tensor | None = None
    targets: object = None
    explainer: object = None
    clean_output: object = None
    output: OutputFn | None = None
    n_classes: int | None = None
    image_size: tuple[int, int] | None = None

    def get(self, need: str) -> object:
        """The value that fills ``need`` (one of :data:`NEEDS`), or None."""
        return getattr(self, need)

    def classes(self) -> int | None:
        """``n_classes``, or the width of ``clean_output`` when it is a (B, K) tensor."""
        if self.n_classes is not None:
            return self.n_classes
        if isinstance(self.clean_output, Tensor) and self.clean_output.dim() == 2:
            return int(self.clean_output.shape[1])
        return None


@dataclass(frozen=True)
class PerImage:
    """What a metric's result holds per image, in the form a results table stores.

    Attributes:
        scores: (B,) per-image scores (NaN where undefined). For a data-set scope metric these
            are NaN: its score comes from :meth:`Metric.aggregate` over ``parts``.
        curves: (B, S) per-image curves (deletion / insertion style), or None.
        parts: (B, T) per-image parts of a data-set score (MaxBoxAcc: IoU at each map
            threshold), or None.
        details: JSON-able data of the whole run (the sanity check's mean curves per layer), or
            an empty dict.
    """

    scores: Tensor
    curves: Tensor | None = None
    parts: Tensor | None = None
    details: Mapping[str, Any] | None = None


PerImageFn = Callable[[Any], PerImage]
AggregateFn = Callable[[Tensor, Mapping[str, Any]], Tensor]
BaselineFn = Callable[..., Tensor]
PerturbedFn = Callable[..., Any]
"""``perturbed(*metric_args, **metric_kwargs) -> xcam.metrics._forward.Perturbed`` (see Metric)."""


def _tensor_scores(result: Any) -> PerImage:
    if not isinstance(result, Tensor):
        raise InputTypeError(
            f"this metric returned {type(result).__name__}, not a (B,) tensor; register it with "
            "per_image= to read its result"
        )
    return PerImage(scores=result)


class Metric(Generic[P, R]):
    """A metric function together with what a caller needs to know before running it.

    Calling the object calls the function (an ``nn.Module`` ``model`` runs in eval mode, its
    flags restored afterwards).

    Attributes:
        name: the registered name (``xcam.list_metrics()``).
        label: the human name for tables, e.g. ``"Deletion AUC"``.
        unit: ``""`` or ``"%"``: values are stored as fractions and shown x100 when ``"%"``.
        higher_is_better: the direction of the per-sample score.
        needs: what it cannot run without, drawn from :data:`NEEDS`.
        scope: ``"image"`` (one score per image, averaged) or ``"dataset"`` (a data-set score:
            from per-image parts through :meth:`aggregate`, or, with ``sample_only``, a check run
            once on a few images).
        sample_only: run once on a small sample of images (the randomization sanity check),
            not on every image.
        multi_model: its ``maps`` are the maps of several models of the same images (one (B, H, W)
            tensor per model: stability), so a per-model loop cannot run it.
        family: ``"localization"``, ``"faithfulness"``, ``"robustness"``, ``"sanity"`` or
            ``"stability"``: a grouping for documentation; callers use ``needs`` and ``scope``.
        curves: :meth:`per_image` returns per-image curves (deletion / insertion style).
        curve_xlabel, curve_ylabel: axis labels for those curves.
        baseline_label: the name of the reference row :meth:`baseline_scores` gives, or None.
        perturbed: for metrics whose model calls are forward passes of perturbed copies of the
            inputs (deletion, insertion, average drop, increase in confidence): a function with
            the metric's own parameters that returns those copies and how the result is read
            from their scores, without running them, so that :func:`xcam.metrics.evaluate_maps`
            runs the copies of several maps in shared passes; None otherwise.
        stochastic: the metric draws random numbers (it then takes ``seed=``).
        version: the definition's version, raised whenever a definition change alters scores
            (pointing game, relevance rank and MaxBoxAcc are version 2 since issue 12: fractional
            ties, MaxBoxAcc strictly above the threshold), so stored results can be told apart.
        fn: the wrapped function.
    """

    def __init__(
        self,
        fn: Callable[P, R],
        name: str,
        higher_is_better: bool,
        family: str,
        cost: CostFn | None = None,
        stochastic: bool = False,
        version: int = 1,
        *,
        label: str | None = None,
        unit: str = "",
        needs: frozenset[str] | None = None,
        scope: Scope = "image",
        sample_only: bool = False,
        multi_model: bool = False,
        curves: bool = False,
        curve_xlabel: str = "",
        curve_ylabel: str = "",
        per_image: PerImageFn | None = None,
        aggregate: AggregateFn | None = None,
        baseline: BaselineFn | None = None,
        baseline_label: str | None = None,
        perturbed: PerturbedFn | None = None,
    ) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.name = name
        self.higher_is_better = higher_is_better
        self.family = family
        self.stochastic = stochastic
        self.version = version
        self._cost = cost
        self._signature = inspect.signature(fn)
        params = list(self._signature.parameters)
        self._model_at = params.index("model") if "model" in params else None
        self.label = label if label is not None else name.replace("_", " ").capitalize()
        if unit not in UNITS:
            raise ValueError(f"metric {name!r}: unit must be one of {UNITS}, got {unit!r}")
        self.unit = unit
        self.needs = frozenset(needs) if needs is not None else self._needs_from(params)
        if not self.needs <= NEEDS:
            raise ValueError(f"metric {name!r}: needs {sorted(self.needs - NEEDS)} unknown; "
                             f"valid: {sorted(NEEDS)}")
        if scope not in SCOPES:
            raise ValueError(f"metric {name!r}: scope must be one of {SCOPES}, got {scope!r}")
        if scope == "dataset" and aggregate is None and not sample_only:
            raise ValueError(f"metric {name!r}: a data-set scope metric needs aggregate= or "
                             "sample_only=True")
        self.scope: Scope = scope
        self.sample_only = sample_only
        self.multi_model = multi_model
        self.curves = curves
        self.curve_xlabel = curve_xlabel
        self.curve_ylabel = curve_ylabel
        self._per_image = per_image or _tensor_scores
        self._aggregate = aggregate
        self._baseline = baseline
        self.baseline_label = baseline_label if baseline is not None else None
        self.perturbed = perturbed

    @staticmethod
    def _needs_from(params: list[str]) -> frozenset[str]:
        return frozenset(need for need, names in _NEED_PARAMETERS.items()
                         if any(n in params for n in names))

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the metric function (a ``model`` that is an ``nn.Module`` runs in eval mode)."""
        return self._invoke(args, kwargs)

    def _invoke(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        args, kwargs = self._from_explanation(args, kwargs)
        model: object = None
        if self._model_at is not None:
            model = args[self._model_at] if len(args) > self._model_at else kwargs.get("model")
        guard = eval_mode(model) if isinstance(model, nn.Module) else contextlib.nullcontext()
        with guard:
            return self.fn(*args, **kwargs)

    def _from_explanation(self, args: tuple[Any, ...],
                          kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Read an :class:`~xcam.explanation.Explanation` given as ``maps``.

        Its maps fill ``maps``, and its targets fill ``targets`` when that is left None.
        """
        params = self.parameters
        if "maps" not in params:
            return args, kwargs
        values = dict(zip(params, args))
        explanation = values.get("maps", kwargs.get("maps"))
        if not isinstance(explanation, Explanation):
            return args, kwargs
        fill = {"maps": explanation.maps}
        if ("targets" in params and explanation.targets is not None
                and values.get("targets", kwargs.get("targets")) is None):
            fill["targets"] = explanation.targets
        positional = [fill.get(name, value) for name, value in zip(params, args)]
        named = {**kwargs, **{k: v for k, v in fill.items() if k not in values}}
        return tuple(positional), named

    # ---- parameters -------------------------------------------------------------------------

    @property
    def parameters(self) -> tuple[str, ...]:
        """The names of the function's parameters, in order."""
        return tuple(self._signature.parameters)

    @property
    def data_parameters(self) -> frozenset[str]:
        """Parameters that carry data, filled by :meth:`run` (never settings)."""
        return DATA_PARAMETERS & set(self._signature.parameters)

    @property
    def settings(self) -> tuple[str, ...]:
        """Parameters a caller may set (``metric_kwargs``): all but the data parameters."""
        return tuple(p for p in self._signature.parameters if p not in DATA_PARAMETERS)

    def default_kwargs(self, seed: int) -> dict[str, Any]:
        """Keyword arguments a caller adds unless the user gives them: ``seed`` when stochastic."""
        return {"seed": seed} if "seed" in self._signature.parameters else {}

    def forward_passes(self, n_images: int, **kwargs: Any) -> int:
        """Images this metric runs through the model for ``n_images`` inputs.

        Args:
            n_images: batch size B of the inputs you will pass.
            **kwargs: the keyword arguments you will call the metric with; parameters you leave out
                take their default values.

        Returns:
            The number of images run through the model (0 for metrics that need no model).

        Raises:
            InputError: ``n_images`` is negative or a keyword is not a parameter.
            InputTypeError: ``n_images`` is not an int.

        Example:
            >>> deletion.forward_passes(8, steps=50)   # 8 clean + 8 * 50 perturbed
            408
        """
        if not isinstance(n_images, int) or isinstance(n_images, bool):
            raise InputTypeError(
                f"n_images must be an int, got {type(n_images).__name__} ({n_images!r})")
        if n_images < 0:
            raise InputError(f"n_images must be >= 0, got {n_images}")
        unknown = sorted(set(kwargs) - set(self._signature.parameters))
        if unknown:
            raise InputError(
                f"{self.name}.forward_passes: unknown argument(s) {unknown}; valid: "
                f"{list(self._signature.parameters)}"
            )
        params = {
            k: p.default for k, p in self._signature.parameters.items()
            if p.default is not inspect.Parameter.empty
        }
        params.update(kwargs)
        return 0 if self._cost is None else int(self._cost(n_images, params))

    # ---- generic driving ----------------------------------------------------------------------

    def run(self, data: MetricInputs, **kwargs: Any) -> R:
        """Call the metric with the values of ``data`` it takes, plus ``kwargs`` (settings).

        Each need goes to its parameter (ground truth to ``gt`` or ``boxes``); ``clean_output``,
        ``output`` and ``n_classes`` go where the metric takes them and ``data`` has them;
        ``maps`` also go to a metric that takes them optionally.

        Raises:
            InputError: ``data`` lacks something the metric needs, or ``kwargs`` sets a data
                parameter.
        """
        clash = sorted(set(kwargs) & DATA_PARAMETERS)
        if clash:
            raise InputError(f"{self.name}: {clash} are data, passed through MetricInputs, not "
                             f"settings; valid settings: {list(self.settings)}")
        missing = sorted(n for n in self.needs if data.get(n) is None)
        if missing:
            raise InputError(f"{self.name} needs {missing}; pass them in MetricInputs")
        params = self._signature.parameters
        call: dict[str, Any] = {}
        for need, names in _NEED_PARAMETERS.items():
            value = data.get(need)
            for n in names:
                if n in params and value is not None:
                    call[n] = value
        optional = {"clean_output": data.clean_output, "output": data.output,
                    "n_classes": data.classes()}
        for n, value in optional.items():
            if n in params and value is not None:
                call[n] = value
        call.update(kwargs)
        return self._invoke((), call)

    def per_image(self, result: Any) -> PerImage:
        """The per-image scores (and curves, parts, details) of a result of this metric."""
        return self._per_image(result)

    def aggregate(self, parts: Tensor, **kwargs: Any) -> Tensor:
        """Per-image contributions to the data-set score from the stored parts of N images.

        For ``scope == "image"`` metrics there is nothing to aggregate (raises). For data-set
        metrics, the mean of the returned (N,) values over the images is the data-set score on
        them (NaN rows: images without a score).

        Args:
            parts: (N, T) per-image parts (:attr:`PerImage.parts`) of the images in the set.
            **kwargs: the settings the metric was run with.
        """
        if self._aggregate is None:
            raise InputError(f"{self.name} has per-image scores; nothing to aggregate")
        return self._aggregate(parts, kwargs)

    @property
    def has_baseline(self) -> bool:
        """The metric has a reference score per image (see :meth:`baseline_scores`)."""
        return self._baseline is not None

    def baseline_scores(self, data: MetricInputs, **kwargs: Any) -> Tensor:
        """(B,) reference scores of the trivial map (the pointing game's center point).

        Args:
            data: the ground truth (and ``image_size`` when it holds boxes).
            **kwargs: the metric's settings; the baseline takes those it shares with it.
        """
        if self._baseline is None:
            raise InputError(f"{self.name} has no baseline")
        accepted = inspect.signature(self._baseline).parameters
        kw = {k: v for k, v in kwargs.items() if k in accepted}
        return self._baseline(data.ground_truth, size=data.image_size, **kw)

    # ---- identity -----------------------------------------------------------------------------

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        """Pickle by name (e.g. for worker processes): the registry gives the same object back."""
        return (registered_metric, (self.name,))

    def __repr__(self) -> str:
        """``<metric 'name' (family, higher is better)>``."""
        direction = "higher" if self.higher_is_better else "lower"
        return f"<metric {self.name!r} ({self.family}, {direction} is better)>"


def registered_metric(name: str) -> Any:
    """The metric registered under ``name`` (used to unpickle a :class:`Metric`)."""
    from ..registry import METRICS

    return METRICS.get(name)


def metric(
    name: str,
    *,
    higher_is_better: bool,
    family: str,
    cost: CostFn | None = None,
    stochastic: bool = False,
    version: int = 1,
    label: str | None = None,
    unit: str = "",
    needs: frozenset[str] | None = None,
    scope: Scope = "image",
    sample_only: bool = False,
    multi_model: bool = False,
    curves: bool = False,
    curve_xlabel: str = "",
    curve_ylabel: str = "",
    per_image: PerImageFn | None = None,
    aggregate: AggregateFn | None = None,
    baseline: BaselineFn | None = None,
    baseline_label: str | None = None,
    perturbed: PerturbedFn | None = None,
) -> Callable[[Callable[P, R]], Metric[P, R]]:
    """Wrap a function into a :class:`Metric` and register it under ``name``.

    The keyword arguments are the metric's metadata (see :class:`Metric`); ``needs`` defaults
    to what the function's parameters name.
    """

    def decorator(fn: Callable[P, R]) -> Metric[P, R]:
        wrapped = Metric(
            fn, name, higher_is_better, family, cost, stochastic, version,
            label=label, unit=unit, needs=needs, scope=scope, sample_only=sample_only,
            multi_model=multi_model,
            curves=curves, curve_xlabel=curve_xlabel, curve_ylabel=curve_ylabel,
            per_image=per_image, aggregate=aggregate, baseline=baseline,
            baseline_label=baseline_label, perturbed=perturbed,
        )
        register_metric(name)(wrapped)
        return wrapped

    return decorator
