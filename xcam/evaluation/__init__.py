"""The evaluation layer: methods x metrics x data, batched, resumable and sharded.

Modules (imports point down: core <- methods, metrics <- evaluation <- cli):

- :mod:`~xcam.evaluation.compare`: :func:`compare`, the entry point (checks the arguments, builds
  the :class:`~xcam.evaluation.compare.RunConfig`, runs it);
- :mod:`~xcam.evaluation.data`: images, labels and boxes (:func:`load_data`, :func:`load_images`);
- :mod:`~xcam.evaluation.models`: model loading and :class:`~xcam.evaluation.models.Preprocess`;
- :mod:`~xcam.evaluation.report`: the table, summary and HTML report files.

Nothing is imported until it is used, so that ``import xcam.evaluation`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "compare": "xcam.evaluation.compare",
    "Comparison": "xcam.evaluation.compare",
    "RunConfig": "xcam.evaluation.compare",
    "load_data": "xcam.evaluation.data",
    "load_images": "xcam.evaluation.data",
    "ImageData": "xcam.evaluation.data",
    "Preprocess": "xcam.evaluation.models",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562)."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'xcam.evaluation' has no attribute {name!r}")
