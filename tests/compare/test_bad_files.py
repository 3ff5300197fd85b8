"""Fault injection: a folder of every kind of bad file beside good images.

``compare`` must finish, record each bad file with its reason, score the good and the convertible
images, and a resume must recompute nothing; ``xcam explain`` prints one line per bad file and
goes on. The model is handed over in train mode and must come back bit-identical.
"""

from __future__ import annotations

import io
import json
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.nets import tiny
from xcam.cli import EXIT_PARTIAL, main
from xcam.compare import compare
from xcam.models import Preprocess

PREP = Preprocess.named("unit", 32)
GOOD = ("good1.png", "good2.jpg", "good3.png")
# file -> words its recorded error must hold
BAD = {
    "bomb.png": "decompression bomb",
    "bomb_warning.png": "decompression bomb",
    "empty.jpg": "empty (0 bytes)",
    "text.jpg": "not an image format",
    "truncated.png": "truncated",
    "truncated.jpg": "cannot be decoded",
}
CONVERTED = ("cmyk.jpg", "palette.png", "gray.png", "exif.jpg", "sixteen.png", "rgba.png")


def _png_with_header(width: int, height: int) -> bytes:
    """A 1 x 1 PNG whose IHDR claims ``width`` x ``height`` (CRC fixed, so PIL trusts it)."""
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    assert data[12:16] == b"IHDR"
    ihdr = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr) & 0xFFFFFFFF)
    return bytes(data)


def write_bad_folder(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    def pixels(h: int = 40, w: int = 48) -> np.ndarray:
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        arr[8:30, 10:40] //= 3
        return arr

    for name in GOOD:
        Image.fromarray(pixels()).save(folder / name, quality=95)
    (folder / "bomb.png").write_bytes(_png_with_header(20000, 20000))        # > 2x the limit: error
    (folder / "bomb_warning.png").write_bytes(_png_with_header(10000, 10000))  # > the limit: warning
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("this is a text file that ends in .jpg\n")
    full = io.BytesIO()
    Image.fromarray(pixels()).save(full, format="PNG")
    (folder / "truncated.png").write_bytes(full.getvalue()[: len(full.getvalue()) // 2])
    full = io.BytesIO()
    Image.fromarray(pixels()).save(full, format="JPEG")
    (folder / "truncated.jpg").write_bytes(full.getvalue()[:200])
    Image.fromarray(rng.integers(0, 256, (40, 48, 4), dtype=np.uint8), mode="CMYK").save(folder / "cmyk.jpg")
    pal = Image.fromarray(rng.integers(0, 16, (40, 48), dtype=np.uint8), mode="P")
    pal.putpalette(rng.integers(0, 256, 48).tolist())
    pal.save(folder / "palette.png", transparency=3)
    Image.fromarray(pixels()[..., 0]).save(folder / "gray.png")
    img = Image.fromarray(pixels(48, 40))
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(folder / "exif.jpg", exif=exif.tobytes())
    Image.fromarray((rng.integers(0, 65536, (40, 48))).astype(np.uint16)).save(folder / "sixteen.png")
    Image.fromarray(rng.integers(0, 256, (40, 48, 4), dtype=np.uint8)).save(folder / "rgba.png")


def _state(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], list[bool]]:
    return ({k: v.clone() for k, v in model.state_dict().items()}, [m.training for m in model.modules()])


def test_compare_records_every_bad_file_goes_on_and_resumes_without_recomputing(tmp_path):
    data = tmp_path / "data"
    write_bad_folder(data)
    model = tiny().train()  # handed over in train mode: batch norm would update its buffers
    model.features[4].eval()  # a mixed state comes back mixed
    before, flags = _state(model)
    out = tmp_path / "out"
    kw = dict(preprocess=PREP, method_kwargs={"gradcam": {"layer": "features"}}, controls=False,
              metric_kwargs={"deletion": {"steps": 4}}, out=out, report=False)
    with pytest.warns(UserWarning, match=f"{len(BAD)} image.*failed and were skipped"):
        result = compare(model, data, ["gradcam"], ["deletion"], **kw)
    errors = {e["image"]: e["error"] for e in result.errors()}
    assert set(errors) == set(BAD)
    for name, words in BAD.items():
        assert words in errors[name] and name in errors[name], errors[name]
    assert "ImageLoadError" in errors["bomb.png"] and "Traceback" not in "".join(errors.values())
    scored = {r["image"]: r["value"] for r in result.table()}
    assert set(scored) == set(GOOD) | set(CONVERTED)
    assert all(math.isfinite(v) for v in scored.values())
    by_name = {img["image"]: img for img in result.images}
    assert by_name["exif.jpg"]["exif_orientation"] == 6
    assert by_name["exif.jpg"]["original_size"] == [40, 48]  # stored 48 x 40, shown upright
    # the model is as it came: every parameter and buffer bit for bit, every flag
    after, flags_after = _state(model)
    assert flags_after == flags
    assert all(torch.equal(before[k], after[k]) for k in before)

    # resume: nothing is recomputed, nothing appended, no bad file retried
    records = out / "records.jsonl"
    lines_before = records.read_text().count("\n")
    calls = []
    handle = model.register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        with pytest.warns(UserWarning, match="failed and were skipped"):
            again = compare(model, data, ["gradcam"], ["deletion"], **kw)
    finally:
        handle.remove()
    assert calls == [] and records.read_text().count("\n") == lines_before
    assert json.dumps(again.table()) == json.dumps(result.table())


def test_explain_prints_one_line_per_bad_file_and_writes_the_rest(tmp_path, capsys):
    data = tmp_path / "data"
    write_bad_folder(data)
    names = [*GOOD[:1], *BAD, *CONVERTED[:2]]
    code = main(["explain", *[str(data / n) for n in names], "--model", "tests.nets:tiny",
                 "--image-size", "32", "--preprocess", "unit", "--methods", "gradcam", "--layer",
                 "features", "--out", str(tmp_path / "maps"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == EXIT_PARTIAL and "Traceback" not in err
    skipped = [line for line in err.splitlines() if line.startswith("xcam: skipped")]
    assert len(skipped) == len(BAD)
    for line, name in zip(skipped, BAD):
        assert name in line and BAD[name] in line
    written = sorted(p.name for p in (tmp_path / "maps").iterdir())
    stems = sorted(f"{Path(n).stem}_gradcam" for n in (*GOOD[:1], *CONVERTED[:2]))
    # an overlay and the raw map per readable image, and one manifest for the run
    assert written == sorted([*(s + ".png" for s in stems), *(s + ".npy" for s in stems), "manifest.json"])


def test_compare_leaves_a_train_mode_model_bit_identical(tmp_path, dataset):
    """Every metric family and the sanity check, on a model handed over in train mode."""
    model = tiny().train()
    before, flags = _state(model)
    grads = [p.grad for p in model.parameters()]
    result = compare(model, dataset / "boxes.csv", ["gradcam", "scorecam"],
                     ["pointing_game", "max_box_acc", "deletion", "average_drop",
                      "model_parameter_randomization"], preprocess=PREP, limit=3, sanity_images=2,
                     method_kwargs={"gradcam": {"layer": "features"}, "scorecam": {"layer": "features"}},
                     metric_kwargs={"deletion": {"steps": 4}})
    assert len(result.table()) == 3 * 6 * 5 and not result.errors()  # 2 methods + 4 controls
    after, flags_after = _state(model)
    assert flags_after == flags and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [p.grad for p in model.parameters()] == grads  # no gradient left on the parameters
