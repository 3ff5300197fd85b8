"""The :class:`Explanation` every explainer returns, and what a metric needs of an explainer.

Metrics that drive an explainer (deletion, insertion, sanity checks, robustness) take any object
that satisfies :class:`ExplainerLike`: a callable ``(inputs, targets) -> ExplanationLike`` whose
result has ``.maps``. They never import :mod:`xcam.methods`. Likewise the LFI-CAM explainer reads
any :class:`AttentionModel` (such as :class:`xcam.lfi.LFICAMNet`) without importing :mod:`xcam.lfi`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from torch import Tensor

if TYPE_CHECKING:
    from ._checks import PendingChecks

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


_CHECKED_FIELDS = frozenset({"maps", "low_res", "targets", "scores"})


@dataclass(frozen=True, repr=False)
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

    In a notebook an explanation shows itself as a picture of its maps (``_repr_png_``);
    ``repr()`` gives shapes, method, layer, targets and scores, never whole tensors.
    ``explanation[i]`` is the explanation of sample ``i``; :meth:`show` draws the maps, over the
    images when given. :func:`xcam.viz.overlay`, :func:`xcam.viz.grid` and every metric take an
    explanation where they take maps (metrics then also read its ``targets``).
    """

    maps: Tensor
    low_res: Tensor | None
    targets: Tensor | None
    scores: Tensor
    layer: str | None
    method: str
    params: dict[str, Any] = field(default_factory=dict)

    def checked_on_read(self, pending: PendingChecks | None) -> Explanation:
        """This explanation, with checks to resolve when its data is first read (None: none).

        Reading ``maps``, ``low_res``, ``targets`` or ``scores`` first waits for ``pending``
        (:class:`xcam._checks.PendingChecks`: flags computed on the device, copied without
        blocking) and raises or warns as the checks say, so a NaN map cannot be read unreported.
        """
        if pending is not None:
            pending.launch()
            self.__dict__["_pending"] = pending
        return self

    def __getattribute__(self, name: str) -> Any:
        """Resolve the pending checks before the first read of the data (see checked_on_read)."""
        if name in _CHECKED_FIELDS:
            state = object.__getattribute__(self, "__dict__")
            pending = state.get("_pending")
            if pending is not None:
                pending.resolve()
                state.pop("_pending", None)
        return object.__getattribute__(self, name)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle (or copy) the checked data, never the pending checks."""
        _ = self.maps  # resolves pending checks
        return {k: v for k, v in self.__dict__.items() if k != "_pending"}

    def __len__(self) -> int:
        """B, the number of maps."""
        return int(self.maps.shape[0])

    def normalized(self) -> Tensor:
        """Per-sample min-max normalized maps in [0, 1] (a constant map becomes 0)."""
        from .postprocess import normalize

        return normalize(self.maps)

    def __getitem__(self, index: int | slice) -> Explanation:
        """The explanation of sample ``index`` (or a slice of them): maps stay (B', H, W)."""
        if isinstance(index, bool) or not isinstance(index, (int, slice)):
            raise TypeError(f"index an Explanation with an int or a slice, got {type(index).__name__}")
        rows = slice(index, index + 1 if index != -1 else None) if isinstance(index, int) else index
        if isinstance(index, int) and not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for an Explanation of {len(self)} maps")
        return replace(
            self, maps=self.maps[rows], scores=self.scores[rows],
            low_res=None if self.low_res is None else self.low_res[rows],
            targets=None if self.targets is None else self.targets[rows],
        )

    def __repr__(self) -> str:
        """Shapes, method, layer, targets and scores; never whole tensors."""

        def short(t: Tensor, limit: int = 8) -> str:
            values = t.detach().flatten()[:limit].tolist()
            text = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in values)
            return f"[{text}{', ...' if t.numel() > limit else ''}]"

        m = self.maps
        parts = [f"method={self.method!r}", f"maps=({', '.join(map(str, m.shape))}) "
                 f"{str(m.dtype).replace('torch.', '')} {m.device}"]
        if self.layer is not None:
            parts.append(f"layer={self.layer!r}")
        if self.low_res is not None:
            parts.append(f"low_res=({', '.join(map(str, self.low_res.shape))})")
        parts.append(f"targets={short(self.targets) if self.targets is not None else None}")
        parts.append(f"scores={short(self.scores)}")
        return f"Explanation({', '.join(parts)})"

    def show(self, images: Any = None, *, colorbar: bool = True, max_images: int = 8,
             path: Any = None) -> Any:
        """Draw the maps (over ``images`` when given) with :func:`xcam.viz.grid`.

        Signed maps are drawn diverging about 0 (see :mod:`xcam.viz`). Without ``images`` the maps
        are drawn alone, each with its own color bar.

        Args:
            images: the B images explained (tensor, arrays or PIL images), or None.
            colorbar: a color bar beside each map.
            max_images: draw at most this many samples.
            path: also save the figure there (drawn on its own canvas; the backend is unchanged).

        Returns:
            The matplotlib ``Figure``.
        """
        from . import viz

        n = min(len(self), max_images)
        title = self.method + (f" @ {self.layer}" if self.layer else "")
        titles = self._row_titles(n)
        if images is None:
            return viz.show_maps(self.maps[:n], title=title, titles=titles, colorbar=colorbar,
                                 path=path)
        return viz.grid(list(images)[:n], {title: self.maps[:n]}, path=path, row_titles=titles,
                        colorbar=colorbar)

    def _row_titles(self, n: int) -> list[str]:
        scores = self.scores[:n].detach().float().tolist()
        if self.targets is None:
            return [f"score {s:.3g}" for s in scores]
        return [f"target {t}, score {s:.3g}" for t, s in zip(self.targets[:n].tolist(), scores)]

    def _repr_png_(self) -> bytes:
        """PNG of the maps (at most 8), for Jupyter; drawn on its own canvas, no pyplot."""
        import io

        from . import viz

        n = min(len(self), 8)
        fig = viz.show_maps(self.maps[:n], title=self.method, titles=self._row_titles(n),
                            colorbar=True, canvas_only=True)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=72)
        return buffer.getvalue()
