"""Exceptions raised by xcam.

Every error derives from :class:`XcamError` and from the built-in type a caller would expect
(``ValueError``, ``TypeError``, ``RuntimeError``), so ``except ValueError`` keeps working. Each
message names the argument, what was expected, what was given, and the fix.
"""

from __future__ import annotations

__all__ = [
    "XcamError",
    "InputError",
    "InputTypeError",
    "LayerNotFoundError",
    "TargetError",
    "HeadNotFoundError",
    "GradientModeError",
    "OutputError",
    "DisconnectedError",
    "NonFiniteError",
    "MissingDependencyError",
    "InputRangeWarning",
    "DeadEndWarning",
    "warn",
]


class XcamError(Exception):
    """Base class of every error xcam raises on purpose."""


class InputError(XcamError, ValueError):
    """An argument has the right type but a wrong value or shape."""


class InputTypeError(XcamError, TypeError):
    """An argument has the wrong type."""


class LayerNotFoundError(XcamError, ValueError):
    """A layer named by the caller does not exist in the model."""


class TargetError(XcamError, ValueError):
    """Targets do not fit the batch or the model output."""


class HeadNotFoundError(XcamError, ValueError):
    """The model has no head of the form a method needs (CAM: global average pool -> Linear)."""


class GradientModeError(XcamError, RuntimeError):
    """A gradient method was called where autograd cannot run (``torch.inference_mode()``)."""


class OutputError(XcamError, TypeError):
    """The model's output holds no tensor of scores that xcam can find (see :mod:`xcam.outputs`)."""


class DisconnectedError(XcamError, ValueError):
    """The explained score does not depend on the explained layer (or input) through autograd."""


class NonFiniteError(XcamError, ValueError):
    """The model returned NaN or infinite values (NaN weights, an overflow)."""


class MissingDependencyError(XcamError, ImportError):
    """An optional package a feature needs is not installed (the message names the pip command)."""


class InputRangeWarning(UserWarning):
    """The inputs look un-normalized (raw [0, 255] pixels, or [0, 1] pixels).

    Filter it where the model normalizes inside:
    ``warnings.filterwarnings("ignore", category=xcam.errors.InputRangeWarning)``.
    """


class DeadEndWarning(UserWarning):
    """A map that carries little or no information.

    A 1 x 1 layer, a constant map, occlusion windows that leave pixels uncovered.
    """


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` pointing at the first caller outside the xcam package.

    Automatic choices are announced this way, so that the warning names the user's line whatever
    depth inside xcam it was raised from.
    """
    import os
    import sys
    import warnings

    package_dir = os.path.dirname(os.path.abspath(__file__))
    level = 2
    frame = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package_dir):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    warnings.warn(message, category, stacklevel=level)
