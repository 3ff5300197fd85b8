"""Data sources for comparisons: a folder of images, an ``ImageFolder``, or a CSV manifest of boxes.

Every source becomes an :class:`ImageData`: an ordered list of :class:`Sample` (a stable key, the
file, the class label if known, and ground-truth boxes in the image's own pixels), plus
:meth:`ImageData.load`, which reads one image, squashes it to the model's input size and rescales
its boxes to match.

A CSV manifest has one row per box::

    file,class_index,x0,y0,x1,y1
    images/a.jpg,281,10,20,120,200
    images/a.jpg,281,130,40,200,90      # a second box of the same image
    images/b.jpg,17,,,,                  # an image without a box (localization metrics: NaN)

``file`` is relative to the manifest's folder (or ``root=``); boxes are ``(x0, y0, x1, y1)`` in the
pixels of the image file, inclusive-exclusive, in its displayed orientation: xcam applies a file's
EXIF orientation (as viewers and annotation tools show it) before the boxes are read against it.
A manifest saved by Excel (UTF-8 with a byte-order mark) reads as any other.

:func:`load_images` reads files, PIL images, arrays and tensors into a model-ready batch plus the
matching display images. Every file is read the same way everywhere (``compare``, ``xcam
explain``): upright, RGB (grayscale, palette, CMYK, 16-bit scaled by 255 / 65535, alpha dropped);
a missing, empty, truncated or undecodable file, or a decompression bomb, raises
:class:`ImageLoadError` naming the file and the reason. Other column names are mapped with ``columns=``, e.g.
``columns={"x0": "x0_227", "y0": "y0_227", "x1": "x1_227", "y1": "y1_227"}`` for
``imagenet-val-1300/annotations_227.csv`` (CLI: ``--columns x0=x0_227,y0=y0_227,...``).
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import InputError, InputTypeError, XcamError, warn
from .manifest import MANIFEST_COLUMNS, Box, ManifestError, parse_columns, read_rows

__all__ = [
    "Sample",
    "LoadedImage",
    "LoadedImages",
    "load_images",
    "map_to_original",
    "read_image",
    "ImageData",
    "ManifestError",
    "ImageLoadError",
    "load_data",
    "read_manifest",
    "parse_columns",
    "IMAGE_EXTENSIONS",
    "MANIFEST_COLUMNS",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

class ImageLoadError(XcamError, OSError):
    """An image file is missing or cannot be decoded."""


@dataclass(frozen=True)
class Sample:
    """One image of a data set.

    Attributes:
        key: stable identifier, the path relative to the data root (used to resume runs).
        path: the image file.
        label: class index, or ``None`` when unknown.
        boxes: ground-truth boxes ``(x0, y0, x1, y1)`` in the image file's pixels; empty when none.
    """

    key: str
    path: Path
    label: int | None = None
    boxes: tuple[Box, ...] = ()


@dataclass(frozen=True)
class LoadedImage:
    """An image ready for a model.

    Attributes:
        pixels: (3, size, size) float32 in [0, 255] (squashed, aspect ratio not kept).
        boxes: the sample's boxes rescaled to ``size`` pixels.
        original_size: ``(height, width)`` of the file, upright (after its EXIF orientation).
        info: what reading did: the file's ``mode``, ``exif_orientation`` when applied,
            ``scaled`` for 16-bit images, ``dropped_boxes`` (wholly outside a center crop).
    """

    pixels: Tensor
    boxes: list[list[float]]
    original_size: tuple[int, int]
    info: dict[str, Any] = field(default_factory=dict)

    def gt_fraction(self) -> float:
        """Share of the image covered by the union of the boxes (0 without boxes)."""
        if not self.boxes:
            return 0.0
        from ..metrics import boxes_to_masks

        h, w = self.pixels.shape[-2:]
        return float(boxes_to_masks([self.boxes], (h, w)).float().mean())


@dataclass
class ImageData(Sequence[Sample]):
    """An ordered list of samples and how to read them.

    Attributes:
        samples: the images, in a stable order (file order of a manifest, sorted paths of a folder).
        root: folder the keys are relative to.
        source: what the data came from, for provenance.
        classes: class names of an ``ImageFolder`` (index = label), else ``None``.
    """

    samples: list[Sample]
    root: Path
    source: str
    classes: list[str] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        return self.samples[index]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def subset(self, limit: int | None) -> ImageData:
        """The first ``limit`` images (all when ``None``)."""
        if limit is None:
            return self
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise InputError(f"limit must be an int >= 1 or None, got {limit!r}")
        return ImageData(self.samples[:limit], self.root, self.source, self.classes,
                         {**self.info, "limit": limit})

    def load(self, index: int, size: int | tuple[int, int] = 224, preprocess: Any = None) -> LoadedImage:
        """Read sample ``index`` as upright RGB and bring it and its boxes to the model input's geometry.

        Without ``preprocess`` the image is squashed to ``size`` (bicubic). With an
        :class:`xcam.models.Preprocess` its geometry is used (``size`` is then ignored): squash,
        or resize the shorter side and crop the center; boxes are scaled, shifted by the crop and
        clipped to it, and boxes wholly outside the crop are dropped (counted in
        ``info["dropped_boxes"]``). Boxes are in the pixels of the image as displayed, that is
        after its EXIF orientation.

        Raises:
            ImageLoadError: the file is missing or cannot be decoded (the message says why).
        """
        from .models import Preprocess

        sample = self.samples[index]
        prep = preprocess if isinstance(preprocess, Preprocess) else Preprocess.named("none", size)
        rgb, info = _open_file(sample.path)
        original = (rgb.size[1], rgb.size[0])
        plan = _plan(original, prep)
        pixels = _fit_pil(rgb, plan, prep.interpolation)
        boxes, dropped = _map_boxes(sample.boxes, original, plan)
        if dropped:
            info["dropped_boxes"] = dropped
        return LoadedImage(pixels, boxes, original, info)

    def describe(self) -> dict[str, Any]:
        """Provenance: source, root, number of images, boxes and labels."""
        return {
            "source": self.source,
            "root": str(self.root),
            "images": len(self.samples),
            "boxes": sum(len(s.boxes) for s in self.samples),
            "with_label": sum(s.label is not None for s in self.samples),
            **self.info,
        }


# --------------------------------------------------------------------------------------------
# reading images: every file, PIL image, array or tensor becomes RGB uint8 (or float) pixels
# --------------------------------------------------------------------------------------------

_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError, ValueError, SyntaxError, EOFError, TypeError, IndexError, KeyError, struct.error,
    zlib.error, MemoryError,
)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def _to_rgb(img: Any, where: str) -> tuple[Any, dict[str, Any]]:
    """``img`` (a PIL image) upright (EXIF orientation applied) and in RGB, and what was done.

    16-bit grayscale (``I;16``, ``I``) is scaled by 255 / 65535, float (``F``) in [0, 1] by 255;
    palette images (with transparency too), grayscale, CMYK and the rest go through PIL's
    ``convert("RGB")``. An alpha channel is dropped: the color under it is kept.
    """
    import numpy as np
    from PIL import Image, ImageOps

    info: dict[str, Any] = {"mode": img.mode}
    try:
        orientation = int(img.getexif().get(0x0112, 1) or 1)
    except _DECODE_ERRORS:
        orientation = 1
    if orientation != 1:
        img = ImageOps.exif_transpose(img)
        info["exif_orientation"] = orientation
    mode = img.mode
    if mode == "RGB":
        return img, info
    if mode.startswith("I;16") or mode == "I" or mode == "F":
        arr = np.asarray(img).astype(np.float64)
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if mode == "F":
            if lo < 0 or hi > 255:
                raise ImageLoadError(f"{where}: float pixels span [{lo:g}, {hi:g}]; xcam reads float "
                                     "images in [0, 1] or [0, 255]; save it as 8- or 16-bit")
            factor = 255.0 if hi <= 1.0 else 1.0
        else:
            if lo < 0 or hi > 65535:
                raise ImageLoadError(f"{where}: 32-bit integer pixels span [{lo:g}, {hi:g}], beyond "
                                     "16 bits; save it as an 8- or 16-bit image")
            factor = 255.0 / 65535.0
        gray = np.clip(np.round(arr * factor), 0, 255).astype(np.uint8)
        info["scaled"] = "x255/65535" if factor < 1 else ("x255" if factor > 1 else "as is")
        return Image.fromarray(np.stack([gray] * 3, axis=-1)), info
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB"), info


def _open_file(path: Path) -> tuple[Any, dict[str, Any]]:
    """An image file as an upright RGB PIL image.

    Raises :class:`ImageLoadError` naming the file and the reason (missing, empty, not an image, truncated,
    a decompression bomb, ...).
    """
    from PIL import Image, UnidentifiedImageError

    name = str(path)
    if not path.exists():
        raise ImageLoadError(f"image {name!r} does not exist")
    if path.is_dir():
        raise ImageLoadError(f"image {name!r} is a folder, not an image file")
    if path.stat().st_size == 0:
        raise ImageLoadError(f"image {name!r} cannot be decoded: the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                return _to_rgb(img, f"image {name!r}")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageLoadError(
            f"image {name!r} refused as a possible decompression bomb: {_one_line(err)} (PIL's "
            f"limit PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}); raise that limit only "
            "for a file you trust"
        ) from err
    except UnidentifiedImageError as err:
        raise ImageLoadError(
            f"image {name!r} cannot be decoded: not an image format PIL can read (a "
            f"{path.suffix or 'file'} that holds something else?)"
        ) from err
    except FileNotFoundError as err:
        raise ImageLoadError(f"image {name!r} does not exist") from err
    except ImageLoadError:
        raise
    except _DECODE_ERRORS as err:
        raise ImageLoadError(f"image {name!r} cannot be decoded: {_one_line(err)}") from err


@dataclass(frozen=True)
class _Plan:
    """Resize the image to (rh, rw), then keep rows top:top+h and columns left:left+w."""

    rh: int
    rw: int
    top: int
    left: int
    h: int
    w: int


def _plan(original: tuple[int, int], prep: Any) -> _Plan:
    oh, ow = original
    h, w = prep.hw
    if prep.resize is None:
        return _Plan(h, w, 0, 0, h, w)
    short, long = (ow, oh) if ow <= oh else (oh, ow)
    new_short, new_long = prep.resize, int(prep.resize * long / short)
    rw, rh = (new_short, new_long) if ow <= oh else (new_long, new_short)
    if prep.crop_rounding == "round":  # torchvision
        top, left = int(round((rh - h) / 2.0)), int(round((rw - w) / 2.0))
    else:  # Hugging Face
        top, left = (rh - h) // 2, (rw - w) // 2
    return _Plan(rh, rw, top, left, h, w)


def _map_boxes(boxes: Sequence[Box], original: tuple[int, int], plan: _Plan) -> tuple[list[list[float]], int]:
    """Boxes of the original image in the pixels of the model input, clipped to it.

    Boxes that fall wholly outside the crop are dropped (their number is returned).
    """
    oh, ow = original
    sx, sy = plan.rw / ow, plan.rh / oh
    out, dropped = [], 0
    for x0, y0, x1, y1 in boxes:
        b = [min(max(x0 * sx - plan.left, 0.0), plan.w), min(max(y0 * sy - plan.top, 0.0), plan.h),
             min(max(x1 * sx - plan.left, 0.0), plan.w), min(max(y1 * sy - plan.top, 0.0), plan.h)]
        if (b[2] <= b[0] or b[3] <= b[1]) and x1 > x0 and y1 > y0:
            dropped += 1  # wholly outside the crop
            continue
        out.append(b)
    return out, dropped


def map_to_original(maps: Tensor, original_size: tuple[int, int], preprocess: Any) -> Tensor:
    """Maps of the model input, (B, H, W), in the original image's pixels, (B, oh, ow).

    The inverse of ``preprocess``'s geometry (squash, or resize then center crop): the map is put
    back where the crop took its pixels and resized (bilinear) to ``original_size``. Where the crop
    left the image out, nothing was explained: those pixels take the map's minimum.
    """
    plan = _plan(original_size, preprocess)
    if tuple(maps.shape[-2:]) != (plan.h, plan.w):
        raise InputError(f"maps are {tuple(maps.shape[-2:])}, the preprocessing gives "
                         f"{(plan.h, plan.w)}; pass the maps of inputs made with it")
    m = maps.float()[None] if maps.dim() == 2 else maps.float()
    lo = m.flatten(1).amin(dim=1)[:, None, None]
    canvas = lo.expand(m.shape[0], plan.rh, plan.rw).clone()
    canvas[:, plan.top:plan.top + plan.h, plan.left:plan.left + plan.w] = m
    out = torch.nn.functional.interpolate(canvas[:, None], size=tuple(original_size), mode="bilinear",
                                          align_corners=False)[:, 0]
    return out[0] if maps.dim() == 2 else out


def _resample(name: str) -> Any:
    from PIL import Image

    return getattr(Image.Resampling, name.upper())


def _fit_pil(img: Any, plan: _Plan, interpolation: str) -> Tensor:
    """(3, h, w) float32 pixels in [0, 255] of an RGB (uint8) or a list of 3 ``F`` images."""
    import numpy as np

    channels = img if isinstance(img, list) else [img]
    out = []
    for ch in channels:
        if ch.size != (plan.rw, plan.rh):
            ch = ch.resize((plan.rw, plan.rh), _resample(interpolation))
        if (plan.rh, plan.rw) != (plan.h, plan.w):
            ch = ch.crop((plan.left, plan.top, plan.left + plan.w, plan.top + plan.h))
        out.append(np.asarray(ch, dtype=np.float32))
    arr = np.stack(out, axis=0) if len(out) == 3 else out[0].transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(arr))


def read_image(path: Path, size: tuple[int, int]) -> tuple[Tensor, tuple[int, int]]:
    """(3, H, W) float32 pixels in [0, 255] squashed to ``size``, and the file's original size.

    Bicubic resampling; the original ``(height, width)`` is upright (after its EXIF orientation).
    """
    from .models import Preprocess

    rgb, _ = _open_file(Path(path))
    original = (rgb.size[1], rgb.size[0])
    prep = Preprocess.named("none", (int(size[0]), int(size[1])))
    return _fit_pil(rgb, _plan(original, prep), prep.interpolation), original


@dataclass(frozen=True)
class LoadedImages:
    """A batch read by :func:`load_images`; unpacks as ``inputs, images = load_images(...)``.

    Attributes:
        inputs: (B, 3, H, W) float32, the model's input (geometry and scaling of ``preprocess``).
        images: B display images, uint8 numpy (H, W, 3) RGB, the same pixels before the scaling
            (for :func:`xcam.viz.overlay`).
        names: the file path, or ``"sources[i]"`` for an in-memory image.
        original_sizes: ``(height, width)`` of each source, upright (after EXIF orientation).
        preprocess: the :class:`xcam.models.Preprocess` used.
    """

    inputs: Tensor
    images: list[Any]
    names: list[str]
    original_sizes: list[tuple[int, int]]
    preprocess: Any

    def __iter__(self) -> Iterator[Any]:
        yield self.inputs
        yield self.images

    def __len__(self) -> int:
        return len(self.images)


def _source_name(source: Any, index: int) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else f"sources[{index}]"


def _array_image(source: Any, where: str) -> tuple[Any, tuple[int, int]]:
    """An HWC (or HW) uint8 numpy array as an RGB PIL image, and its ``(height, width)``."""
    import numpy as np
    from PIL import Image

    arr = source
    if arr.dtype != np.uint8:
        raise InputTypeError(
            f"{where}: a numpy array of dtype {arr.dtype}; load_images takes HWC uint8 arrays "
            "(pixels 0..255): pass (arr * 255).round().astype(np.uint8) for pixels in [0, 1], "
            "or a CHW float tensor in [0, 1]")
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3, 4):
        raise InputError(f"{where}: a numpy array of shape {arr.shape} looks channel-first; "
                         "load_images takes (H, W, 3) arrays: pass arr.transpose(1, 2, 0)")
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (3, 4))):
        raise InputError(f"{where}: a numpy array of shape {arr.shape}; load_images takes (H, W, 3), "
                         "(H, W, 4) or (H, W) uint8 arrays")
    if 0 in arr.shape:
        raise InputError(f"{where}: a numpy array of shape {arr.shape} has no pixels")
    rgb = Image.fromarray(np.ascontiguousarray(arr)).convert("RGB")
    return rgb, (arr.shape[0], arr.shape[1])


def _tensor_image(source: Tensor, where: str) -> tuple[Any, tuple[int, int]]:
    """A CHW tensor (uint8, or float in [0, 1]) as an RGB PIL image or 3 ``F`` channel images."""
    from PIL import Image

    t = source.detach().cpu()
    if t.dim() == 3 and t.shape[-1] in (3, 4) and t.shape[0] not in (1, 3):
        raise InputError(f"{where}: a tensor of shape {tuple(t.shape)} looks channel-last; "
                         "load_images takes (C, H, W) tensors: pass t.permute(2, 0, 1)")
    if t.dim() == 2:
        t = t[None]
    if t.dim() != 3 or t.shape[0] not in (1, 3):
        raise InputError(f"{where}: a tensor of shape {tuple(source.shape)}; load_images takes "
                         "(3, H, W) or (1, H, W) tensors (a (B, 3, H, W) batch as a list of them)")
    if 0 in t.shape:
        raise InputError(f"{where}: a tensor of shape {tuple(t.shape)} has no pixels")
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    if t.dtype == torch.uint8:
        rgb = Image.fromarray(t.permute(1, 2, 0).contiguous().numpy())
        return rgb, (t.shape[1], t.shape[2])
    if not t.dtype.is_floating_point:
        raise InputTypeError(f"{where}: a tensor of dtype {t.dtype}; pass uint8 (0..255) or a "
                             "float tensor in [0, 1]")
    t = t.float()
    if not bool(torch.isfinite(t).all()):
        raise InputError(f"{where}: the tensor holds NaN or infinite values")
    lo, hi = float(t.min()), float(t.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise InputError(
            f"{where}: a float tensor with values in [{lo:.3g}, {hi:.3g}]; float images must be "
            "in [0, 1] (torchvision's to_tensor convention): divide by 255 if these are raw "
            "pixels, or pass the already-normalized batch to the model directly")
    channels = [Image.fromarray((t[c].clamp(0, 1) * 255.0).numpy()) for c in range(3)]  # mode F
    return channels, (t.shape[1], t.shape[2])


def _as_image(source: Any, where: str) -> tuple[Any, tuple[int, int]]:
    """A source as an image, and its ``(height, width)``.

    The image is an upright RGB PIL image, or 3 ``F`` channel images in [0, 255].
    """
    import numpy as np
    from PIL import Image

    if isinstance(source, (str, os.PathLike)):
        rgb, _ = _open_file(Path(source))
        return rgb, (rgb.size[1], rgb.size[0])
    if isinstance(source, Image.Image):
        try:
            source.load()
            rgb, _ = _to_rgb(source, where)
        except ImageLoadError:
            raise
        except _DECODE_ERRORS as err:
            raise ImageLoadError(f"{where}: the PIL image cannot be read ({_one_line(err)})") from err
        return rgb, (rgb.size[1], rgb.size[0])
    if isinstance(source, np.ndarray):
        return _array_image(source, where)
    if isinstance(source, Tensor):
        return _tensor_image(source, where)
    raise InputTypeError(
        f"{where}: {type(source).__name__} is not an image; load_images takes file paths, PIL "
        "images, HWC uint8 numpy arrays or CHW tensors")


def load_images(
    sources: Any,
    preprocess: Any = None,
    size: int | tuple[int, int] | None = None,
) -> LoadedImages:
    """Read images into a model-ready batch, plus the matching display images for overlays.

    ::

        weights = torchvision.models.ResNet18_Weights.DEFAULT
        batch = xcam.load_images(["cat.jpg", "dog.png"], preprocess=weights.transforms())
        x, images = batch                       # (2, 3, 224, 224) float32; 2 x (224, 224, 3) uint8
        maps = xcam.create("gradcam", model)(x).maps
        xcam.viz.overlay(images[0], maps[0])

    Every source is made upright (its EXIF orientation applied) and RGB: grayscale, palette
    (transparency included), CMYK, 16-bit (scaled by 255 / 65535, not clipped) and float images
    are converted; an alpha channel is dropped. Then the geometry of ``preprocess`` is applied
    (squash to ``size``, or resize the shorter side and crop the center) and its scaling.

    Args:
        sources: one source or a list of them: file paths, PIL images, numpy (H, W, 3) / (H, W)
            uint8 arrays, (3, H, W) / (1, H, W) tensors (uint8 in 0..255, or float in [0, 1]).
        preprocess: an :class:`xcam.models.Preprocess`, a preset name (``"imagenet"``), torchvision
            ``weights.transforms()``, a torchvision / timm ``Compose`` or a Hugging Face image
            processor (see :meth:`xcam.models.Preprocess.from_transform`). ``None``: ImageNet
            mean / std, squashed to 224, with a warning.
        size: the model input's side (or ``(height, width)``), replacing the preprocessing's.

    Returns:
        :class:`LoadedImages` (``inputs``, ``images``, ``names``, ``original_sizes``).

    Raises:
        ImageLoadError: a file is missing or cannot be decoded (the message names it and why).
        InputError, InputTypeError: a source or an argument of the wrong kind (with the fix).
    """
    from .models import Preprocess

    if preprocess is None:
        prep = Preprocess.named("imagenet", 224)
        warn("load_images: no preprocess given; using ImageNet mean / std with images squashed to "
             "224 x 224 (Preprocess.named('imagenet')); pass the model's own, e.g. "
             "preprocess=weights.transforms()")
    else:
        prep = Preprocess.from_transform(preprocess)
    if size is not None:
        prep = prep.with_size(size)
    if isinstance(sources, (str, os.PathLike, Tensor)) and not (isinstance(sources, Tensor)
                                                                and sources.dim() == 4):
        items: list[Any] = [sources]
    elif isinstance(sources, Tensor):
        items = list(sources.unbind(0))
    else:
        import numpy as np
        from PIL import Image

        if isinstance(sources, (Image.Image,)) or (isinstance(sources, np.ndarray) and sources.ndim <= 3):
            items = [sources]
        elif isinstance(sources, np.ndarray):
            items = list(sources)
        elif isinstance(sources, Sequence) or isinstance(sources, Iterator):
            items = list(sources)
        else:
            raise InputTypeError(
                f"sources must be a path, a PIL image, an array, a tensor or a list of them, got "
                f"{type(sources).__name__}")
    if not items:
        raise InputError("sources is empty; pass at least one image (a path, PIL image, array or tensor)")
    pixels, names, sizes = [], [], []
    for i, source in enumerate(items):
        name = _source_name(source, i)
        image, original = _as_image(source, name if name.startswith("sources[") else f"image {name!r}")
        plan = _plan(original, prep)
        pixels.append(_fit_pil(image, plan, prep.interpolation))
        names.append(name)
        sizes.append((int(original[0]), int(original[1])))
    batch = torch.stack(pixels)
    images = [p.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy() for p in pixels]
    return LoadedImages(prep(batch), images, names, sizes, prep)


def read_manifest(
    path: str | os.PathLike[str],
    columns: str | Mapping[str, str] | None = None,
    root: str | os.PathLike[str] | None = None,
) -> ImageData:
    """Read a CSV manifest with one row per box (see the module docstring).

    Args:
        path: the CSV file (with a header row).
        columns: mapping from the canonical names to this file's columns.
        root: folder the ``file`` column is relative to (default: the CSV's folder).

    Returns:
        :class:`ImageData`, one sample per distinct file, in order of first appearance.

    Raises:
        ManifestError: a required column is missing, a box is partly empty or not a number, or
            one file has two different class indices.
    """
    csv_path = Path(path)
    base = Path(root) if root is not None else csv_path.parent
    rows = read_rows(csv_path, columns)
    samples = [Sample(name, base / name, rows.labels[name], tuple(rows.boxes[name])) for name in rows.order]
    info = {"manifest": str(csv_path)}
    if columns:
        info["columns"] = ",".join(f"{k}={v}" for k, v in parse_columns(columns).items())
    return ImageData(samples, base, "manifest", None, info)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _from_image_folder(dataset: Any) -> ImageData:
    root = Path(dataset.root)
    samples = []
    for path, label in dataset.samples:
        p = Path(path)
        key = os.path.relpath(p, root) if p.is_relative_to(root) else str(p)
        samples.append(Sample(Path(key).as_posix(), p, int(label)))
    return ImageData(samples, root, "imagefolder", list(dataset.classes))


def load_data(
    data: Any,
    columns: str | Mapping[str, str] | None = None,
    root: str | os.PathLike[str] | None = None,
    limit: int | None = None,
) -> ImageData:
    """Turn what the caller has into :class:`ImageData`.

    Args:
        data: one of

            - a ``.csv`` manifest (one row per box, see :func:`read_manifest`);
            - a folder holding image files: every image in it, sorted, without labels;
            - a folder of class sub-folders (``ImageFolder`` layout): labels are the indices of
              the sorted sub-folder names, as in ``torchvision.datasets.ImageFolder``;
            - a ``torchvision.datasets.ImageFolder`` (or any ``DatasetFolder``) instance;
            - a list of image paths;
            - an :class:`ImageData` (returned as is, cut to ``limit``).
        columns: column mapping of a manifest (see :func:`parse_columns`).
        root: folder a manifest's file names are relative to.
        limit: keep the first ``limit`` images.
    """
    if isinstance(data, ImageData):
        out = data
    elif hasattr(data, "samples") and hasattr(data, "root") and hasattr(data, "classes"):
        out = _from_image_folder(data)
    elif isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if path.is_file() and path.suffix.lower() == ".csv":
            out = read_manifest(path, columns, root)
        elif path.is_dir():
            files = _image_files(path)
            if files:
                out = ImageData([Sample(p.name, p) for p in files], path, "folder")
            else:
                from torchvision.datasets import ImageFolder

                try:
                    out = _from_image_folder(ImageFolder(str(path)))
                except (FileNotFoundError, RuntimeError) as err:
                    raise InputError(
                        f"data folder {str(path)!r} holds no image ({', '.join(IMAGE_EXTENSIONS)}) "
                        f"and no class sub-folders with images ({err})"
                    ) from None
                out.source = "folder of classes"
        elif path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
            out = ImageData([Sample(path.name, path)], path.parent, "files")
        else:
            raise InputError(
                f"data {str(path)!r} is neither a .csv manifest, a folder nor an image file"
                + ("" if path.exists() else " (it does not exist)")
            )
    elif isinstance(data, Sequence) and data and all(isinstance(p, (str, os.PathLike)) for p in data):
        paths = [Path(p) for p in data]
        keys = [p.as_posix() for p in paths]
        if len(set(keys)) != len(keys):
            raise InputError("data lists the same image twice; every image needs a distinct path")
        out = ImageData([Sample(k, p) for k, p in zip(keys, paths)], Path("."), "files")
    else:
        raise InputTypeError(
            "data must be a folder, a .csv manifest, a torchvision ImageFolder or a list of image "
            f"paths; got {type(data).__name__}"
        )
    if not len(out):
        raise InputError(f"data {data!r} holds no image")
    return out.subset(limit)
