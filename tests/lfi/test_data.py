"""ShapesDataset: deterministic, balanced, masks that are the objects, ImageFolder export."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from xcam.errors import InputError
from xcam.lfi import SHAPES, ShapesDataset, write_image_folder


def test_samples_depend_on_seed_and_index_only() -> None:
    a, b = ShapesDataset(6, size=32, seed=3), ShapesDataset(20, size=32, seed=3)
    c = ShapesDataset(6, size=32, seed=4)
    for i in range(6):
        assert torch.equal(a[i][0], b[i][0]) and torch.equal(a[i][2], b[i][2])
        assert not torch.equal(a[i][0], c[i][0])
    assert torch.equal(a[-1][0], a[5][0])
    with pytest.raises(IndexError):
        a[6]


def test_items_types_ranges_and_balanced_labels() -> None:
    ds = ShapesDataset(12, size=40, seed=0, classes=("circle", "ring", "triangle"))
    images, labels, masks = ds.tensors()
    assert images.shape == (12, 3, 40, 40) and images.dtype == torch.float32
    assert masks.shape == (12, 40, 40) and masks.dtype == torch.bool
    assert float(images.min()) >= 0 and float(images.max()) <= 1
    assert labels.tolist() == [0, 1, 2] * 4
    assert ds.classes == ["circle", "ring", "triangle"]


def test_the_mask_is_the_object_and_its_shape_matches_the_label() -> None:
    ds = ShapesDataset(40, size=64, seed=1, classes=SHAPES[:4], clutter=20)
    images, labels, masks = ds.tensors()
    for image, label, mask in zip(images, labels.tolist(), masks):
        area = int(mask.sum())
        assert 40 < area < 0.4 * 64 * 64
        inside = image[:, mask]
        assert float((inside - inside[:, :1]).abs().max()) == 0.0  # one flat colour, drawn on top
        # Compactness: area over the squared largest distance from the centroid.
        ys, xs = torch.nonzero(mask, as_tuple=True)
        r2 = ((ys - ys.float().mean()) ** 2 + (xs - xs.float().mean()) ** 2).max()
        compactness = area / float(r2)
        name = ds.classes[label]
        if name == "circle":
            assert compactness > 2.6, compactness  # pi for a disc
        elif name == "triangle":
            assert compactness < 1.6, compactness  # 1.30 for an equilateral triangle
        else:  # square (2.0) and cross (1.98)
            assert 1.6 < compactness < 2.6, compactness
        # Crosses have concave corners: some pixels of the bounding disc's core are background.
        if name == "cross":
            cy, cx = ys.float().mean(), xs.float().mean()
            d2 = (torch.arange(64)[:, None] - cy) ** 2 + (torch.arange(64)[None] - cx) ** 2
            assert not bool(mask[d2 <= 0.6 * r2].all())


def test_clutter_is_outside_the_class_evidence() -> None:
    clean = ShapesDataset(8, size=48, seed=2, clutter=0)
    busy = ShapesDataset(8, size=48, seed=2, clutter=30)
    # Background roughness (neighbour differences outside the mask) grows with clutter.
    def roughness(ds: ShapesDataset) -> float:
        images, _, masks = ds.tensors()
        diff = (images[..., 1:] - images[..., :-1]).abs().sum(1)
        keep = ~(masks[..., 1:] | masks[..., :-1])
        return float(diff[keep].mean())
    assert roughness(busy) > 1.5 * roughness(clean)


def test_invalid_arguments() -> None:
    with pytest.raises(InputError, match="classes"):
        ShapesDataset(4, classes=("circle", "hexagon"))
    with pytest.raises(InputError, match="size"):
        ShapesDataset(4, size=8)


def test_image_folder_export(tmp_path) -> None:
    from torchvision.datasets import ImageFolder
    from torchvision.transforms.functional import pil_to_tensor

    ds = ShapesDataset(8, size=32, seed=0)
    write_image_folder(ds, tmp_path / "images", masks_root=tmp_path / "masks")
    folder = ImageFolder(str(tmp_path / "images"))
    assert folder.classes == sorted(ds.classes) and len(folder) == 8
    masks = ImageFolder(str(tmp_path / "masks"))
    assert len(masks) == 8
    # Labels agree with the data set's classes (ImageFolder sorts class names); pixels survive.
    for path, target in folder.samples:
        index = int(Path(path).stem)
        image, label, _ = ds[index]
        assert folder.classes[target] == ds.classes[label]
        stored = pil_to_tensor(folder.loader(path)).float() / 255
        assert float((stored - image).abs().max()) <= 0.5 / 255 + 1e-6
