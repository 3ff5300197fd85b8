from __future__ import annotations

import numpy as np
import pytest
import torch

from xcam import viz
from xcam.cli import main
from xcam.errors import InputError


def test_overlay_colors_the_peak_red_and_keeps_the_image_where_alpha_is_zero():
    img = np.full((8, 8, 3), 100, dtype=np.uint8)
    m = torch.zeros(8, 8)
    m[2, 5] = 1.0
    out = viz.overlay(img, m, alpha=0.6)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    r, g, b = out[2, 5].astype(int)
    assert r > g + 30 and r > b + 30  # jet's maximum is dark red
    r0, g0, b0 = out[7, 0].astype(int)
    assert b0 > r0 + 30 and b0 > g0 + 30  # its minimum dark blue
    assert np.array_equal(viz.overlay(img, m, alpha=0.0), img)
    with pytest.raises(InputError, match="alpha"):
        viz.overlay(img, m, alpha=2)


def test_overlay_resizes_maps_and_accepts_chw_tensors():
    img = torch.rand(3, 16, 16)
    out = viz.overlay(img, torch.rand(4, 4))
    assert out.shape == (16, 16, 3)


def test_grid_writes_png(tmp_path):
    images = torch.rand(2, 3, 16, 16)
    maps = {"a": torch.rand(2, 16, 16), "b": torch.rand(2, 16, 16)}
    path = tmp_path / "g.png"
    viz.grid(images, maps, path=path, row_titles=["x", "y"])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InputError, match="1 maps for 2 images"):
        viz.grid(images, {"a": torch.rand(1, 16, 16)})


def test_cli_list_and_usage(capsys):
    assert main(["list"]) == 0
    assert "gradcam" in capsys.readouterr().out
    with pytest.raises(SystemExit) as err:
        main(["nope"])
    assert err.value.code == 2


def test_demo_runs_offline(tmp_path, capsys):
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("skimage")
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "chelsea: " in out and "cat" in out.split("chelsea: ")[1].split("\n")[0]
    assert "espresso" in out or "cup" in out
    assert (tmp_path / "demo_grid.png").stat().st_size > 10_000
