"""Sanity checks: does the map depend on the model and on the class it explains?

Both checks recompute explanations, so they take an explainer rather than precomputed maps. They
compare maps with :func:`xcam.metrics.spearman` (rank correlation) and :func:`xcam.metrics.ssim`
(structural similarity of min-max normalized maps). Definitions: ``specs/metrics.md``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn

from .._checks import check_inputs, check_int, make_generator
from ..errors import InputError, InputTypeError
from ..layers import resolve_layer
from ..outputs import OutputFn
from ..targets import class_indices, parse_indices
from ._explain import explained_targets, explainer_images, explanation_maps
from ._forward import clean_forward
from ._inputs import check_maps, check_model, check_output_fn
from .base import PerImage, metric
from .similarity import spearman as _spearman
from .similarity import ssim as _ssim

__all__ = [
    "RandomizationResult",
    "model_parameter_randomization",
    "random_logit",
    "cascade_layers",
]


@dataclass(frozen=True)
class RandomizationResult:
    """Result of :func:`model_parameter_randomization`.

    Attributes:
        layers: module names in cascade order (output side first); column j of the scores is the
            model with ``layers[: j + 1]`` re-initialized.
        spearman: (B, L) float32 Spearman rank correlation between the original map and the map
            after each step; NaN where either map is constant.
        ssim: (B, L) float32 SSIM between the min-max normalized maps.
    """

    layers: tuple[str, ...]
    spearman: Tensor
    ssim: Tensor

    def __len__(self) -> int:
        return int(self.spearman.shape[0])


def cascade_layers(model: nn.Module) -> list[str]:
    """Names of the modules that own parameters, output side first.

    The reverse of registration order (``named_modules()``), which follows the forward pass in
    ``torchvision`` models; pass ``layers=`` explicitly to
    :func:`model_parameter_randomization` where it does not.
    """
    return [name for name, module in model.named_modules()
            if any(True for _ in module.parameters(recurse=False))][::-1]


def reinitialize(module: nn.Module, seed: int) -> None:
    """Re-initialize every parameter of ``module`` (recursively), seeded.

    Modules with ``reset_parameters`` (Conv, Linear, BatchNorm, LayerNorm, ...) use it, which
    also resets batch-norm running statistics (``nn.MultiheadAttention`` its private
    ``_reset_parameters``); parameters of other modules are shuffled (a seeded random permutation
    of their values, which keeps their distribution). A parameter whose values are all equal, which
    a permutation would leave as it is (an untrained class token of zeros, a ConvNeXt layer scale
    of ``1e-6``), is redrawn from ``N(value, 0.02^2)``, the spread timm and torchvision draw tokens
    and embeddings from.
    """
    # torch.manual_seed reseeds every device: fork them all so the caller's RNGs are untouched
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        for sub in module.modules():
            own = list(sub.parameters(recurse=False))
            if not own:
                continue
            reset = getattr(sub, "reset_parameters", None)
            if not callable(reset) and isinstance(sub, nn.MultiheadAttention):
                reset = sub._reset_parameters
            if callable(reset):
                reset()
                continue
            for p in own:
                flat = p.reshape(-1)
                if p.numel() > 1 and not bool((flat == flat[0]).all()):
                    p.copy_(flat[torch.randperm(p.numel(), device=p.device)].reshape(p.shape))
                else:
                    p.add_(0.02 * torch.randn(p.shape, device=p.device, dtype=p.dtype))


def _is_rebuildable(explainer: object) -> bool:
    """An xcam-style explainer: bound to a model, with its hyper-parameters in ``params()``."""
    return (callable(explainer) and isinstance(getattr(explainer, "model", None), nn.Module)
            and callable(getattr(explainer, "params", None)))


def bind_explainer(explainer: object, model: nn.Module,
                    explainer_kwargs: dict[str, Any] | None) -> Callable[..., Any]:
    """An explainer bound to ``model``.

    From a registered name, a factory, or an xcam explainer
    (rebuilt on ``model`` from its class and ``params()``).
    """
    from ..registry import create

    kwargs = dict(explainer_kwargs or {})
    if isinstance(explainer, str):
        return cast(Callable[..., Any], create(explainer, model, **kwargs))
    if _is_rebuildable(explainer):
        params = {**explainer.params(), **kwargs}  # type: ignore[attr-defined]
        try:
            return cast(Callable[..., Any], type(explainer)(model, **params))  # type: ignore[call-arg]
        except TypeError as err:
            raise InputTypeError(
                f"explainer: could not rebuild {type(explainer).__name__} on the randomized copy "
                f"from its params() {params} ({err}); pass a factory instead, e.g. "
                f"explainer=lambda m: {type(explainer).__name__}(m, layer=...)"
            ) from None
    if callable(explainer):
        built = explainer(model)
        if not callable(built):
            raise InputTypeError(
                "explainer: a factory must return an explainer (a callable taking inputs and "
                f"targets) for the model it is given; it returned {type(built).__name__}"
            )
        return cast(Callable[..., Any], built)
    raise InputTypeError(
        "explainer must be a registered name ('gradcam'), an xcam explainer, or a factory "
        f"model -> explainer; got {type(explainer).__name__}"
    )


def randomized_layers(model: nn.Module, layers: Sequence[str] | None) -> list[str]:
    if layers is None:
        names = cascade_layers(model)
        if not names:
            raise InputError(f"model {type(model).__name__} has no parameters to randomize")
        return names
    if isinstance(layers, str) or not isinstance(layers, Sequence):
        raise InputTypeError(
            f"layers must be a list of module names in cascade order (output side first), got "
            f"{type(layers).__name__}"
        )
    if not layers:
        raise InputError("layers is empty; pass module names or None for every parametrised one")
    names = []
    for name in layers:
        tap = resolve_layer(model, name)
        if not any(True for _ in tap.module.parameters()):
            raise InputError(f"layer {name!r} has no parameters to randomize")
        names.append(tap.name)
    return names


@dataclass(frozen=True)
class Cascade:
    """What the randomization checks start from (:func:`start_cascade`).

    Attributes:
        x: the checked inputs.
        names: the layers to re-initialize, in order.
        indices: (B,) the classes explained (chosen on the trained model when targets is None).
        base_seed: step ``j`` re-initializes with ``base_seed + j``.
        modules: the deep copy's modules by name (the copy is what gets re-initialized).
        explain: the explainer bound to the copy (:func:`bind_explainer`).
    """

    x: Tensor
    names: list[str]
    indices: Tensor
    base_seed: int
    modules: dict[str, nn.Module]
    explain: Callable[..., Any]


def start_cascade(model: object, explainer: object, inputs: Tensor, targets: object,
                  layers: Callable[[nn.Module], list[str]], seed: int | None,
                  explainer_kwargs: dict[str, Any] | None, output: OutputFn | None) -> Cascade:
    """The checks and the set-up shared by the randomization metrics (the caller's model untouched).

    ``layers(model)`` checks and orders the layers to re-initialize.

    Raises:
        InputTypeError: ``model`` is not an ``nn.Module``.
    """
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_model(model)
    x = check_inputs(inputs, model=model)
    names = layers(model)
    base_seed = int(make_generator(seed, torch.device("cpu")).initial_seed())
    indices = class_indices(targets, clean_forward(model, x, None, check_output_fn(output)))
    randomized = copy.deepcopy(model)
    return Cascade(x, names, indices, base_seed, dict(randomized.named_modules()),
                   bind_explainer(explainer, randomized, explainer_kwargs))


def _randomization_cost(n: int, p: dict[str, Any]) -> int:
    model = p.get("model")
    if not isinstance(model, nn.Module):
        raise InputError("model_parameter_randomization.forward_passes needs model= to count layers")
    n_layers = len(randomized_layers(model, p.get("layers")))
    return n + explainer_images(p.get("explainer"), n) * (n_layers + 1)


def _randomization_per_image(result: RandomizationResult) -> PerImage:
    """Per image, the SSIM with every block re-initialized; the mean curves per layer."""
    details = {
        "layers": list(result.layers),
        "spearman": [float(v) for v in torch.nanmean(result.spearman.double(), dim=0).tolist()],
        "ssim": [float(v) for v in result.ssim.double().mean(dim=0).tolist()],
    }
    return PerImage(scores=result.ssim[:, -1], details=details)


@metric("model_parameter_randomization", higher_is_better=False, family="sanity",
        cost=_randomization_cost, stochastic=True, label="Randomization SSIM (all blocks)",
        scope="dataset", sample_only=True, per_image=_randomization_per_image)
def model_parameter_randomization(
    model: nn.Module,
    explainer: str | Callable[..., Any],
    inputs: Tensor,
    targets: object,
    layers: Sequence[str] | None = None,
    seed: int | None = None,
    *,
    explainer_kwargs: dict[str, Any] | None = None,
    output: OutputFn | None = None,
) -> RandomizationResult:
    """Cascading model-parameter randomization (Adebayo et al., NeurIPS 2018).

    "Sanity checks for saliency maps".

    One deep copy of the model is randomized progressively: from the output layer towards the
    input, one more layer's parameters are re-initialized at a time (seeded; see
    :func:`cascade_layers`) and the explanation is recomputed, for the same classes (chosen on
    the original model when ``targets`` is None). After each step, the Spearman rank correlation
    and the SSIM between the original map and the new one are recorded per sample. A method that
    passes shows falling curves; lower similarity is better. The caller's model is untouched
    (the copy is made while it is in eval mode, so the copy runs in eval mode too).

    Args:
        model: the trained model (put it in eval mode).
        explainer: a registered name (``"gradcam"``; ``explainer_kwargs`` go to its
            constructor), an xcam explainer (rebuilt on the copy from its class and ``params()``),
            or a factory ``model -> explainer``.
        inputs: (B, C, H, W).
        targets: class per sample (None: the original model's top class).
        layers: module names to randomize, in cascade order; default every module that owns
            parameters, output side first. A named block is re-initialized as a whole.
        seed: seed of the re-initialization (``None``: fresh from torch's global RNG); step j
            uses ``seed + j``.
        explainer_kwargs: constructor arguments when ``explainer`` is a name.
        output: a callable ``f(model_output) -> (B, classes)`` for the clean pass that picks the
            classes (see :func:`xcam.metrics.deletion`).

    Returns:
        :class:`RandomizationResult` with (B, L) ``spearman`` and ``ssim``.
    """
    c = start_cascade(model, explainer, inputs, targets, lambda m: randomized_layers(m, layers),
                      seed, explainer_kwargs, output)
    original = explanation_maps(c.explain, c.x, c.indices)
    rho, sim = [], []
    for j, name in enumerate(c.names):
        reinitialize(c.modules[name], c.base_seed + j)
        new = explanation_maps(c.explain, c.x, c.indices)
        rho.append(_spearman(original, new))
        sim.append(_ssim(original, new))
    return RandomizationResult(tuple(c.names), torch.stack(rho, dim=1), torch.stack(sim, dim=1))


def _random_logit_cost(n: int, p: dict[str, Any]) -> int:
    calls = 1 if p.get("maps") is not None else 2
    return explainer_images(p.get("explainer"), n * calls)


@metric("random_logit", higher_is_better=False, family="sanity", cost=_random_logit_cost,
        stochastic=True, label="Random-logit SSIM",
        needs=frozenset({"explainer", "inputs", "targets"}))
def random_logit(
    explainer: Callable[..., Any],
    inputs: Tensor,
    targets: object,
    n_classes: int,
    seed: int | None = None,
    *,
    maps: Tensor | None = None,
) -> Tensor:
    """Random-logit test (Sixt et al., "When explanations lie", ICML 2020).

    SSIM between the map for the target class and the map for another class drawn uniformly
    among the ``n_classes - 1`` others (seeded). A class-sensitive method gives dissimilar maps;
    lower is better.

    Args:
        explainer: an xcam explainer or any ``f(inputs, targets)`` returning an Explanation or
            (B, H, W) maps.
        inputs: (B, C, H, W).
        targets: class per sample (None: the class the explainer picks, which needs an
            Explanation back).
        n_classes: number of classes of the model (>= 2).
        seed: seed of the class draw.
        maps: the target class's (B, H, W) maps if already computed, with explicit ``targets``
            (saves one explanation).

    Returns:
        (B,) float32 SSIM in [-1, 1].
    """
    if not callable(explainer):
        raise InputTypeError(f"explainer must be callable, got {type(explainer).__name__}")
    model = getattr(explainer, "model", None)
    x = check_inputs(inputs, model=model if isinstance(model, nn.Module) else None)
    k = check_int("n_classes", n_classes, 2)
    given = parse_indices(targets, x.shape[0], x.device)
    if maps is not None and given is not None:
        target_maps, indices = check_maps(maps).float().to(x.device), given
        if tuple(target_maps.shape) != (x.shape[0], *x.shape[2:]):
            raise InputError(f"maps must have shape {(x.shape[0], *x.shape[2:])} (one map per "
                             f"input, at input resolution), got {tuple(target_maps.shape)}")
    else:
        target_maps, indices = explained_targets(explainer, x, targets)
    if int(indices.max()) >= k or int(indices.min()) < 0:
        raise InputError(f"targets hold class {int(indices.max())}, outside n_classes={k}")
    gen = make_generator(seed, x.device)
    shift = torch.randint(1, k, (x.shape[0],), generator=gen, device=x.device)
    other = (indices + shift) % k
    other_maps = explanation_maps(explainer, x, other)
    return _ssim(target_maps, other_maps)
