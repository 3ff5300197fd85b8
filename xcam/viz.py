"""Pictures: overlays of maps on images and grids of images x methods (matplotlib, OpenCV).

This module converts tensors to numpy at the edge; nothing in the compute path imports it. It
never changes matplotlib's global state: figures saved to a file are drawn on their own Agg canvas
(``matplotlib.use`` is never called), so plots in the same notebook keep working.

Colors. A map with negative values (occlusion, integrated gradients, gradient x input: methods
whose sign says "lowers the score") is *signed*: it is drawn with a diverging colormap
(:data:`SIGNED_COLORMAP`, blue - white - red) on a scale symmetric about 0, so that "no effect" is
white whatever the map's range. Any other map (every CAM, which ends with a ReLU) is min-max
scaled on :data:`UNSIGNED_COLORMAP` (jet). ``signed=None`` decides from the data (any value below
0, over the whole batch shown); pass ``signed=True`` / ``False`` to choose.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np
import torch
from torch import Tensor

from .errors import InputError, InputTypeError

__all__ = ["to_image", "overlay", "grid", "plot_curves", "CurveLike", "render", "is_signed",
           "show_maps",
           "SIGNED_COLORMAP", "UNSIGNED_COLORMAP"]

SIGNED_COLORMAP = "RdBu_r"
"""matplotlib colormap of signed maps: negative blue, 0 white, positive red."""
UNSIGNED_COLORMAP = "jet"
"""matplotlib colormap of non-negative maps (OpenCV's ``COLORMAP_JET`` is the same)."""

Scale = tuple[float, float]


def _pil_image_type() -> Any:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - matplotlib depends on Pillow
        return None
    return Image.Image


def to_image(image: Any) -> np.ndarray:
    """An image as float32 numpy (H, W, 3) in [0, 1].

    Accepts a PIL image, a (3, H, W) or (H, W, 3) tensor or array; uint8 arrays are divided by
    255, float inputs outside [0, 1] (normalized model inputs) are min-max scaled for display.
    """
    pil = _pil_image_type()
    if pil is not None and isinstance(image, pil):
        arr = np.asarray(image.convert("RGB"))
    elif isinstance(image, torch.Tensor):
        arr = image.detach().cpu().float().numpy()
        if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
            arr = arr.transpose(1, 2, 0)
    elif isinstance(image, np.ndarray):
        arr = image
    else:
        raise InputTypeError(
            f"image must be a PIL image, a tensor or a numpy array, got {type(image).__name__}")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3):
        raise InputError(f"image must be (H, W, 3), (3, H, W) or (H, W), got shape {arr.shape}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    arr = arr.astype(np.float32)
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    return arr


def _maps_of(saliency: Any) -> Any:
    """The maps of an :class:`~xcam.explanation.Explanation` (or anything with ``.maps``)."""
    maps = getattr(saliency, "maps", None)
    return maps if isinstance(maps, torch.Tensor) else saliency


def _raw_map(saliency: Any, size: tuple[int, int] | None) -> np.ndarray:
    """(H, W) float32 numpy, resized to ``size`` (bilinear) when given."""
    saliency = _maps_of(saliency)
    if isinstance(saliency, torch.Tensor):
        arr = saliency.detach().cpu().float().numpy()
    else:
        arr = np.asarray(saliency, dtype=np.float32)
    arr = np.squeeze(arr)
    if arr.ndim != 2:
        hint = "; pick one with explanation[i] or maps[i]" if arr.ndim == 3 else ""
        raise InputError(f"map must be (H, W), got shape {arr.shape}{hint}")
    if size is not None and arr.shape != size:
        arr = cv2.resize(arr, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return arr


def is_signed(maps: Any) -> bool:
    """Whether ``maps`` (tensor, array or Explanation) hold a negative value: drawn diverging."""
    maps = _maps_of(maps)
    if isinstance(maps, torch.Tensor):
        return bool((maps.detach() < 0).any())
    return bool((np.asarray(maps) < 0).any())


def _scale_of(arr: np.ndarray, signed: bool) -> Scale:
    if signed:
        m = float(np.abs(arr).max())
        return (-m, m)
    return (float(arr.min()), float(arr.max()))


def _normalize(arr: np.ndarray, scale: Scale) -> np.ndarray:
    lo, hi = scale
    if not hi > lo:
        return np.zeros_like(arr)
    out: np.ndarray = np.clip((arr - lo) / (hi - lo), 0.0, 1.0)
    return out


def _colorize(unit: np.ndarray, colormap: int | str) -> np.ndarray:
    """(H, W) in [0, 1] -> float32 (H, W, 3) RGB in [0, 1] with an OpenCV or matplotlib colormap."""
    if isinstance(colormap, str):
        import matplotlib

        rgba = matplotlib.colormaps[colormap](unit)
        return np.asarray(rgba[..., :3], dtype=np.float32)
    colored = cv2.applyColorMap(np.uint8(np.round(255 * unit)), colormap)
    rgb: np.ndarray = cv2.cvtColor(colored, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    return rgb


def render(
    saliency: Any, size: tuple[int, int] | None = None, *, signed: bool | None = None,
    scale: Scale | None = None, colormap: int | str | None = None,
) -> tuple[np.ndarray, Scale, int | str]:
    """A map as colors: ``(rgb (H, W, 3) float32 in [0, 1], (vmin, vmax), colormap)``.

    Args:
        saliency: (H, W) map (tensor, array, or a one-sample Explanation).
        size: ``(H, W)`` to resize to (bilinear), or None.
        signed: diverging colormap on a scale symmetric about 0; None: when the map has a
            negative value.
        scale: ``(vmin, vmax)`` shared with other maps; None: this map's own range (symmetric when
            signed).
        colormap: an OpenCV colormap constant or a matplotlib colormap name; None:
            :data:`SIGNED_COLORMAP` or :data:`UNSIGNED_COLORMAP`.
    """
    arr = _raw_map(saliency, size)
    if signed is None:
        signed = bool((arr < 0).any())
    if scale is None:
        scale = _scale_of(arr, signed)
    elif not (isinstance(scale, (tuple, list)) and len(scale) == 2 and scale[1] >= scale[0]):
        raise InputError(f"scale must be a (vmin, vmax) pair with vmin <= vmax, got {scale!r}")
    cmap = colormap if colormap is not None else (SIGNED_COLORMAP if signed else cv2.COLORMAP_JET)
    unit = _normalize(arr, (float(scale[0]), float(scale[1])))
    if signed and not scale[1] > scale[0]:
        unit = np.full_like(arr, 0.5)  # an all-zero signed map: no effect anywhere (white)
    return _colorize(unit, cmap), (float(scale[0]), float(scale[1])), cmap


def overlay(
    image: Any, saliency: Any, alpha: float = 0.5, colormap: int | str | None = None, *,
    signed: bool | None = None, scale: Scale | None = None, pil: bool | None = None,
) -> Any:
    """Blend a colored map over an image.

    Args:
        image: a PIL image, or a (3, H, W) / (H, W, 3) tensor or array (see :func:`to_image`).
        saliency: (H, W) map (tensor or array), or an :class:`~xcam.explanation.Explanation` of
            one image (``explanation[i]`` picks one of a batch); resized to the image if needed.
        alpha: weight of the colored map, in [0, 1].
        colormap: an OpenCV colormap constant or a matplotlib colormap name; default jet, or
            :data:`SIGNED_COLORMAP` for a signed map (see the module docstring).
        signed: draw the map diverging about 0; None: when it has a negative value.
        scale: ``(vmin, vmax)`` of the colors (shared across maps); None: the map's own range.
        pil: return a ``PIL.Image``; None: when ``image`` is one.

    Returns:
        uint8 (H, W, 3) RGB array, or a PIL image (``pil``).
    """
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be in [0, 1], got {alpha}")
    pil_type = _pil_image_type()
    if pil is None:
        pil = pil_type is not None and isinstance(image, pil_type)
    img = to_image(image)
    colored, _, _ = render(saliency, img.shape[:2], signed=signed, scale=scale, colormap=colormap)
    out = (1 - alpha) * img + alpha * colored
    result: np.ndarray = np.uint8(np.clip(np.round(255 * out), 0, 255))
    if pil:
        from PIL import Image

        return Image.fromarray(result)
    return result


def _figure(path: str | Path | None, figsize: tuple[float, float]) -> Any:
    """A figure: on its own Agg canvas when it is only saved, else a pyplot one (shown inline)."""
    if path is not None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize)
        FigureCanvasAgg(fig)
        return fig
    import matplotlib.pyplot as plt

    return plt.figure(figsize=figsize)


def _colorbar(fig: Any, ax: Any, scale: Scale, cmap: int | str) -> None:
    import matplotlib
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    name = cmap if isinstance(cmap, str) else UNSIGNED_COLORMAP
    mappable = ScalarMappable(norm=Normalize(*scale), cmap=matplotlib.colormaps[name])
    fig.colorbar(mappable, ax=ax, fraction=0.046, pad=0.02)


def grid(
    images: Sequence[Any] | torch.Tensor,
    maps: Mapping[str, Any],
    path: str | Path | None = None,
    row_titles: Sequence[str] | None = None,
    alpha: float = 0.5,
    *,
    shared_scale: bool = False,
    colorbar: bool = False,
    signed: bool | None = None,
    dpi: int = 100,
) -> Any:
    """A grid figure: one row per image, the image then one overlay per method.

    Args:
        images: B images ((B, 3, H, W) tensor or a sequence of images, PIL included).
        maps: method name -> (B, H, W) maps or the method's :class:`~xcam.explanation.Explanation`.
        path: save the figure there (PNG, or the format of the suffix) when given. The figure is
            then drawn on its own Agg canvas: matplotlib's backend is left as it is.
        row_titles: a title per row (e.g. the predicted class); default: the targets of the first
            Explanation among ``maps``, else ``image i``.
        alpha: opacity of the map over the image (see :func:`overlay`).
        shared_scale: one color scale for every map in the grid (all methods, all images), so
            that one color means one value everywhere; default: each map its own range. Useful
            for maps in the same units (one method's maps, or normalized maps).
        colorbar: a color bar beside each overlay (one per row with ``shared_scale``).
        signed: diverging colors about 0 (see the module docstring); None: decided per method
            from its maps (any negative value).
        dpi: resolution of the saved file.

    Returns:
        The matplotlib ``Figure``.
    """
    n = len(images)
    arrays = {name: _maps_of(m) for name, m in maps.items()}
    if row_titles is None:  # an Explanation's targets name the rows
        first = next((m for m in maps.values() if isinstance(getattr(m, "targets", None), Tensor)), None)
        if first is not None:
            row_titles = [f"target {int(t)}" for t in first.targets[:n].tolist()]
    for name, m in arrays.items():
        if len(m) != n:
            raise InputError(f"maps[{name!r}] has {len(m)} maps for {n} images")
    signs = {name: is_signed(m) if signed is None else signed for name, m in arrays.items()}
    common: Scale | None = None
    if shared_scale and arrays:
        flat = [np.asarray(m.detach().cpu().float() if isinstance(m, torch.Tensor) else m,
                           dtype=np.float32) for m in arrays.values()]
        common = _scale_of(np.concatenate([f.ravel() for f in flat]), any(signs.values()))
        signs = dict.fromkeys(signs, any(signs.values()))
    cols = 1 + len(arrays)
    fig = _figure(path, (2.4 * cols + (0.6 * cols if colorbar else 0.0), 2.4 * n))
    axes = fig.subplots(n, cols, squeeze=False)
    for i in range(n):
        img = to_image(images[i])
        axes[i][0].imshow(img)
        axes[i][0].set_ylabel(row_titles[i] if row_titles else f"image {i}", fontsize=8)
        for j, (name, m) in enumerate(arrays.items(), start=1):
            colored, scale, cmap = render(m[i], img.shape[:2], signed=signs[name], scale=common)
            axes[i][j].imshow(np.clip((1 - alpha) * img + alpha * colored, 0.0, 1.0))
            if i == 0:
                axes[i][j].set_title(name, fontsize=9)
            if colorbar and (common is None or j == cols - 1):
                _colorbar(fig, axes[i][j], scale, cmap)
        if i == 0:
            axes[i][0].set_title("image", fontsize=9)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    return fig


def show_maps(
    maps: Any, *, title: str | None = None, titles: Sequence[str] | None = None,
    colorbar: bool = True, signed: bool | None = None, path: str | Path | None = None,
    canvas_only: bool = False,
) -> Any:
    """The maps alone, side by side, each on its own scale (signed ones diverging about 0).

    Args:
        maps: (B, H, W) maps or an :class:`~xcam.explanation.Explanation`.
        title: the figure's title.
        titles: a title per map.
        colorbar: a color bar beside each map.
        signed: diverging colors; None: when any map has a negative value.
        path: save the figure there (own Agg canvas: the backend is left as it is).
        canvas_only: draw on an Agg canvas of its own even without ``path`` (no pyplot).

    Returns:
        The matplotlib ``Figure``.
    """
    arr = _maps_of(maps)
    if isinstance(arr, torch.Tensor):
        arr = arr.detach().cpu().float().numpy()
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise InputError(f"maps must be (B, H, W) or (H, W), got shape {arr.shape}")
    is_neg = bool((arr < 0).any()) if signed is None else signed
    n = arr.shape[0]
    fig = _figure(path if path is not None or not canvas_only else "", (2.6 * n + 0.4, 2.8))
    axes = fig.subplots(1, n, squeeze=False)[0]
    for k in range(n):
        colored, scale, cmap = render(arr[k], signed=is_neg)
        axes[k].imshow(colored)
        axes[k].set_xticks([])
        axes[k].set_yticks([])
        if titles is not None and k < len(titles):
            axes[k].set_title(titles[k], fontsize=8)
        if colorbar:
            _colorbar(fig, axes[k], scale, cmap)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    return fig


@runtime_checkable
class CurveLike(Protocol):
    """What :func:`plot_curves` reads of a curve result (:class:`xcam.metrics.CurveResult`)."""

    @property
    def auc(self) -> Tensor:
        """(B,) area under each curve."""

    @property
    def curves(self) -> Tensor:
        """(B, S) per-sample curves."""

    @property
    def fractions(self) -> Tensor:
        """(S,) x values in [0, 1]."""

    @property
    def kind(self) -> str:
        """``"deletion"`` or ``"insertion"``."""


def plot_curves(
    results: Any,
    ax: Any = None,
    samples: bool = False,
    title: str | None = None,
) -> Any:
    """Plot the mean deletion or insertion curve of one or several methods.

    Args:
        results: a :class:`~xcam.metrics.CurveResult` (any :class:`CurveLike`), or a mapping
            ``label -> CurveResult`` (e.g. one entry per explainer) drawn on the same axes.
            The legend shows each mean AUC.
        ax: matplotlib axes to draw on (a new figure when None).
        samples: also draw every sample's curve, thin and transparent.
        title: axes title (default: the curves' kind).

    Returns:
        The matplotlib axes.

    Example:
        >>> ax = plot_curves({"Grad-CAM": deletion(model, x, gc.maps, y),
        ...                   "random": deletion(model, x, rnd.maps, y)})
        >>> ax.figure.savefig("deletion.png")
    """
    if isinstance(results, CurveLike):
        results = {results.kind: results}
    if not isinstance(results, Mapping) or not all(
        isinstance(r, CurveLike) for r in results.values()
    ):
        raise InputTypeError(
            "results must be a CurveResult or a mapping label -> CurveResult (the output of "
            f"xcam.metrics.deletion / insertion), got {type(results).__name__}"
        )
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.5))
    kinds = set()
    for label, result in results.items():
        x = result.fractions.detach().cpu().numpy()
        curves = result.curves.detach().cpu().numpy()
        kinds.add(result.kind)
        auc = float(result.auc.nanmean())
        (line,) = ax.plot(x, curves.mean(axis=0), label=f"{label} (AUC {auc:.3f})")
        if samples:
            ax.plot(x, curves.T, color=line.get_color(), alpha=0.15, linewidth=0.7)
    ax.set_xlabel("fraction of pixels " + ("deleted" if kinds == {"deletion"} else
                                           "inserted" if kinds == {"insertion"} else "moved"))
    ax.set_ylabel("probability of the target class")
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.set_title(title if title is not None else " / ".join(sorted(kinds)))
    ax.legend(frameon=False)
    return ax
