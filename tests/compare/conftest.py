from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.nets import tiny

# 6 images of 40 x 48 (H x W); boxes in the files' pixels. im0 has two boxes, im5 none.
BOXES = {
    "im0.png": [(4, 4, 24, 20), (30, 22, 46, 38)],
    "im1.png": [(10, 8, 40, 32)],
    "im2.png": [(0, 0, 16, 16)],
    "im3.png": [(20, 10, 48, 40)],
    "im4.png": [(12, 12, 36, 28)],
    "im5.png": [],
}
LABELS = {"im0.png": 0, "im1.png": 1, "im2.png": 2, "im3.png": 3, "im4.png": 4, "im5.png": 1}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a shared 2-core machine OpenMP spinning costs 100x on tiny models."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_images(folder: Path, names=tuple(BOXES), seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
        pixels[8:30, 10:40] //= 3  # a darker block, so that maps have some structure
        Image.fromarray(pixels).save(folder / name)


def write_manifest(path: Path, rows: list[str], header: str = "file,class_index,x0,y0,x1,y1") -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture
def dataset(tmp_path) -> Path:
    """A folder with 6 images and ``boxes.csv`` (one row per box, im5 without a box)."""
    folder = tmp_path / "data"
    write_images(folder)
    rows = []
    for name, boxes in BOXES.items():
        if not boxes:
            rows.append(f"{name},{LABELS[name]},,,,")
        for b in boxes:
            rows.append(f"{name},{LABELS[name]}," + ",".join(str(v) for v in b))
    write_manifest(folder / "boxes.csv", rows)
    return folder


@pytest.fixture
def model() -> torch.nn.Module:
    return tiny()
