"""Poly-CAM (Englebert, Cornu & De Vleeschouwer, Machine Vision and Applications 2024)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..autolayer import auto_layer
from ..capture import capture
from ..errors import InputError, InputTypeError, TargetError
from ..explanation import Explanation
from ..layers import LayerSpec, Tap, resolve_layer, to_nchw, trace_calls
from ..outputs import OutputFn
from ..postprocess import upsample
from ..registry import register_explainer
from ..targets import Target
from .base import Explainer

__all__ = ["PolyCAM", "local_normalization"]

_RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")


def _resize(maps: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def local_normalization(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """The paper's LNorm: ``A / max(Up(Down(A, size)), 1e-12)`` on (B, h, w) maps.

    Each value is divided by the local mean of its map at the coarser resolution ``size`` (bilinear
    down- then upsampling), so that the finer layer contributes its detail and the coarser map its
    class evidence.
    """
    factor = _resize(_resize(maps, size), (int(maps.shape[-2]), int(maps.shape[-1])))
    return maps / factor.clamp_min(1e-12)


@register_explainer("polycam")
class PolyCAM(Explainer):
    """Poly-CAM: a high-resolution CAM, the last layer's map multiplied into earlier layers' maps.

    Englebert, Cornu & De Vleeschouwer, "Poly-CAM: high resolution class activation map for
    convolutional neural networks", Machine Vision and Applications 35, 2024. With layers
    ``l = 1..L`` from the finest to the coarsest, ``A_l = ReLU( sum_k w_k^l F_k^l )`` each layer's
    CAM, ``Up`` bilinear resizing to the finer layer's size and ``LNorm``
    (:func:`local_normalization`)::

        S_L = A_L
        S_l = ReLU( LNorm(A_l, size(S_{l+1})) * Up(S_{l+1}) ),   l = L-1 .. 1
        map = Up_input(S_1)

    as in the authors' recursion (``compute_cams`` of their code).

    Choices, stated because the paper has variants:

    - The layer weights are Grad-CAM's, ``w_k^l = mean_ij dS_c / dF_k^l(i, j)``, from one backward
      pass for all layers. The paper's PCAM+ / PCAM- variants take Score-CAM-like perturbation
      weights instead (one masked forward per channel and layer); the recursion is the same.
    - The map is returned raw (the authors rescale it to [0, 1] with 0.1 / 99.9 percentiles).
    - ``S_c`` is the target score (the logit for class targets).

    Args:
        model: a CNN.
        layers: the layers, in forward order (dotted names or modules). ``None`` (default): the
            automatic layer and, before it, the last layer at each larger spatial resolution; for
            a model with ``layer1`` .. ``layer4`` (ResNet), those four.
        output: see :class:`~xcam.methods.Explainer`.
    """

    def __init__(self, model: nn.Module, layers: Sequence[LayerSpec] | None = None, *,
                 output: OutputFn | None = None) -> None:
        super().__init__(model, output=output)
        self._taps: list[Tap] | None = None
        if layers is not None:
            if isinstance(layers, (str, nn.Module)) or not isinstance(layers, Sequence):
                raise InputTypeError(
                    "layers must be a list of layers (dotted names or modules), finest first, e.g. "
                    "['layer1', 'layer2', 'layer3', 'layer4']; or None to choose them"
                )
            if len(layers) == 0:
                raise InputError("layers is empty; pass at least one layer or None to choose them")
            self._taps = [resolve_layer(model, spec) for spec in layers]
        elif all(name in dict(model.named_children()) for name in _RESNET_STAGES):
            self._taps = [resolve_layer(model, name) for name in _RESNET_STAGES]

    def params(self) -> dict[str, Any]:
        """Hyper-parameters, recorded in every :class:`~xcam.explanation.Explanation`."""
        return {"layers": None if self._taps is None else [t.label for t in self._taps]}

    def taps(self, inputs: Tensor) -> list[Tap]:
        """The explained layers, finest first; chosen on the first call when ``layers=None``."""
        if self._taps is None:
            last = auto_layer(self.model, inputs[:1], self.output)
            calls, _ = trace_calls(self.model, inputs[:1], leaves_only=False)
            at = next((i for i, c in enumerate(calls) if c.module is last.module), len(calls))
            if last.kind == "input":
                at -= 1  # the module's input is the previous call's output
            cell = calls[at].output if 0 <= at < len(calls) else None
            size = tuple(cell.shape[-2:]) if isinstance(cell, Tensor) and cell.dim() == 4 else None
            earlier: dict[tuple[int, ...], str] = {}
            for call in calls[:max(at, 0)]:
                out = call.output
                if (isinstance(out, Tensor) and out.dim() == 4 and call.name
                        and (size is None or out.shape[-2] * out.shape[-1] > size[0] * size[1])):
                    earlier.pop(tuple(out.shape[-2:]), None)
                    earlier[tuple(out.shape[-2:])] = call.name  # the last call at that size
            self._taps = [resolve_layer(self.model, name) for name in earlier.values()] + [last]
        return self._taps

    def explain(self, inputs: Tensor, target: Target) -> Explanation:
        """One forward and one backward pass; the layer CAMs combined coarsest first."""
        taps = self.taps(inputs)
        unit_taps = target.taps(self.model)
        size = (int(inputs.shape[-2]), int(inputs.shape[-1]))
        with torch.enable_grad(), capture(self.model, [*taps, *unit_taps]) as cap:
            output = self.model(inputs)
            for unit_tap in unit_taps:
                if cap.order(unit_tap) < cap.order(taps[-1]):
                    raise TargetError(
                        f"unit target layer {unit_tap.label!r} runs before the last explained layer "
                        f"{taps[-1].label!r}; choose a unit at or after it"
                    )
            indices, scores = target.evaluate(output, cap, size=size)
            raw = [cap[t].detach() for t in taps]
            grads = cap.gradients(scores, taps)
        cams = []
        for tap, feat in zip(taps, raw):
            features = to_nchw(feat, size, tap).float()
            weights = to_nchw(grads[tap.label], size, tap).float().mean(dim=(2, 3))
            cams.append(torch.relu(torch.einsum("bc,bchw->bhw", weights, features)))
        low = cams[-1]
        for cam in reversed(cams[:-1]):
            coarse = (int(low.shape[-2]), int(low.shape[-1]))
            fine = (int(cam.shape[-2]), int(cam.shape[-1]))
            low = torch.relu(local_normalization(cam, coarse) * _resize(low, fine))
        label = "+".join(t.label for t in taps)
        return self.make_explanation(upsample(low, size), indices, scores.detach(), low_res=low,
                                     layer=label)
