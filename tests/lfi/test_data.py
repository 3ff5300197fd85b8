"""ShapesDataset: deterministic, balanced, masks that are the objects, ImageFolder export."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

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


def test_the_object_is_lighter_than_its_surroundings() -> None:
    images, _, masks = ShapesDataset(60, size=64, seed=5).tensors()
    grey = images.mean(1)
    ring = (F.max_pool2d(masks[:, None].float(), 7, 1, 3)[:, 0] > 0) & ~masks
    for g, mask, around in zip(grey, masks, ring):
        assert float(g[mask].mean() - g[around].mean()) > 0.15


def test_clutter_does_not_touch_the_object() -> None:
    # The same seed draws the same object whatever the clutter's opacity: only the rest changes.
    clean = ShapesDataset(8, size=48, seed=2, clutter=20, clutter_alpha=0.0)
    busy = ShapesDataset(8, size=48, seed=2, clutter=20, clutter_alpha=1.0)
    _, labels_a, masks_a = clean.tensors()
    images, labels_b, masks_b = busy.tensors()
    assert torch.equal(masks_a, masks_b) and torch.equal(labels_a, labels_b)

    def edges(ds: ShapesDataset) -> float:
        """Share of horizontal neighbour pairs off the object with a colour jump above 0.5."""
        images, _, masks = ds.tensors()
        jump = (images[..., 1:] - images[..., :-1]).abs().sum(1) > 0.5
        keep = ~(masks[..., 1:] | masks[..., :-1])
        return float(jump[keep].float().mean())

    assert edges(clean) < 0.002 < 0.02 < edges(busy)


def test_upright_squares_and_flat_backgrounds() -> None:
    ds = ShapesDataset(8, size=48, seed=3, classes=("square", "circle"), rotate=False,
                       background="flat", clutter=0)
    images, labels, masks = ds.tensors()
    for image, label, mask in zip(images, labels.tolist(), masks):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        box = (int(ys.max() - ys.min()) + 1) * (int(xs.max() - xs.min()) + 1)
        if ds.classes[label] == "square":
            assert int(mask.sum()) == box  # axis-aligned: the mask fills its bounding box
        assert float(image[:, ~mask].std(dim=1).max()) < 0.08  # one colour plus noise (0.05)


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
