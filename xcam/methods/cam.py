"""CAM (Zhou et al., CVPR 2016)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from ..autolayer import GAPHead, find_gap_head
from ..errors import HeadNotFoundError
from ..layers import LayerSpec, Tap, resolve_layer
from ..outputs import OutputFn
from ..registry import register_explainer
from ..targets import Target
from .base import CAMExplainer, LayerPass

__all__ = ["CAM"]


@register_explainer("cam")
class CAM(CAMExplainer):
    """Class activation mapping: the classifier's own weights over the pooled features.

    Needs a head global-average-pool -> Linear with weight ``W`` (K, C). With ``F`` the features
    at the input of the pooling, ``map^c = ReLU( sum_k W[c, k] F_k )``. On such a head CAM equals
    ``h * w`` times Grad-CAM at the same layer. One forward pass, no gradients.

    Args:
        model: a classifier whose head is global average pooling -> (dropout) -> Linear; found
            automatically (pooling module or ``x.mean((2, 3))``), checked numerically.
        layer: ignored unless given, in which case it must be the pooled features' tap.
        channels: restrict the sum to these feature maps.
        output: see :class:`~xcam.methods.Explainer`.
        eigen_smooth, aug_smooth: see :class:`~xcam.methods.CAMExplainer`.

    Raises:
        HeadNotFoundError: the model has no such head (the message says what was found).
    """

    needs_gradients = False
    needs_class_targets = True

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec | None = None,
        channels: Sequence[int] | None = None,
        *,
        output: OutputFn | None = None,
        eigen_smooth: bool = False,
        aug_smooth: bool = False,
    ) -> None:
        super().__init__(model, layer=None, channels=channels, output=output, eigen_smooth=eigen_smooth,
                         aug_smooth=aug_smooth)
        self._requested = None if layer is None else resolve_layer(model, layer)
        self.head: GAPHead | None = None

    def pass_layers(self, inputs: Tensor, target: Target) -> list[Tap]:
        """Find the GAP head on the first call: CAM reads the features it pools."""
        target.require_classes(
            "CAM explains classes through the classifier's weights; it takes None, an int or "
            "one class per sample. Use GradCAM for unit or callable targets"
        )
        if self.head is None:
            head = find_gap_head(self.model, inputs[:1], self.output)
            if self._requested is not None and self._requested != head.features:
                raise HeadNotFoundError(
                    f"CAM: layer {self._requested.label!r} is not the features the classifier "
                    f"pools; CAM is defined at {head.features.label!r} (pass layer=None)"
                )
            self.head, self._tap = head, head.features
        return super().pass_layers(inputs, target)

    def low_res(self, features: Tensor, grads: Tensor | None, lp: LayerPass) -> Tensor:
        """The (B, h, w) map of the equation in the class docstring."""
        assert self.head is not None and lp.indices is not None
        weight = self.select(self.head.linear.weight.detach()[lp.indices])
        return self.combine(weight, features)

    def params(self) -> dict[str, Any]:
        """Hyper-parameters, recorded in every :class:`~xcam.explanation.Explanation`."""
        out = super().params()
        out["layer"] = self._tap.label if self._tap else None
        return out
