"""The :class:`Explanation` every explainer returns, and what a metric needs of an explainer.

Metrics that drive an explainer (deletion, insertion, sanity checks, robustness) take any object
that satisfies :class:`ExplainerLike`: a callable ``(inputs, targets) -> ExplanationLike`` whose
result has ``.maps``. They never import :mod:`xcam.methods`. Likewise the LFI-CAM explainer reads
any :class:`AttentionModel` (such as :class:`xcam.lfi.LFICAMNet`) without importing :mod:`xcam.lfi`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

__all__ = ["Explanation", "ExplanationLike", "ExplainerLike", "AttentionModel", "Detector"]


@runtime_checkable
class ExplanationLike(Protocol):
    """What a metric reads of an explanation: the (B, H, W) maps."""

    @property
    def maps(self) -> Tensor:
        """(B, H, W) maps at input resolution."""
        ...


@runtime_checkable
class ExplainerLike(Protocol):
    """What a metric needs of an explainer: ``explainer(inputs, targets) -> ExplanationLike``.

    Every xcam explainer satisfies it; so does any callable with that signature (a wrapper of
    another library). ``model`` is optional (sanity checks read it when present).
    """

    def __call__(self, inputs: Tensor, targets: Any = None) -> ExplanationLike:
        """Explain ``inputs`` (B, C, H, W) for ``targets``."""
        ...


@runtime_checkable
class AttentionModel(Protocol):
    """A model that explains itself: ``model(x, return_attention=True) -> (logits, attention)``.

    ``attention`` is (B, 1, h, w) at the layer named ``layer``; ``attention_params()`` describes
    what produced it (recorded in the explanation). :class:`xcam.lfi.LFICAMNet` is one.
    """

    layer: str

    def attention_params(self) -> dict[str, Any]:
        """What produced the attention map, for provenance."""
        ...

    def __call__(self, inputs: Tensor, return_attention: bool = False) -> Any:
        """The logits, or ``(logits, attention)`` with ``return_attention=True``."""
        ...


@runtime_checkable
class Detector(Protocol):
    """An object detector: ``model(list of (C, H, W) images) -> list of dicts``, one per image.

    Each dict holds ``boxes`` (K, 4) as (x1, y1, x2, y2) pixels, ``labels`` (K,) and ``scores``
    (K,), as torchvision's detection models return in eval mode. Explainers of detectors declare
    it as their ``model_type`` (:class:`xcam.methods.DRISE`); the test suites, ``compare`` and the
    coverage table read that flag to give them a detector, or to leave them out for classifiers.
    """

    def __call__(self, images: list[Tensor]) -> Any:
        """The detections of each image."""
        ...


@dataclass(frozen=True)
class Explanation:
    """Saliency maps for a batch, with what produced them.

    Attributes:
        maps: (B, H, W) float32 at input resolution, raw (after the method's own ReLU, not
            normalized), on the input's device.
        low_res: (B, h, w) map at the explained layer's resolution before upsampling, or ``None``
            for methods without a layer.
        targets: (B,) class index per sample, or ``None`` when the score came from a callable or
            a unit target.
        scores: (B,) the explained score per sample on the clean input (detached).
        layer: label of the explained layer (``"layer4"``, ``"avgpool:input"``), or ``None``.
        method: registered name of the explainer.
        params: the explainer's hyper-parameters, for provenance.
    """

    maps: Tensor
    low_res: Tensor | None
    targets: Tensor | None
    scores: Tensor
    layer: str | None
    method: str
    params: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        """B, the number of maps."""
        return int(self.maps.shape[0])

    def normalized(self) -> Tensor:
        """Per-sample min-max normalized maps in [0, 1] (a constant map becomes 0)."""
        from .postprocess import normalize

        return normalize(self.maps)
