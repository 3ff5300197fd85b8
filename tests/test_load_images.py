"""xcam.load_images: every kind of source and image file reads as the pixels computed by hand.

References are written from the file formats' definitions (16-bit scaling, palette lookup, CMYK
to RGB, EXIF orientation as a numpy rotation) or taken from the library whose preprocessing is
read (torchvision, timm, Hugging Face), never from xcam itself.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import xcam
from xcam.data import ImageLoadError, load_data, load_images
from xcam.models import Preprocess

RAW = Preprocess.named("none", (20, 30))  # pixels as they are: no scaling, no resampling at 20 x 30


def _rgb(h: int = 20, w: int = 30, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _pixels(path, size=(20, 30)) -> np.ndarray:
    batch = load_images([path], preprocess=Preprocess.named("none", size))
    assert batch.inputs.shape == (1, 3, *size)
    return batch.images[0]


def test_16_bit_png_is_scaled_to_its_real_range_not_clipped(tmp_path):
    values = (np.arange(20 * 30, dtype=np.float64).reshape(20, 30) * 65535 / (20 * 30 - 1)).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    got = _pixels(tmp_path / "deep.png")
    ref = np.round(values.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert np.array_equal(got, np.stack([ref] * 3, axis=-1))
    assert (got == 255).mean() < 0.01  # before: 99.6 % of the pixels read as white
    # the model input is the same pixels through the scaling
    batch = load_images(tmp_path / "deep.png", preprocess=Preprocess.named("unit", (20, 30)))
    assert torch.allclose(batch.inputs[0, 0], torch.from_numpy(ref).float() / 255)


@pytest.mark.parametrize("orientation,rotate", [
    (3, lambda a: np.rot90(a, 2)),        # upside down
    (6, lambda a: np.rot90(a, -1)),       # to be turned 90 degrees clockwise
    (8, lambda a: np.rot90(a, 1)),        # to be turned 90 degrees counter-clockwise
    (2, lambda a: a[:, ::-1]),            # mirrored
])
def test_exif_orientation_is_applied(tmp_path, orientation, rotate):
    arr = _rgb()
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(tmp_path / "photo.png", exif=exif.tobytes())
    upright = rotate(arr)
    got = _pixels(tmp_path / "photo.png", upright.shape[:2])
    assert np.array_equal(got, upright)
    batch = load_images([tmp_path / "photo.png"], preprocess=Preprocess.named("none", 8))
    assert batch.original_sizes == [upright.shape[:2]]


def test_cmyk_palette_grayscale_and_alpha_become_rgb(tmp_path):
    rng = np.random.default_rng(1)
    # CMYK: R = (255 - C)(255 - K) / 255, and so on (PIL's conversion, no colour profile)
    cmyk = rng.integers(0, 256, (20, 30, 4), dtype=np.uint8)
    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / "cmyk.tif")
    ref = (255 - cmyk[..., :3].astype(np.float64)) * (255 - cmyk[..., 3:].astype(np.float64)) / 255
    assert np.abs(_pixels(tmp_path / "cmyk.tif").astype(np.float64) - ref).max() <= 1.0
    # palette with a transparent entry: the palette's colours, alpha dropped
    palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    index = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    pal = Image.fromarray(index, mode="P")
    pal.putpalette(palette.flatten().tolist())
    pal.save(tmp_path / "palette.png", transparency=int(index[0, 0]))
    assert "transparency" in Image.open(tmp_path / "palette.png").info
    assert np.array_equal(_pixels(tmp_path / "palette.png"), palette[index])
    # grayscale: the one channel three times
    gray = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    assert np.array_equal(_pixels(tmp_path / "gray.png"), np.stack([gray] * 3, axis=-1))
    # RGBA: the colour under the alpha is kept
    rgba = rng.integers(0, 256, (20, 30, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    assert np.array_equal(_pixels(tmp_path / "rgba.png"), rgba[..., :3])


def test_every_kind_of_source_gives_the_same_batch(tmp_path):
    arr = _rgb(37, 53)
    Image.fromarray(arr).save(tmp_path / "a.png")
    prep = Preprocess.named("imagenet", 24)
    sources = [tmp_path / "a.png", str(tmp_path / "a.png"), Image.fromarray(arr), arr,
               torch.from_numpy(arr).permute(2, 0, 1)]
    batch = load_images(sources, preprocess=prep)
    for i in range(1, len(sources)):
        assert torch.equal(batch.inputs[i], batch.inputs[0])
    x, images = batch  # unpacks as (inputs, images)
    assert x is batch.inputs and len(images) == 5 and images[0].dtype == np.uint8
    assert batch.names[:2] == [str(tmp_path / "a.png")] * 2 and batch.names[2] == "sources[2]"
    # the display images are the model input before the scaling
    mean = torch.tensor(prep.mean).view(3, 1, 1)
    std = torch.tensor(prep.std).view(3, 1, 1)
    shown = torch.from_numpy(images[0]).permute(2, 0, 1).float()
    assert torch.allclose(x[0], (shown / 255 - mean) / std, atol=1e-5)
    # a float tensor in [0, 1] is resized in float: within 1 grey level of the uint8 path
    floats = load_images(torch.from_numpy(arr).permute(2, 0, 1).float() / 255, preprocess=prep)
    assert (floats.inputs[0] - x[0]).mul(std).abs().max() * 255 < 1.5
    assert xcam.load_images is load_images


def test_torchvision_weights_transforms_and_boxes_follow_the_crop(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    arr = _rgb(300, 410, seed=3)
    Image.fromarray(arr).save(tmp_path / "wide.png")
    transform = torchvision.models.ResNet18_Weights.DEFAULT.transforms()
    batch = load_images([tmp_path / "wide.png"], preprocess=transform)
    assert torch.equal(batch.inputs[0], transform(Image.open(tmp_path / "wide.png")))  # bit for bit
    # boxes: torchvision moves them with the same resize (shorter side 256) and centre crop (224)
    (tmp_path / "m.csv").write_text("file,class_index,x0,y0,x1,y1\n"
                                    "wide.png,1,10,20,200,150\nwide.png,1,300,100,400,290\n"
                                    "wide.png,1,0,0,20,20\n")
    data = load_data(tmp_path / "m.csv")
    loaded = data.load(0, preprocess=Preprocess.from_transform(transform))
    boxes = tv_tensors.BoundingBoxes([[10, 20, 200, 150], [300, 100, 400, 290], [0, 0, 20, 20]],
                                     format="XYXY", canvas_size=(300, 410), dtype=torch.float64)
    geometry = v2.Compose([v2.Resize(256), v2.CenterCrop(224)])
    _, moved = geometry(tv_tensors.Image(torch.from_numpy(arr).permute(2, 0, 1)), boxes)
    ref = moved.tolist()
    flat = [v for box in loaded.boxes for v in box]  # the third box is outside the crop: dropped
    assert len(loaded.boxes) == 2 and flat == pytest.approx([v for box in ref[:2] for v in box], abs=1e-4)
    assert ref[2][2] == ref[2][0] and loaded.info["dropped_boxes"] == 1
    assert torch.equal(loaded.pixels, torch.from_numpy(batch.images[0]).permute(2, 0, 1).float())


def test_timm_transform_is_read_bit_for_bit(tmp_path):
    timm = pytest.importorskip("timm")
    from timm.data import create_transform, resolve_data_config

    model = timm.create_model("resnet18", pretrained=False, num_classes=3)
    transform = create_transform(**resolve_data_config({}, model=model))
    img = Image.fromarray(_rgb(260, 230, seed=4))
    batch = load_images(img, preprocess=transform)
    assert batch.preprocess.resize == 235 and batch.preprocess.interpolation == "bicubic"
    assert torch.equal(batch.inputs[0], transform(img))


@pytest.mark.parametrize("kind", ["vit", "clip", "convnext"])
def test_hugging_face_processors_are_read(kind):
    transformers = pytest.importorskip("transformers")
    processor = {
        "vit": lambda: transformers.ViTImageProcessor(),
        "clip": lambda: transformers.CLIPImageProcessor(),
        "convnext": lambda: transformers.ConvNextImageProcessor(size={"shortest_edge": 224}),
    }[kind]()
    img = Image.fromarray(_rgb(260, 330, seed=5))
    batch = load_images(img, preprocess=processor)
    ref = processor(images=img, return_tensors="pt")["pixel_values"][0]
    assert batch.inputs.shape[1:] == ref.shape
    # the processors resize in torch, xcam in PIL: at most a grey level or so, on a few pixels
    diff = (batch.inputs[0] - ref).abs() * torch.tensor(processor.image_std).view(3, 1, 1) * 255
    assert float(diff.max()) <= 1.5 and float(diff.mean()) < 0.05


def test_a_bad_file_names_the_file_and_the_reason(tmp_path):
    (tmp_path / "text.jpg").write_text("hello, I am not a JPEG")
    with pytest.raises(ImageLoadError, match=r"text\.jpg.*cannot be decoded.*not an image format"):
        load_images([tmp_path / "text.jpg"], preprocess=RAW)
