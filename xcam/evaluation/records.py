"""The run folder: JSON-lines records (numbers only), thumbnails as PNG files, resume checks.

One JSON line per image, per (image, method) and per (method, sample metric) is appended to
``records.jsonl`` (``records.rank{r}.jsonl`` per process under torchrun) and flushed. Thumbnails
and overlays are PNG files under ``thumbnails/`` and ``overlays/`` beside the records; a record
holds their path relative to the run folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import warn
from .data import ImageData
from .report import LEDGER, OUTPUT_FILES, foreign_outputs, output_files, read_ledger

__all__ = ["RECORD_FILE", "FORMAT", "Store", "Done", "save_thumbnail"]

#: record layout; 3: thumbnails and overlays are PNG files beside the records (paths, not base64)
FORMAT = 3
#: the folders of the PNG files a run writes beside its records
PICTURE_FOLDERS = ("thumbnails", "overlays")

RECORD_FILE = re.compile(r"records(\.rank[0-9]+)?\.jsonl")


def record_files(folder: Path) -> list[Path]:
    """The run's own record files in ``folder`` (exactly :data:`RECORD_FILE`), sorted."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and RECORD_FILE.fullmatch(p.name))


_REQUIRED: dict[str, tuple[dict[str, type], dict[str, type]]] = {
    # kind -> (keys of every record, keys of a record with status "ok")
    "image": ({"image": str, "status": str}, {"target": int}),
    "item": ({"image": str, "method": str, "status": str}, {"scores": dict}),
    "sanity": ({"method": str, "metric": str, "status": str}, {"images": list, "per_image": list}),
}


def valid_record(rec: Any) -> bool:
    """A record of this format: a dict with a known ``kind`` and the keys the tables read."""
    if not isinstance(rec, dict) or rec.get("kind") not in _REQUIRED:
        return False
    always, when_ok = _REQUIRED[rec["kind"]]
    if any(not isinstance(rec.get(k), t) for k, t in always.items()):
        return False
    if rec["status"] == "ok":
        if any(not isinstance(rec.get(k), t) or isinstance(rec.get(k), bool) for k, t in when_ok.items()):
            return False
        if rec["kind"] == "item" and not all(isinstance(rec.get(k, {}), dict) for k in ("curves", "parts")):
            return False
    return True


class Store:
    """The run's record files in ``out`` (:data:`RECORD_FILE`); this process appends to its own."""

    def __init__(self, out: Path | None, rank: int, world: int) -> None:
        self.out = out
        self.path = None if out is None else out / (
            "records.jsonl" if world == 1 else f"records.rank{rank}.jsonl")
        self._handle: Any = None

    def read_all(self) -> list[dict[str, Any]]:
        """Every valid record in every record file of the folder (any rank's); torn lines skipped."""
        if self.out is None or not self.out.exists():
            return []
        records = []
        for path in record_files(self.out):
            torn = bad = 0
            with open(path, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    if not line.endswith("\n"):
                        torn += 1  # the last line of a killed run: incomplete, redone
                        break
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        rec = None
                    if not valid_record(rec):
                        bad += 1
                        continue
                    records.append(rec)
            if torn:
                warn(f"xcam.compare: {path} ends with a half-written record (a run stopped while "
                     "writing it); it is skipped and its work redone")
            if bad:
                warn(f"xcam.compare: {path} holds {bad} record(s) that are not JSON or lack keys of "
                     f"this xcam's format (an older or damaged file); they are skipped and their work "
                     "redone (pass overwrite=True to start the folder again)")
        return records

    def open(self) -> None:
        """Open this process's file for appending, cutting a half-written last line."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            data = self.path.read_bytes()
            cut = data.rfind(b"\n") + 1
            if cut != len(data):  # drop a partial last line so that the next record starts clean
                with open(self.path, "r+b") as handle:
                    handle.truncate(cut)
        self._handle = open(self.path, "a", encoding="utf-8")

    def append(self, record: dict[str, Any]) -> None:
        """Append one record and flush it to disk."""
        if self._handle is None:
            return
        self._handle.write(json.dumps(record, allow_nan=True) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        """Close this process's file."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None


@dataclass
class Done:
    """The records of the run so far: per image, per (image, method), per (method, metric) sample."""

    images: dict[int, dict[str, Any]] = field(default_factory=dict)
    items: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    sanity: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def read(cls, store: Store, dataset: ImageData, spec: Mapping[str, Any]) -> Done:
        """The records in the store's files of the images in ``dataset`` and the methods in ``spec``.

        A successful record wins over a failed one of the same work.
        """
        done = cls()
        keys = {s.key: i for i, s in enumerate(dataset)}
        for rec in store.read_all():
            kind = rec.get("kind")
            if kind == "sanity":
                if rec.get("method") in spec:
                    done.sanity.setdefault((rec["method"], str(rec.get("metric"))), rec)
                continue
            if rec.get("image") not in keys:
                continue
            rec["index"] = keys[rec["image"]]
            if kind == "image":
                keep_record(done.images, rec["index"], rec)
            elif kind == "item" and rec.get("method") in spec:
                keep_record(done.items, (rec["index"], rec["method"]), rec)
        return done


def keep_record(records: dict[Any, dict[str, Any]], key: Any, rec: dict[str, Any]) -> None:
    """Store ``rec`` under ``key`` unless a record is there already that is not a failure."""
    prev = records.get(key)
    if prev is None or (prev.get("status") != "ok" and rec.get("status") == "ok"):
        records[key] = rec


def check_run_folder(folder: Path, fingerprint: dict[str, Any], overwrite: bool,
                      report: bool) -> tuple[str, str] | None:
    """Start ``folder`` or check that it holds a run with the same settings.

    Returns ``(kind, message)`` of an error (kind ``"resume"`` or ``"folder"``) or None.

    The folder is compare's alone: its record files (:data:`RECORD_FILE`), ``run.json`` and the
    outputs listed in ``xcam-outputs.json``. Nothing else in it is read, deleted or replaced;
    ``overwrite`` deletes only compare's own files and lets the outputs replace files of the same
    names.
    """
    if folder.exists() and not folder.is_dir():
        return ("folder", f"out {str(folder)!r} is a file, not a folder; pass a folder (it is created "
                          "when missing)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return ("folder", f"out {str(folder)!r} cannot be created ({err}); pass a folder")
    run_file = folder / "run.json"
    ours = False
    if run_file.is_file():
        try:
            ours = isinstance(json.loads(run_file.read_text(encoding="utf-8")), dict)
        except (ValueError, OSError):
            ours = False
    if overwrite:
        clear_run(folder)
    else:
        records = record_files(folder)
        if records and not ours:
            return ("folder", f"out {str(folder)!r} holds {records[0].name} but no run.json of a compare "
                              "run: xcam did not write it and will not add to it; pass overwrite=True "
                              "(CLI: --overwrite) to replace it, or another output folder")
        foreign = foreign_outputs(folder, output_files(report))
        if foreign:
            return ("folder", f"out: {str(foreign[0])!r} exists and was not written by xcam (or was "
                              "changed since); xcam will not replace it: pass overwrite=True (CLI: "
                              "--overwrite) to replace it, or another output folder")
    if run_file.exists():
        try:
            previous = json.loads(run_file.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            previous = None
        if isinstance(previous, dict):
            mismatch = settings_mismatch(folder, previous, fingerprint)
            if mismatch:
                return ("resume", mismatch)
            old = previous.get("methods", {})
            fingerprint = {**fingerprint, "methods": {**(old if isinstance(old, dict) else {}),
                                                      **fingerprint["methods"]}}
    tmp = run_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(jsonable(fingerprint), indent=2))
    os.replace(tmp, run_file)
    return None


def clear_run(folder: Path) -> None:
    """Delete compare's own files in ``folder``: records, pictures, ``run.json``, the ledger, its outputs."""
    ledger = read_ledger(folder) or {}
    for path in record_files(folder):
        path.unlink()
    for sub in PICTURE_FOLDERS:
        if (folder / sub).is_dir():
            for png in (folder / sub).glob("*.png"):
                png.unlink()
    for name in ledger:
        if name in OUTPUT_FILES and (folder / name).is_file():
            (folder / name).unlink()
    for path in (folder / "run.json", folder / LEDGER):
        if path.is_file():
            path.unlink()


def settings_mismatch(folder: Path, previous: dict[str, Any], fingerprint: dict[str, Any]) -> str | None:
    """Why the run in ``folder`` (its ``run.json``: ``previous``) cannot be resumed now, or None.

    Every setting must be the same; a method label that both runs have must have the same settings
    (new labels may be added to a run).
    """
    for key in fingerprint:
        if key == "methods":
            continue
        if previous.get(key) != jsonable(fingerprint[key]):
            return (f"{folder} holds results computed with another {key} "
                    f"({previous.get(key)!r}, now {jsonable(fingerprint[key])!r}); pass "
                    "overwrite=True (CLI: --overwrite) to start again, or another output folder")
    old = previous.get("methods", {})
    if not isinstance(old, dict):
        old = {}
    for label, entry in fingerprint["methods"].items():
        if label in old and old[label] != jsonable(entry):
            return (f"{folder} holds results of method {label!r} computed with "
                    f"other settings ({old[label]!r}, now {entry!r}); pass overwrite=True "
                    "(--overwrite), another output folder, or another label")
    return None


def jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Tensor):
        return value.tolist() if value.numel() <= 16 else f"Tensor{tuple(value.shape)}"
    return repr(value)


def model_fingerprint(model: nn.Module) -> str:
    """A cheap identity of the weights: shapes and sums of every parameter and buffer."""
    h = hashlib.sha1()
    with torch.no_grad():
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            h.update(f"{name}{tuple(t.shape)}".encode())
            if t.is_floating_point():
                h.update(f"{float(t.double().sum()):.9e}{float(t.double().abs().sum()):.9e}".encode())
    return h.hexdigest()[:16]



def save_thumbnail(out: Path, relative: str, pixels: Tensor, size: int,
                   saliency: Tensor | None = None) -> str:
    """Write the image (``pixels`` (3, H, W) in [0, 255]) or a map's overlay on it as a PNG.

    Args:
        out: the run folder.
        relative: the file's path inside ``out`` (e.g. ``"thumbnails/000003.png"``).
        pixels: the image.
        size: the thumbnail's side in pixels.
        saliency: a (H, W) map to overlay, or None for the image itself.

    Returns:
        ``relative``, for the record.
    """
    import cv2
    import numpy as np

    full = pixels.detach().cpu().permute(1, 2, 0).clamp(0, 255).numpy().astype(np.uint8)
    img = cv2.resize(full, (size, size), interpolation=cv2.INTER_AREA)
    if saliency is not None:
        from ..viz import overlay

        m = cv2.resize(saliency.detach().cpu().float().numpy(), (size, size), interpolation=cv2.INTER_AREA)
        img = overlay(img, m, alpha=0.5)
    path = out / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 RGB array
        raise OSError(f"could not encode {relative} as PNG")
    tmp = path.with_suffix(".png.tmp")
    tmp.write_bytes(buf.tobytes())
    os.replace(tmp, path)
    return relative


def picture_name(label: str) -> str:
    """A file-name-safe form of a method label."""
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", label)
