"""``xcam.explain(model, inputs, methods=[...])``: several explainers, one pass between them.

Every explainer declares what it needs of the model (:attr:`~xcam.methods.Explainer.shares_pass`,
``needs_layer``, ``needs_gradients``, :meth:`~xcam.methods.Explainer.pass_layers`). Those whose
map is a function of one forward pass (and one backward pass to their layer) — CAM, Grad-CAM,
Grad-CAM++, XGrad-CAM, Layer-CAM, HiResCAM, Eigen-CAM, and the controls, which only read the
scores — share that pass: for each model output reader (``output=``) and target, :func:`explain`
runs ONE forward pass that records the union of their layers and, when one of them needs
gradients, ONE backward pass (one :func:`torch.autograd.grad` call) to the layers that need them.
Every other explainer (Score-CAM, occlusion, RISE, ...) runs as it does alone.

Each result equals what the explainer returns when called alone, bit for bit: the pass computes the
same features, gradients and scores, and the map is built by the same code. (The one exception is
a model whose forward pass depends on the grad mode, such as torch's fused ``MultiheadAttention``
fast path, which runs only without gradients: there a no-gradient method such as Eigen-CAM that
shares a pass with Grad-CAM reads features that agree with its own pass to float rounding.)
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import check_inputs, deferred_checks
from ..embeddings import image_model, source_model
from ..errors import GradientModeError, InputError, InputTypeError
from ..explanation import Explanation
from ..layers import LayerSpec, Tap
from ..outputs import OutputFn
from ..registry import EXPLAINERS
from ..targets import Targets, resolve
from .base import Explainer, run_pass

__all__ = ["explain", "build_explainers"]

MethodSpec = str | Explainer


def build_explainers(
    model: nn.Module,
    methods: Sequence[MethodSpec] | Mapping[str, MethodSpec],
    *,
    layer: LayerSpec | None = None,
    output: OutputFn | None = None,
) -> dict[str, Explainer]:
    """The explainers of :func:`explain`, by key, in the order given.

    A name is built with :func:`xcam.create`, passing ``layer`` (when given) to the methods whose
    constructor takes one and ``output`` (when given) to all. An explainer instance is used as it
    is; it must explain ``model``. Keys are the registered names (or the mapping's keys).

    Raises:
        InputError: an unknown name, an instance of another model, two methods with one key.
        InputTypeError: something that is neither a name nor an :class:`Explainer`.
    """
    items: list[tuple[str, MethodSpec]]
    if isinstance(methods, Mapping):
        items = [(str(k), v) for k, v in methods.items()]
    elif isinstance(methods, (str, Explainer)) or not isinstance(methods, Sequence):
        raise InputTypeError(
            f"methods must be a list of names or explainers (or a dict key -> name / explainer), "
            f"got {type(methods).__name__}; e.g. methods=['gradcam', 'gradcampp']"
        )
    else:
        items = [(m.lower() if isinstance(m, str) else getattr(m, "name", ""), m) for m in methods]
    if not items:
        raise InputError("methods is empty; pass at least one name (see xcam.list_explainers())")
    out: dict[str, Explainer] = {}
    for key, spec in items:
        if key in out:
            raise InputError(
                f"methods has two entries called {key!r}; pass a dict with one key per method, "
                f"e.g. methods={{'{key}_a': ..., '{key}_b': ...}}"
            )
        if isinstance(spec, str):
            cls = EXPLAINERS.get(spec)
            kwargs: dict[str, Any] = {}
            params = _parameters(cls)
            if layer is not None and "layer" in params:
                kwargs["layer"] = layer
            if output is not None and "output" in params:
                kwargs["output"] = output
            out[key] = cls(model, **kwargs)
        elif isinstance(spec, Explainer):
            if source_model(spec.model) is not model:  # a two-tower model: its image tower
                raise InputError(
                    f"methods[{key!r}] explains another model; build it on the model passed to "
                    f"xcam.explain, e.g. xcam.create({spec.name!r}, model)"
                )
            out[key] = spec
        else:
            raise InputTypeError(
                f"methods[{key!r}] must be a registered name or an xcam explainer, got "
                f"{type(spec).__name__} (see xcam.list_explainers())"
            )
    return out


def _parameters(cls: type) -> set[str]:
    return set(inspect.signature(cls).parameters)


def explain(
    model: nn.Module,
    inputs: Tensor,
    methods: Sequence[MethodSpec] | Mapping[str, MethodSpec],
    targets: Targets = None,
    *,
    layer: LayerSpec | None = None,
    output: OutputFn | None = None,
) -> dict[str, Explanation]:
    """Explain ``inputs`` with several methods, sharing one forward + backward pass between them.

    Example:
        >>> out = xcam.explain(model, x, ["gradcam", "gradcampp", "layercam"], layer="layer4")
        >>> out["gradcam"].maps.shape  # (B, H, W); equal to GradCAM(model, "layer4")(x).maps

    Args:
        model: the model every method explains.
        inputs: (B, C, H, W) batch.
        methods: registered names and / or explainer instances (built on ``model``), or a dict
            key -> name / instance (two methods of one kind, e.g. at two layers).
        targets: as for any explainer call (:mod:`xcam.targets`); resolved once per ``output``.
        layer: given to every named method whose constructor takes a ``layer`` (CAM only accepts
            its head's pooled features, so mix it in as ``xcam.CAM(model)``); None: each chooses.
        output: given to every named method (:mod:`xcam.outputs`).

    Returns:
        One :class:`~xcam.explanation.Explanation` per method, keyed by its name (or the dict's
        key), in the order given; each equal to calling that explainer alone.

    Passes: for each ``output`` reader among the explainers that declare ``shares_pass``, one
    forward pass at the union of their :meth:`~xcam.methods.Explainer.pass_layers`, and one
    backward pass if any of them ``needs_gradients``; the others run their own passes.
    """
    explainers = build_explainers(model, methods, layer=layer, output=output)
    model = image_model(model)  # a two-tower model (CLIP): its image tower, as each explainer's
    sharing = {k: e for k, e in explainers.items() if e.shares_pass}
    results: dict[str, Explanation] = {}
    if sharing:
        device = inputs.device if isinstance(inputs, Tensor) else None
        with deferred_checks(device) as common:  # the input and score checks of all
            x = check_inputs(inputs, model=model)
            if any(e.needs_gradients for e in sharing.values()) and (
                torch.is_inference_mode_enabled() or x.is_inference()
            ):
                names = [k for k, e in sharing.items() if e.needs_gradients]
                raise GradientModeError(
                    f"{', '.join(names)} need gradients, which torch.inference_mode() forbids; call "
                    "xcam.explain outside inference_mode (and pass a tensor created outside it)"
                )
            first = next(iter(sharing.values()))
            first.check_range_once(x)
            for e in sharing.values():
                e.mark_range_checked()
            groups: dict[int, list[str]] = {}
            for key, e in sharing.items():
                groups.setdefault(id(e.output), []).append(key)
            for keys in groups.values():
                members = [sharing[k] for k in keys]
                target = resolve(targets, int(x.shape[0]), members[0].output, model)
                taps: list[Tap] = []
                grad_taps: list[Tap] = []
                for e in members:
                    for tap in e.pass_layers(x, target):
                        if tap not in taps:
                            taps.append(tap)
                        if e.needs_gradients and tap not in grad_taps:
                            grad_taps.append(tap)
                shared = run_pass(model, x, target, taps, grad_taps)
                for key, e in zip(keys, members):
                    results[key] = e.explain_shared(x, target, shared)
        if common is not None:
            common.launch()
    for key, e in explainers.items():
        if key not in results:
            results[key] = e(inputs, targets)
    return {key: results[key] for key in explainers}
