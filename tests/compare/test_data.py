from __future__ import annotations

from pathlib import Path

import pytest
import torch

from xcam.data import ImageData, ImageLoadError, ManifestError, load_data, parse_columns, read_manifest

from .conftest import BOXES, write_images, write_manifest

SHARED = Path(__file__).parents[2].parent / "shared" / "data" / "imagenet-val-1300"


def test_manifest_groups_rows_by_file_and_keeps_boxes_labels_and_order(dataset):
    data = read_manifest(dataset / "boxes.csv")
    assert [s.key for s in data] == list(BOXES)  # order of first appearance
    assert data[0].boxes == ((4.0, 4.0, 24.0, 20.0), (30.0, 22.0, 46.0, 38.0))
    assert data[5].boxes == () and data[5].label == 1
    assert [s.label for s in data] == [0, 1, 2, 3, 4, 1]
    assert data[1].path == dataset / "im1.png"
    assert data.describe()["boxes"] == 6


def test_load_squashes_the_image_and_rescales_boxes_to_the_new_size(dataset):
    data = read_manifest(dataset / "boxes.csv")
    loaded = data.load(0, 32)  # files are 40 (H) x 48 (W): x scales by 32/48, y by 32/40
    assert loaded.pixels.shape == (3, 32, 32) and loaded.pixels.dtype == torch.float32
    assert 0 <= float(loaded.pixels.min()) and float(loaded.pixels.max()) <= 255
    assert loaded.original_size == (40, 48)
    assert loaded.boxes[1] == pytest.approx([30 * 32 / 48, 22 * 32 / 40, 46 * 32 / 48, 38 * 32 / 40])
    # union of the two rescaled boxes, rasterised inclusive-exclusive on the 32 x 32 grid
    mask = torch.zeros(32, 32, dtype=torch.bool)
    for x0, y0, x1, y1 in loaded.boxes:
        xs = torch.arange(32, dtype=torch.float64)
        mask |= ((xs[:, None] >= y0) & (xs[:, None] < y1)) & ((xs[None] >= x0) & (xs[None] < x1))
    assert loaded.gt_fraction() == pytest.approx(float(mask.float().mean()))


def test_column_mapping_from_string_or_dict(tmp_path):
    write_images(tmp_path, ["a.png"])
    path = write_manifest(tmp_path / "m.csv", ["a.png,3,1,2,10,20,99,99,99,99"],
                          header="path,cls,bx0,by0,bx1,by1,x0,y0,x1,y1")
    spec = "file=path,class_index=cls,x0=bx0,y0=by0,x1=bx1,y1=by1"
    data = read_manifest(path, columns=spec)
    assert data[0].boxes == ((1.0, 2.0, 10.0, 20.0),) and data[0].label == 3
    assert read_manifest(path, columns=parse_columns(spec))[0].boxes == data[0].boxes
    with pytest.raises(ValueError, match="NAME=COLUMN"):
        parse_columns("x0")
    with pytest.raises(ValueError, match="unknown name"):
        parse_columns({"x9": "a"})


def test_manifest_errors_name_the_line_and_the_fix(tmp_path):
    write_images(tmp_path, ["a.png"])
    with pytest.raises(ManifestError, match=r"lacks box column\(s\) \['x1'\].*--columns"):
        read_manifest(write_manifest(tmp_path / "m1.csv", ["a.png,1,1,2,3"], "file,class_index,x0,y0,y1"))
    with pytest.raises(ManifestError, match=r"m2.csv:3: box .* partly empty"):
        read_manifest(write_manifest(tmp_path / "m2.csv", ["a.png,1,1,2,3,4", "a.png,1,1,,3,4"]))
    with pytest.raises(ManifestError, match=r"m3.csv:3: 'a.png' has class 2 here and 1"):
        read_manifest(write_manifest(tmp_path / "m3.csv", ["a.png,1,1,2,3,4", "a.png,2,1,2,3,4"]))
    with pytest.raises(ManifestError, match=r"m4.csv:2: column 'y0' holds 'abc'"):
        read_manifest(write_manifest(tmp_path / "m4.csv", ["a.png,1,1,abc,3,4"]))
    with pytest.raises(ManifestError, match="x1 < x0"):
        read_manifest(write_manifest(tmp_path / "m5.csv", ["a.png,1,5,2,3,4"]))
    with pytest.raises(ManifestError, match="no column 'file'.*columns="):
        read_manifest(write_manifest(tmp_path / "m6.csv", ["a.png"], "image"))


def test_manifest_without_box_columns_has_labels_only(tmp_path):
    write_images(tmp_path, ["a.png", "b.png"])
    data = read_manifest(write_manifest(tmp_path / "m.csv", ["a.png,1", "b.png,"], "file,class_index"))
    assert [(s.label, s.boxes) for s in data] == [(1, ()), (None, ())]


def test_folder_image_folder_and_paths(tmp_path):
    write_images(tmp_path / "flat", ["b.png", "a.png"])
    flat = load_data(tmp_path / "flat")
    assert [s.key for s in flat] == ["a.png", "b.png"] and flat[0].label is None
    write_images(tmp_path / "classes" / "cat", ["x.png"])
    write_images(tmp_path / "classes" / "dog", ["y.png", "z.png"])
    folder = load_data(tmp_path / "classes")
    assert [(s.key, s.label) for s in folder] == [("cat/x.png", 0), ("dog/y.png", 1), ("dog/z.png", 1)]
    assert folder.classes == ["cat", "dog"]
    from torchvision.datasets import ImageFolder

    same = load_data(ImageFolder(str(tmp_path / "classes")))
    assert [(s.key, s.label) for s in same] == [(s.key, s.label) for s in folder]
    listed = load_data([tmp_path / "flat" / "b.png"], limit=1)
    assert isinstance(listed, ImageData) and len(listed) == 1
    assert len(load_data(tmp_path / "classes", limit=2)) == 2
    with pytest.raises(ValueError, match="does not exist"):
        load_data(tmp_path / "nope")
    with pytest.raises(ValueError, match="no image"):
        (tmp_path / "empty").mkdir()
        load_data(tmp_path / "empty")


def test_a_bad_file_raises_image_load_error(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    data = load_data([tmp_path / "bad.png", tmp_path / "missing.png"])
    with pytest.raises(ImageLoadError, match="cannot be decoded"):
        data.load(0)
    with pytest.raises(ImageLoadError, match="does not exist"):
        data.load(1)


@pytest.mark.skipif(not (SHARED / "annotations_227.csv").exists(), reason="imagenet-val-1300 absent")
def test_the_imagenet_manifest_works_as_it_is_with_a_column_mapping():
    path = SHARED / "annotations_227.csv"
    with pytest.raises(ManifestError, match="x0_227"):
        read_manifest(path)  # its box columns are x0_orig / x0_227: the error lists them
    data = load_data(path, columns="x0=x0_227,y0=y0_227,x1=x1_227,y1=y1_227")
    assert len(data) == 1300 and data.describe()["boxes"] == 1943
    first = data[0]
    assert first.key == "images/ILSVRC2012_val_00000347.JPEG" and first.label == 472
    assert len(first.boxes) == 8 and first.boxes[0] == (9.08, 105.93, 50.39, 176.76)
    loaded = data.load(0, 224)  # the JPEGs are 227 x 227: boxes scale by 224 / 227
    assert loaded.original_size == (227, 227)
    assert loaded.boxes[0] == pytest.approx([v * 224 / 227 for v in first.boxes[0]])
