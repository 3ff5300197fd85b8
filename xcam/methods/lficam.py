"""LFI-CAM (Lee et al., ICCV 2021): read the attention map of a trained :class:`LFICAMNet`."""

from __future__ import annotations

from typing import Any, ClassVar, cast

import torch
from torch import Tensor, nn

from .._checks import eval_mode
from ..errors import InputTypeError, TargetError
from ..explanation import AttentionModel, Explanation
from ..postprocess import upsample
from ..registry import register_explainer
from ..targets import Target
from .base import Explainer

__all__ = ["LFICAM"]


@register_explainer("lficam")
class LFICAM(Explainer):
    """LFI-CAM: the map is the network's own attention ``A``, learned by its FIN.

    ``A = minmax( ReLU( sum_k w_k F_k ) )`` with ``w = FIN(minmax_k(F) * G)`` (see
    :mod:`xcam.lfi.network`), at the backbone's last convolutional stage; ``maps`` is ``A``
    upsampled bilinearly to the input size (values in [0, 1]), ``low_res`` is ``A`` (B, h, w).

    The map is class-agnostic: one map per image. ``targets`` is accepted for interface
    compatibility and only chooses the reported ``targets`` and ``scores`` (the logits of those
    classes); it does not change the map. One forward pass in eval mode, no gradients.

    Args:
        model: an :class:`xcam.lfi.LFICAMNet`, trained with :func:`xcam.lfi.fit`.

    Raises:
        InputTypeError: ``model`` is not an LFICAMNet (LFI-CAM is an architecture, not a post-hoc
            method; wrap and train the classifier first, e.g. ``fit(net, data, mode="posthoc")``).

    Example:
        >>> explanation = LFICAM(net)(x)
        >>> explanation.maps.shape  # (B, H, W)
    """

    needs_gradients: ClassVar[bool] = False
    needs_layer: ClassVar[bool] = False
    model_type: ClassVar[type] = AttentionModel
    """The kind of model this explainer accepts (an LFICAMNet, not an arbitrary classifier)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        if not isinstance(model, AttentionModel):
            raise InputTypeError(
                f"model: LFICAM reads the attention map of an xcam.lfi.LFICAMNet, got "
                f"{type(model).__name__}; wrap the classifier with net = xcam.lfi.LFICAMNet(model) and "
                "train it with xcam.lfi.fit(net, data, mode='posthoc') (only the FIN learns), or use "
                "a post-hoc method such as GradCAM"
            )

    def explain(self, inputs: Tensor, target: Target) -> Explanation:
        """The network's attention map, upsampled; ``target`` only picks the reported scores."""
        if target.reads_layer:
            raise TargetError(
                "LFICAM's map is class-agnostic and does not explain units; pass targets=None, a "
                "class index per sample, or a callable on the logits"
            )
        net = cast(AttentionModel, self.model)
        with torch.no_grad(), eval_mode(self.model):
            logits, attention = net(inputs, return_attention=True)
            indices, scores = target.with_output(None).evaluate(logits)
        low_res = attention[:, 0].float()
        maps = upsample(low_res, (int(inputs.shape[-2]), int(inputs.shape[-1])))
        return self.make_explanation(maps, indices, scores.detach(), low_res=low_res, layer=net.layer)

    def params(self) -> dict[str, Any]:
        """Hyper-parameters, recorded in every :class:`~xcam.explanation.Explanation`."""
        return cast(AttentionModel, self.model).attention_params()
