"""CSV manifests: one row per box (``file,class_index,x0,y0,x1,y1``), columns mapped by name.

Read by :func:`xcam.evaluation.data.read_manifest`, which turns the rows into samples.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

from ..errors import InputError, InputTypeError, XcamError

__all__ = ["MANIFEST_COLUMNS", "Box", "ManifestError", "ManifestRows", "parse_columns", "read_rows"]

MANIFEST_COLUMNS = ("file", "class_index", "x0", "y0", "x1", "y1")
Box = tuple[float, float, float, float]


class ManifestError(XcamError, ValueError):
    """A CSV manifest lacks a column or has a row that cannot be read."""


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


def read_rows(csv_path: Path, columns: str | Mapping[str, str] | None = None) -> ManifestRows:
    """The rows of the CSV manifest ``csv_path``: files in order, one class each, their boxes.

    Raises:
        InputError: the file does not exist.
        ManifestError: a required column is missing, a box is partly empty or not a number, or
            one file has two different class indices.
    """
    mapping = {name: name for name in MANIFEST_COLUMNS}
    mapping.update(parse_columns(columns))
    try:
        handle = open(csv_path, newline="", encoding="utf-8-sig")  # Excel writes a BOM
    except FileNotFoundError:
        raise InputError(f"manifest {str(csv_path)!r} does not exist") from None
    with handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        box_cols = _box_columns(csv_path, header, mapping)
        rows = ManifestRows(csv_path, mapping, box_cols, mapping["class_index"] in header)
        for line, row in enumerate(reader, start=2):
            rows.add(line, row)
    if not rows.order:
        raise ManifestError(f"manifest {str(csv_path)!r} has no rows")
    return rows


def _box_columns(csv_path: Path, header: list[str], mapping: Mapping[str, str]) -> list[str] | None:
    """The manifest's x0, y0, x1, y1 columns, or None when it has no boxes.

    Raises:
        ManifestError: the file column is missing, some box columns are, or none are but columns
            that look like them exist (say which to use).
    """
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
        return None
    return box_cols


class ManifestRows:
    """The samples of a manifest, one row at a time: files in order, one class each, their boxes."""

    def __init__(self, csv_path: Path, mapping: Mapping[str, str], box_cols: list[str] | None,
                 has_label: bool) -> None:
        self.csv_path = csv_path
        self.mapping = mapping
        self.box_cols = box_cols
        self.has_label = has_label
        self.order: list[str] = []
        self.labels: dict[str, int | None] = {}
        self.boxes: dict[str, list[Box]] = {}

    def add(self, line: int, row: Mapping[str, str | None]) -> None:
        """Read row ``line`` of the file: its image, class and box."""
        name = (row.get(self.mapping["file"]) or "").strip()
        if not name:
            raise ManifestError(f"{self.csv_path}:{line}: empty file name")
        if name not in self.labels:
            self.order.append(name)
            self.labels[name] = None
            self.boxes[name] = []
        if self.has_label:
            self._label(line, name, (row.get(self.mapping["class_index"]) or "").strip())
        if self.box_cols is not None:
            self._box(line, name, self.box_cols, [(row.get(c) or "").strip() for c in self.box_cols])

    def _label(self, line: int, name: str, raw: str) -> None:
        if not raw:
            return
        value = _number(raw, self.mapping["class_index"], line, self.csv_path)
        if value != int(value) or value < 0:
            raise ManifestError(f"{self.csv_path}:{line}: class index {raw!r} is not an int >= 0")
        label = int(value)
        if self.labels[name] is not None and self.labels[name] != label:
            raise ManifestError(
                f"{self.csv_path}:{line}: {name!r} has class {label} here and "
                f"{self.labels[name]} on an earlier row; one image has one class"
            )
        self.labels[name] = label

    def _box(self, line: int, name: str, box_cols: list[str], cells: list[str]) -> None:
        if not any(cells):
            return
        if not all(cells):
            raise ManifestError(
                f"{self.csv_path}:{line}: box {dict(zip(box_cols, cells))} is partly empty; "
                "fill all four coordinates, or leave all four empty for an image without a box"
            )
        x0, y0, x1, y1 = (_number(v, c, line, self.csv_path) for v, c in zip(cells, box_cols))
        if x1 < x0 or y1 < y0:
            raise ManifestError(
                f"{self.csv_path}:{line}: box ({x0}, {y0}, {x1}, {y1}) has x1 < x0 or y1 < y0; "
                "boxes are (x0, y0, x1, y1), top-left corner first"
            )
        self.boxes[name].append((x0, y0, x1, y1))


