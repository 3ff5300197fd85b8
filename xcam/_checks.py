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

Checks of tensor values (NaN inputs, NaN scores, class indices out of range, NaN or constant maps)
go through :func:`check_later`: on the CPU they run at once, as plain checks; on an accelerator,
inside an explainer call (:func:`deferred_checks`), their flags stay on the device and are copied
to pinned host memory without blocking when the call ends (:class:`PendingChecks`), and the
explanation checks them when its maps, scores or targets are first read. So an explainer call
costs no device sync for its checks, and a wrong map still cannot be read without its error or
warning.

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
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import Tensor, nn

from .errors import InputError, InputRangeWarning, InputTypeError, warn

__all__ = [
    "PendingChecks",
    "check_later",
    "checks_deferred",
    "deferred_checks",
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
    n_bad = torch.isfinite(inputs.detach()).logical_not().sum()

    def fail() -> None:
        raise InputError(
            f"{name} contains {int(n_bad)} NaN or infinite values; clean or clamp the input first"
        )

    check_later(n_bad > 0, fail)
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


# -- checks of tensor values without a device sync ---------------------------------------------

_PENDING: ContextVar[PendingChecks | None] = ContextVar("xcam_pending_checks", default=None)


def checks_deferred(device: torch.device) -> bool:
    """Whether checks of tensor values on ``device`` wait until the result is read.

    Everywhere but the CPU, where reading a flag costs no device sync (the rule the tests patch to
    exercise the deferred path on the CPU).
    """
    return device.type != "cpu"


class PendingChecks:
    """Flags of value checks, computed on the device, and what to do when one is set.

    :meth:`add` records a 0-d bool flag and a ``fail()`` that raises an error or emits a warning;
    :meth:`launch` stacks the flags and starts their copy to pinned host memory without blocking
    (CUDA) or keeps them as they are (elsewhere); :meth:`resolve` waits for that copy (the only
    sync, at the first read of the result) and calls ``fail()`` of every set flag, in the order
    the checks were made, so the first error is the one an eager check would have raised. A
    parent's checks (the input checks shared by the explainers of :func:`xcam.explain`) come first.
    """

    def __init__(self, parent: PendingChecks | None = None) -> None:
        self.parent = parent
        self._items: list[tuple[Tensor, Callable[[], None]]] = []
        self._host: Tensor | None = None
        self._event: torch.cuda.Event | None = None
        self._done = False

    def add(self, flag: Tensor, fail: Callable[[], None]) -> None:
        """Check ``flag`` (a bool tensor with one element) later; ``fail()`` when it is True."""
        self._items.append((flag.detach().reshape(()), fail))
        self._host = None

    def launch(self) -> None:
        """Start copying the flags to the host (non-blocking on CUDA); idempotent."""
        if self._host is not None or not self._items:
            return
        flags = torch.stack([f.to(torch.bool) for f, _ in self._items])
        if flags.is_cuda:
            host = torch.empty(flags.shape, dtype=torch.bool, pin_memory=True)
            host.copy_(flags, non_blocking=True)
            self._event = torch.cuda.Event()  # type: ignore[no-untyped-call]
            self._event.record()
            self._host = host
        else:
            self._host = flags

    def resolve(self) -> None:
        """Read the flags (one wait) and raise or warn for each one set; later calls do nothing."""
        if self._done:
            return
        if self.parent is not None:
            self.parent.resolve()
        if self._items:
            self.launch()
            if self._event is not None:
                self._event.synchronize()
            assert self._host is not None
            for bad, (_, fail) in zip(self._host.tolist(), self._items):
                if bad:
                    fail()
        self._done = True

    def fail_first(self, cause: BaseException) -> None:
        """After ``cause`` broke the call: raise the first failed check from it, if any."""
        try:
            self.resolve()
        except Exception as err:
            raise err from cause


def check_later(flag: Tensor, fail: Callable[[], None]) -> None:
    """``fail()`` if ``flag`` (a one-element bool tensor) is True: now, or when the result is read.

    Inside :func:`deferred_checks` the flag joins the call's :class:`PendingChecks` (no sync);
    elsewhere it is read at once (one sync).
    """
    pending = _PENDING.get()
    if pending is None:
        if bool(flag):
            fail()
    else:
        pending.add(flag, fail)


@contextmanager
def deferred_checks(device: torch.device | None) -> Iterator[PendingChecks | None]:
    """Collect the :func:`check_later` checks of a call on ``device`` (None where they run at once).

    Nested inside another such block, the new checks come after the outer block's (``parent``).
    On an exception the checks made so far are resolved first, so a NaN input is reported as
    such and not as whatever it broke downstream.
    """
    if device is None or not checks_deferred(device):
        yield None
        return
    pending = PendingChecks(parent=_PENDING.get())
    token = _PENDING.set(pending)
    reset = False
    try:
        yield pending
    except Exception as exc:
        _PENDING.reset(token)
        reset = True
        pending.fail_first(exc)
        raise
    finally:
        if not reset:
            _PENDING.reset(token)
