"""Score-CAM (Wang et al., CVPR workshops 2020)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._checks import check_channels_last, check_positive_int, eval_mode
from ..capture import Capture, capture
from ..explanation import Explanation
from ..layers import LayerSpec
from ..outputs import OutputFn, logits
from ..postprocess import upsample
from ..registry import register_explainer
from ..targets import Target
from ._perturb import channels_last_for, run_model
from .base import CAMExplainer

__all__ = ["ScoreCAM"]


@register_explainer("scorecam")
class ScoreCAM(CAMExplainer):
    """Score-CAM: each feature map weighted by the score of the input it masks.

    Wang, Wang, Du, Yang, Zhang, Ding, Mardziel & Hu, "Score-CAM: Score-Weighted Visual Explanations
    for Convolutional Neural Networks", CVPR workshops 2020. With ``Up`` the bilinear upsampling to
    the input size and ``minmax`` per map::

        H_k = minmax( Up(F_k) )                      (a constant map gives H_k = 0)
        w_k = softmax( f(x * H_k) )[c]  [ - softmax( f(X_b) )[c] ]
        map = ReLU( sum_k w_k F_k )

    Choices, stated because the reference libraries differ:

    - The weight is the target class's softmax probability on the masked input, as in the paper
      and the authors' code. pytorch-grad-cam and torch-cam instead take a softmax *over channels*
      of the masked inputs' logits; with their target set to the log-probability
      (``log_softmax(f)[c]``) their weights become ``w_k / sum_j w_j``, the same map up to a factor,
      which is how the tests compare them.
    - The paper's baseline term ``f(X_b)`` (``X_b`` = the all-zero image) is not subtracted by
      default, as in the authors' code; ``subtract_baseline=True`` subtracts it (one more pass).
    - Masks are upsampled then normalized (the paper's order; torch-cam normalizes first).
    - For a callable or unit target the weight is that score itself (there is no softmax of it).

    Cost: one forward pass for the activations, then one pass without gradients per sample and
    feature map, in batches of at most ``batch_size``. Feature maps that are constant over space
    give an all-zero masked input; they are not run one by one: a constant-zero map contributes
    nothing, and all other constant maps share one pass of the zero image. A progress bar (tqdm)
    appears when a call runs longer than two seconds.

    Args:
        model, layer, channels, fuse: as for :class:`~xcam.methods.GradCAM`.
        batch_size: most masked images per forward pass (default 16: on the CPU small batches keep
            the activations in cache and run faster per image; raise it on a GPU).
        subtract_baseline: subtract the zero image's score from every weight.
        progress: ``True`` always shows the progress bar, ``False`` never, ``None`` after 2 s.
        channels_last: memory format of the masked batches; ``None`` (default) = channels-last for
            float32 input on the CPU, where it is faster, and the plain layout for a model that
            cannot run in it (see :class:`~xcam.methods.Occlusion`).
        output: see :class:`~xcam.methods.Explainer`.
        eigen_smooth, aug_smooth: see :class:`~xcam.methods.CAMExplainer`.
    """

    needs_gradients = False

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec | Sequence[LayerSpec] | None = None,
        batch_size: int = 16,
        subtract_baseline: bool = False,
        channels: Sequence[int] | None = None,
        progress: bool | None = None,
        channels_last: bool | None = None,
        *,
        output: OutputFn | None = None,
        eigen_smooth: bool = False,
        aug_smooth: bool = False,
        fuse: str = "mean",
    ) -> None:
        super().__init__(model, layer=layer, channels=channels, output=output, eigen_smooth=eigen_smooth,
                         aug_smooth=aug_smooth, fuse=fuse)
        self.channels_last = check_channels_last(channels_last)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.subtract_baseline = bool(subtract_baseline)
        self.progress = progress
        self._n_maps: int | None = None if channels is None else len(channels)

    def params(self) -> dict[str, Any]:
        """Hyper-parameters, recorded in every :class:`~xcam.explanation.Explanation`."""
        return {**super().params(), "batch_size": self.batch_size,
                "subtract_baseline": self.subtract_baseline}

    def forward_passes(self, batch_size: int) -> int:
        """``batch_size * (maps + 1)`` (+1 with ``subtract_baseline``).

        The number of maps is the one seen in the last call, or before any call the width of the
        last convolution or batch norm inside ``layer`` (an estimate; constant maps cost less).
        """
        n = self._n_maps
        if n is None and self._tap is not None:  # before the first call: the layer's last width
            for module in reversed(list(self._tap.module.modules())):
                n = getattr(module, "out_channels", None) or getattr(module, "num_features", None)
                if isinstance(n, int):
                    break
        return batch_size * ((n if isinstance(n, int) else 1) + 1) + int(self.subtract_baseline)

    def _scores(self, fixed: Target, output: object, cap: Capture) -> Tensor:
        """(n,) weights of a batch of masked images.

        The target class's softmax probability, or the unit's / callable's score (a callable
        receives the raw output).
        """
        classes = fixed.classes
        if classes is not None:
            out = logits(output, self.output)
            return torch.softmax(out, dim=1).gather(1, classes[:, None])[:, 0]
        return fixed.score(output, cap)

    def explain(self, inputs: Tensor, target: Target) -> Explanation:
        """Weigh each feature map by the score of the input masked with it (see the class doc)."""
        lp = self.run(inputs, target, gradients=False)
        features = self.select(lp.features)
        b, k = features.shape[:2]
        self._n_maps = k
        size = tuple(inputs.shape[-2:])
        flat = features.flatten(2)
        lo, hi = flat.amin(dim=2), flat.amax(dim=2)
        varying = hi > lo
        pairs = varying.nonzero()  # (P, 2): (sample, map), sample-major
        fixed = target.fixed(lp.indices)
        taps = fixed.taps(self.model)
        cl = channels_last_for(self.channels_last, inputs, self.model)
        weights = features.new_zeros((b, k))
        need_zero = self.subtract_baseline or bool((~varying & (hi != 0)).any())
        n_batches = -(-pairs.shape[0] // self.batch_size)
        bar = tqdm(total=n_batches, desc=f"score-cam {self._tap.label if self._tap else ''}",
                   unit="batch", disable=self.progress is False or n_batches < 2,
                   delay=0.0 if self.progress else 2.0, leave=False)
        zero: Tensor | None = None
        try:
            with torch.no_grad(), eval_mode(self.model):
                if need_zero:
                    with capture(self.model, taps, eval_mode=False) as cap:
                        output = self.model(torch.zeros_like(inputs[:1]))
                        classes = fixed.classes
                        if classes is not None:  # each sample's class on the one zero image
                            probs = torch.softmax(logits(output, self.output), dim=1)
                            zero = probs[0].gather(0, classes)
                        else:
                            zero = self._scores(fixed.resized(1), output, cap).expand(b)
                    weights = torch.where(varying, weights, zero[:, None].to(weights.dtype))
                for start in range(0, pairs.shape[0], self.batch_size):
                    samples, maps = pairs[start:start + self.batch_size].unbind(1)
                    masks = upsample(features[samples, maps], size)  # type: ignore[arg-type]
                    m_lo = masks.flatten(1).amin(dim=1)[:, None, None]
                    m_hi = masks.flatten(1).amax(dim=1)[:, None, None]
                    span = m_hi - m_lo
                    masks = torch.where(span > 0, (masks - m_lo) / torch.where(span > 0, span, 1.0), 0.0)
                    with capture(self.model, taps, eval_mode=False) as cap:
                        masked = inputs[samples] * masks[:, None].to(inputs.dtype)
                        output = run_model(self.model, masked, cl, explicit=self.channels_last is True)
                        scores = self._scores(fixed.follow(samples), output, cap)
                    weights[samples, maps] = scores.to(weights.dtype)
                    bar.update(1)
        finally:
            bar.close()
        if self.subtract_baseline:
            assert zero is not None
            weights = weights - zero[:, None].to(weights.dtype)
        return self.finish(inputs, self.combine(weights, features), lp)
