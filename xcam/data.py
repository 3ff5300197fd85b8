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
pixels of the image file, inclusive-exclusive. Other column names are mapped with ``columns=``, e.g.
``columns={"x0": "x0_227", "y0": "y0_227", "x1": "x1_227", "y1": "y1_227"}`` for
``imagenet-val-1300/annotations_227.csv`` (CLI: ``--columns x0=x0_227,y0=y0_227,...``).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .errors import InputError, InputTypeError, XcamError

__all__ = [
    "Sample",
    "LoadedImage",
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
MANIFEST_COLUMNS = ("file", "class_index", "x0", "y0", "x1", "y1")
Box = tuple[float, float, float, float]


class ManifestError(XcamError, ValueError):
    """A CSV manifest lacks a column or has a row that cannot be read."""


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
        original_size: ``(height, width)`` of the file.
    """

    pixels: Tensor
    boxes: list[list[float]]
    original_size: tuple[int, int]

    def gt_fraction(self) -> float:
        """Share of the image covered by the union of the boxes (0 without boxes)."""
        if not self.boxes:
            return 0.0
        from .metrics import boxes_to_masks

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

    def load(self, index: int, size: int | tuple[int, int] = 224) -> LoadedImage:
        """Read sample ``index`` as RGB, squash it to ``size`` (bicubic) and rescale its boxes.

        Raises:
            ImageLoadError: the file is missing or not an image.
        """
        sample = self.samples[index]
        h, w = (size, size) if isinstance(size, int) else size
        pixels, (oh, ow) = read_image(sample.path, (h, w))
        sx, sy = w / ow, h / oh
        boxes = [[b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy] for b in sample.boxes]
        return LoadedImage(pixels, boxes, (oh, ow))

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


def read_image(path: Path, size: tuple[int, int]) -> tuple[Tensor, tuple[int, int]]:
    """(3, H, W) float32 pixels in [0, 255], squashed to ``size`` with bicubic resampling, and the
    file's original ``(height, width)``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            rgb = img.convert("RGB")
    except FileNotFoundError as err:
        raise ImageLoadError(f"image {str(path)!r} does not exist") from err
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise ImageLoadError(f"image {str(path)!r} cannot be decoded ({err})") from err
    ow, oh = rgb.size
    h, w = size
    if (ow, oh) != (w, h):
        rgb = rgb.resize((w, h), Image.Resampling.BICUBIC)
    arr = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).reshape(h, w, 3)
    return arr.permute(2, 0, 1).float().contiguous(), (oh, ow)


def parse_columns(spec: str | Mapping[str, str] | None) -> dict[str, str]:
    """A column mapping from ``"x0=x0_227,y0=y0_227"`` or a dict ``{"x0": "x0_227"}``.

    Keys are the manifest's canonical names (``file, class_index, x0, y0, x1, y1``), values the
    columns of the CSV file.
    """
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        mapping = {str(k): str(v) for k, v in spec.items()}
    elif isinstance(spec, str):
        mapping = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, sep, value = part.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise InputError(
                    f"columns: {part!r} is not NAME=COLUMN; write e.g. "
                    "'x0=x0_227,y0=y0_227,x1=x1_227,y1=y1_227'"
                )
            mapping[key.strip()] = value.strip()
    else:
        raise InputTypeError(f"columns must be a dict or 'name=column,...', got {type(spec).__name__}")
    unknown = sorted(set(mapping) - set(MANIFEST_COLUMNS))
    if unknown:
        raise InputError(f"columns: unknown name(s) {unknown}; map any of {list(MANIFEST_COLUMNS)}")
    return mapping


def _number(value: str, column: str, line: int, path: Path) -> float:
    try:
        out = float(value)
    except ValueError:
        raise ManifestError(
            f"{path}:{line}: column {column!r} holds {value!r}, not a number"
        ) from None
    if out != out or out in (float("inf"), float("-inf")):
        raise ManifestError(f"{path}:{line}: column {column!r} holds {value!r}, not a finite number")
    return out


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
    mapping = {name: name for name in MANIFEST_COLUMNS}
    mapping.update(parse_columns(columns))
    base = Path(root) if root is not None else csv_path.parent
    try:
        handle = open(csv_path, newline="", encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"manifest {str(csv_path)!r} does not exist") from None
    with handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        if mapping["file"] not in header:
            raise ManifestError(
                f"manifest {str(csv_path)!r} has no column {mapping['file']!r} for the image file "
                f"(its columns: {header}); map it with columns={{'file': '<column>'}} "
                "(CLI: --columns file=<column>)"
            )
        box_cols = [mapping[k] for k in ("x0", "y0", "x1", "y1")]
        missing = [c for c in box_cols if c not in header]
        if missing and len(missing) < 4:
            raise ManifestError(
                f"manifest {str(csv_path)!r} lacks box column(s) {missing} (its columns: "
                f"{header}); map them, e.g. --columns x0=x0_227,y0=y0_227,x1=x1_227,y1=y1_227"
            )
        if len(missing) == 4:
            lookalikes = [c for c in header if c[:2].lower() in ("x0", "y0", "x1", "y1")]
            if lookalikes:
                raise ManifestError(
                    f"manifest {str(csv_path)!r} has no box columns {box_cols} but has {lookalikes}; "
                    "say which to use, e.g. columns={'x0': 'x0_227', ...} (CLI: --columns "
                    "x0=x0_227,y0=y0_227,x1=x1_227,y1=y1_227)"
                )
        has_boxes = not missing
        has_label = mapping["class_index"] in header
        order: list[str] = []
        labels: dict[str, int | None] = {}
        boxes: dict[str, list[Box]] = {}
        for line, row in enumerate(reader, start=2):
            name = (row.get(mapping["file"]) or "").strip()
            if not name:
                raise ManifestError(f"{csv_path}:{line}: empty file name")
            if name not in labels:
                order.append(name)
                labels[name] = None
                boxes[name] = []
            if has_label:
                raw = (row.get(mapping["class_index"]) or "").strip()
                if raw:
                    value = _number(raw, mapping["class_index"], line, csv_path)
                    if value != int(value) or value < 0:
                        raise ManifestError(
                            f"{csv_path}:{line}: class index {raw!r} is not an int >= 0")
                    label = int(value)
                    if labels[name] is not None and labels[name] != label:
                        raise ManifestError(
                            f"{csv_path}:{line}: {name!r} has class {label} here and "
                            f"{labels[name]} on an earlier row; one image has one class"
                        )
                    labels[name] = label
            if has_boxes:
                cells = [(row.get(c) or "").strip() for c in box_cols]
                if not any(cells):
                    continue
                if not all(cells):
                    raise ManifestError(
                        f"{csv_path}:{line}: box {dict(zip(box_cols, cells))} is partly empty; "
                        "fill all four coordinates, or leave all four empty for an image without a box"
                    )
                x0, y0, x1, y1 = (_number(v, c, line, csv_path) for v, c in zip(cells, box_cols))
                if x1 < x0 or y1 < y0:
                    raise ManifestError(
                        f"{csv_path}:{line}: box ({x0}, {y0}, {x1}, {y1}) has x1 < x0 or y1 < y0; "
                        "boxes are (x0, y0, x1, y1), top-left corner first"
                    )
                boxes[name].append((x0, y0, x1, y1))
    if not order:
        raise ManifestError(f"manifest {str(csv_path)!r} has no rows")
    samples = [Sample(name, base / name, labels[name], tuple(boxes[name])) for name in order]
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
