"""Shared checks and state guards (private to xcam).

``eval_mode`` is the one context manager that runs a model in eval mode and gives it back exactly
as it came: every module's ``training`` flag restored, and no buffer touched (eval-mode batch norm
reads its running statistics without updating them). ``model_lock`` serializes the hook-based
passes of several threads over one model: hooks are registered on the model itself, so two
captures running at once in two threads would each record the other's tensors.

The argument checks (:func:`check_positive_int`, :func:`check_int`, :func:`check_number`, :func:`check_seed`,
:func:`check_noise_level`, :func:`check_channels_last`), the seeded generators of every stochastic
explainer (:func:`make_generator`) and the one did-you-mean hint (:func:`did_you_mean`) live here
too, so that every part of xcam words its errors the same way.

``check_inputs`` validates an input batch, and with ``model=`` checks it against the model: dtype
(float16 / bfloat16 inputs are cast up losslessly to a float32 model; anything lossy is an
error), device, and the channel count of the first convolution. ``check_input_range`` looks for
un-normalized pixels (one reduction and one device sync; explainers run it on their first call
only).
"""

from __future__ import annotations

import difflib
import math
import threading
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from .errors import InputError, InputRangeWarning, InputTypeError, warn

__all__ = [
    "check_inputs",
    "check_input_range",
    "check_positive_int",
    "check_int",
    "check_number",
    "check_seed",
    "check_noise_level",
    "check_channels_last",
    "did_you_mean",
    "eval_mode",
    "make_generator",
    "model_lock",
    "normalizes_inside",
]

def did_you_mean(name: object, candidates: Iterable[str], *, cutoff: float = 0.6) -> str:
    """The hint ``"; did you mean 'layer4'?"`` for the candidate closest to ``name``, or ``""``.

    Built on :func:`difflib.get_close_matches` (one match, similarity >= ``cutoff``); the hint is
    meant to follow the "not found" part of an error message.
    """
    close = difflib.get_close_matches(str(name), list(candidates), n=1, cutoff=cutoff)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_positive_int(name: str, value: object) -> int:
    """``value`` as an int >= 1, or an error naming ``name``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InputTypeError(f"{name} must be an int >= 1, got {type(value).__name__} ({value!r})")
    if value < 1:
        raise InputError(f"{name} must be >= 1, got {value}")
    return value


def check_int(name: str, value: object, minimum: int) -> int:
    """``value`` as an int >= ``minimum``, or an error naming ``name``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InputTypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_number(name: str, value: object, minimum: float | None = None) -> float:
    """``value`` as a float (not NaN, >= ``minimum`` when given), or an error naming ``name``."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        raise InputTypeError(f"{name} must be a real number, got {type(value).__name__} ({value!r})")
    if minimum is not None and value < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {value}")
    return float(value)


def check_noise_level(value: object) -> float:
    """``noise_level`` as a float >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise InputError(
            f"noise_level must be a number >= 0 (a fraction of the input's value range), "
            f"got {value!r}"
        )
    return float(value)


def check_seed(value: object) -> int | None:
    """``seed`` as an int or None."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise InputTypeError(f"seed must be an int or None, got {type(value).__name__} ({value!r})")
    return value


def check_channels_last(value: object) -> bool | None:
    """``channels_last`` as True, False or None (automatic)."""
    if value is not None and not isinstance(value, bool):
        raise InputTypeError(f"channels_last must be True, False or None (automatic), got {value!r}")
    return value


def make_generator(seed: int | None, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded with ``seed``; ``None`` draws a seed from torch's global RNG.

    Raises:
        InputTypeError: ``seed`` is neither an int nor None.
    """
    check_seed(seed)
    if seed is None:
        seed = int(torch.randint(0, 2**62, ()).item())
    return torch.Generator(device=device).manual_seed(seed)


_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The re-entrant lock that guards ``model``'s hooks and flags (one per model object)."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode inside the block, holding its lock; restore every flag on exit.

    Flags are restored module by module, so a model handed over in a mixed state (some modules
    training, others not) comes back in that same mixed state, also after an exception.
    """
    with model_lock(model):
        flags = [(m, m.training) for m in model.modules()]
        try:
            model.eval()
            yield model
        finally:
            for module, flag in flags:
                module.training = flag


# Normalized ImageNet inputs lie in about [-2.12, 2.64] and always hold negatives: over 400
# validation images (resize 256, crop 224, ImageNet mean / std) every image's minimum was <= -1.09
# and every maximum <= 2.64, while the same images as [0, 1] pixels spanned at least 0.67.
_RAW_MAX = 3.0  # above the largest normalized value (2.64); raw [0, 255] pixels reach far above
_UNIT_SPAN = 0.25  # [0, 1] photos span more than this (1 % quantile 0.75)

_LOSSLESS = {
    (torch.float16, torch.float32), (torch.bfloat16, torch.float32),
    (torch.float16, torch.float64), (torch.bfloat16, torch.float64), (torch.float32, torch.float64),
}


def _first_tensor(model: nn.Module) -> Tensor | None:
    """The model's first floating-point parameter (else buffer): its dtype and device."""
    for param in model.parameters():
        if param.dtype.is_floating_point:
            return param
    for buffer in model.buffers():
        if buffer.dtype.is_floating_point:
            return buffer
    return None


def _check_channels(inputs: Tensor, model: nn.Module, name: str) -> None:
    """The first ``nn.Conv2d`` (in registration order) must take the inputs' channel count.

    A model whose first registered convolution is not the one that reads the image (a head
    registered before the backbone) is not refused when any of its convolutions takes C channels.
    """
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)
             and not isinstance(m.weight, nn.parameter.UninitializedParameter)]  # lazy: unknown yet
    if not convs:
        return
    c = inputs.shape[1]
    first = convs[0]
    if first.in_channels == c or any(m.in_channels == c for m in convs):
        return
    name_of = next((n for n, m in model.named_modules() if m is first), "?")
    hint = ""
    if c == 1 and first.in_channels == 3:
        hint = "; for grayscale images repeat the channel: inputs.expand(-1, 3, -1, -1)"
    elif c == 4 and first.in_channels == 3:
        hint = "; for RGBA images drop the alpha channel: inputs[:, :3]"
    elif inputs.shape[-1] == first.in_channels:
        hint = "; the channels look last (B, H, W, C): use inputs.permute(0, 3, 1, 2)"
    raise InputError(
        f"{name} has {c} channels (shape {tuple(inputs.shape)}), but the model's first convolution "
        f"{name_of!r} takes {first.in_channels}; pass (B, {first.in_channels}, H, W) inputs{hint}"
    )


def check_inputs(inputs: object, name: str = "inputs", *, model: nn.Module | None = None) -> Tensor:
    """Validate an input batch: a finite floating-point tensor of shape (B, C, H, W), H, W > 0.

    With ``model``, also against the model (its first floating-point parameter): the same device;
    the same dtype, except that float16 / bfloat16 inputs are cast up to a float32 or float64
    model (losslessly; the returned tensor is the cast one); a channel count that the model's
    first convolution takes.

    Returns:
        The inputs, cast up where that is lossless.

    Raises:
        InputTypeError: not a tensor, not floating point, or a dtype the model cannot take.
        InputError: wrong shape, empty, NaN / infinite values, wrong device or channel count.
    """
    if not isinstance(inputs, Tensor):
        raise InputTypeError(
            f"{name} must be a torch.Tensor of shape (B, C, H, W), got {type(inputs).__name__}; "
            "convert images with torchvision.transforms.functional.to_tensor and normalize them "
            "as the model expects (e.g. weights.transforms())"
        )
    if not inputs.dtype.is_floating_point:
        raise InputTypeError(
            f"{name} must be a floating-point tensor, got dtype {inputs.dtype}; "
            "use inputs.float() (and scale pixels as the model expects)"
        )
    if inputs.dim() != 4:
        fix = "; add the batch dimension with inputs[None]" if inputs.dim() == 3 else ""
        raise InputError(f"{name} must have shape (B, C, H, W), got {tuple(inputs.shape)}{fix}")
    if inputs.shape[0] == 0:
        raise InputError(f"{name} is an empty batch (shape {tuple(inputs.shape)}); pass at least one image")
    if inputs.shape[1] == 0 or inputs.shape[2] == 0 or inputs.shape[3] == 0:
        raise InputError(
            f"{name} has an empty dimension (shape {tuple(inputs.shape)}): channels, height and "
            "width must be >= 1; check the crop or resize that produced it"
        )
    if model is not None:
        ref = _first_tensor(model)
        if ref is not None and ref.device.type != "meta":
            if inputs.device != ref.device:
                raise InputError(
                    f"{name} are on {inputs.device}, the model on {ref.device}; move one to the "
                    f"other: inputs.to({str(ref.device)!r}) (or model.to(inputs.device))"
                )
            if inputs.dtype != ref.dtype:
                if (inputs.dtype, ref.dtype) in _LOSSLESS:
                    inputs = inputs.to(ref.dtype)
                else:
                    casts = {torch.float32: "inputs.float()", torch.float64: "inputs.double()",
                             torch.float16: "inputs.half()", torch.bfloat16: "inputs.bfloat16()"}
                    raise InputTypeError(
                        f"{name} are {inputs.dtype}, the model's parameters {ref.dtype}; convert "
                        f"the inputs with {casts.get(ref.dtype, f'inputs.to({ref.dtype})')} (or the "
                        f"model with model.to({inputs.dtype}))"
                    )
        _check_channels(inputs, model, name)
    if not bool(torch.isfinite(inputs).all()):
        n_bad = int((~torch.isfinite(inputs)).sum())
        raise InputError(
            f"{name} contains {n_bad} NaN or infinite values; clean or clamp the input first"
        )
    return inputs


def normalizes_inside(model: nn.Module) -> bool:
    """Whether ``model`` normalizes its [0, 1] input itself.

    True when a submodule holds ``image_mean`` and ``image_std`` (torchvision's detection models,
    through ``GeneralizedRCNNTransform``).
    """
    return any(hasattr(m, "image_mean") and hasattr(m, "image_std") for m in model.modules())


def check_input_range(inputs: Tensor, name: str = "inputs", *, model: nn.Module | None = None) -> str | None:
    """Warn (:class:`~xcam.errors.InputRangeWarning`) when ``inputs`` look un-normalized.

    Two patterns, from the statistics above: no negative value and a maximum above 3 (raw pixels
    in [0, 255]); no negative value, a maximum <= 1 and a span >= 0.25 ([0, 1] pixels from
    ``to_tensor``, not normalized). The second is expected, and not warned, for a ``model`` that
    normalizes inside (:func:`normalizes_inside`). Costs one reduction and one device sync.

    Returns:
        The warning's message, or None when the inputs look normalized.
    """
    lo_t, hi_t = torch.aminmax(inputs.detach())
    lo, hi = float(lo_t), float(hi_t)
    if lo < 0:
        return None
    if hi > _RAW_MAX:
        kind = "raw pixels in [0, 255]"
    elif hi <= 1.0 and hi - lo >= _UNIT_SPAN and not (model is not None and normalizes_inside(model)):
        kind = "[0, 1] pixels (to_tensor output) that were not normalized"
    else:
        return None
    message = (
        f"{name} look unnormalized: values in [{lo:.3g}, {hi:.3g}] with no negative value, like "
        f"{kind}; normalize them with the model's mean and std (e.g. weights.transforms() for "
        "torchvision weights, or torchvision.transforms.Normalize(mean, std)). If the model "
        "normalizes inside (torchvision detection models take [0, 1]), silence this with "
        "warnings.filterwarnings('ignore', category=xcam.errors.InputRangeWarning). "
        "xcam checks the first call of each explainer only"
    )
    warn(message, InputRangeWarning)
    return message
