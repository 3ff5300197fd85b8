"""xcam.viz: curves of deletion / insertion results (overlays and grids: tests/test_viz_cli.py)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from tests.metrics.conftest import SmallNet
from xcam.errors import InputError, InputTypeError
from xcam.metrics import deletion
from xcam.viz import CurveLike, plot_curves


@pytest.fixture
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return SmallNet().eval()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))


@pytest.fixture
def rand_maps() -> torch.Tensor:
    return torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(4))


def test_plot_curves(net, images, rand_maps):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    d = deletion(net, images, rand_maps, None, steps=4)
    rnd = deletion(net, images, torch.rand(3, 32, 32), None, steps=4)
    ax = plot_curves({"map": d, "random": rnd}, samples=True)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("map (AUC ") and len(labels) == 2
    assert len(ax.lines) == 2 + 2 * 3
    assert ax.get_xlabel() == "fraction of pixels deleted"
    assert d.plot().get_title() == "deletion"
    with pytest.raises(InputTypeError):
        plot_curves([d])
    import matplotlib.pyplot as plt

    plt.close("all")


def test_curve_results_satisfy_the_protocol(net, images, rand_maps):
    d = deletion(net, images, rand_maps, None, steps=2)
    assert isinstance(d, CurveLike) and not isinstance(d.auc, CurveLike)


def test_compute_path_does_not_import_viz():
    import subprocess

    code = "import sys, xcam.metrics; print('xcam.viz' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- notebook ergonomics (issue 16, item 2) -------------------------------------------------------

BACKEND_SCRIPT = """
import matplotlib
matplotlib.use("svg")
import matplotlib.pyplot as plt
import torch
from xcam import viz
fig = viz.grid(torch.rand(2, 3, 16, 16), {"a": torch.rand(2, 16, 16)}, path=r"{path}")
assert fig not in [plt.figure(n) for n in plt.get_fignums()], "grid(path=) registered with pyplot"
print(matplotlib.get_backend())
"""


def test_grid_with_path_leaves_the_backend_alone(tmp_path):
    import subprocess

    path = tmp_path / "g.png"
    out = subprocess.run([sys.executable, "-c", BACKEND_SCRIPT.replace("{path}", str(path))],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "svg"  # matplotlib.use("Agg") would have switched it
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _explanation(net, x, targets=None):
    import xcam

    with pytest.warns(UserWarning):  # the automatic layer choice is announced
        return xcam.GradCAM(net)(x, targets)


def test_overlay_takes_a_pil_image_and_an_explanation(net, images):
    from PIL import Image

    import xcam

    exp = _explanation(net, images)
    photo = Image.fromarray((torch.rand(40, 50, 3) * 255).to(torch.uint8).numpy())
    out = xcam.viz.overlay(photo, exp[1])
    assert isinstance(out, Image.Image) and out.size == (50, 40)  # the photo's own size
    same = xcam.viz.overlay(photo, exp.maps[1], pil=False)
    assert same.shape == (40, 50, 3) and (same == np.asarray(out)).all()
    with pytest.raises(InputError, match=r"explanation\[i\]"):
        xcam.viz.overlay(photo, exp)  # three maps for one image


def test_explanation_repr_is_short_and_renders_as_png(net, images):
    exp = _explanation(net, images, [1, 2, 3])
    text = repr(exp)
    assert text.startswith("Explanation(method='gradcam', maps=(3, 32, 32) float32 cpu")
    assert "targets=[1, 2, 3]" in text and "scores=[" in text and "tensor(" not in text
    assert len(text) < 300
    png = exp._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
    one = exp[0]
    assert len(one) == 1 and one.targets.tolist() == [1] and torch.equal(one.maps[0], exp.maps[0])


def test_show_draws_over_the_images(net, images):
    import matplotlib.pyplot as plt

    from xcam.viz import grid as xcam_viz_grid

    exp = _explanation(net, images, [4, 0, 2])
    rows = xcam_viz_grid(images, {"gradcam": exp})
    assert [ax.get_ylabel() for ax in rows.axes[::2]] == ["target 4", "target 0", "target 2"]
    fig = exp.show(images)
    assert len(fig.axes) == 3 * 2 + 3  # image, overlay, color bar per row
    fig_alone = exp.show()
    assert len(fig_alone.axes) == 3 + 3
    plt.close("all")


def test_signed_maps_are_diverging_and_zero_is_white():
    from xcam import viz

    img = np.zeros((3, 3, 3), dtype=np.uint8)
    signed = torch.tensor([[-2.0, 0.0, 1.0]] * 3)
    out = viz.overlay(img, signed, alpha=1.0).astype(int)
    assert (out[0, 1] > 240).all()  # 0: white, whatever the range
    r, g, b = out[0, 0]
    assert b > r + 60  # negative: blue
    r, g, b = out[0, 2]
    assert r > b + 60  # positive: red, lighter than -2 (the scale is symmetric about 0)
    assert out[0, 2][1] > out[0, 0][1]
    unsigned = viz.overlay(img, signed.clamp(min=0), alpha=1.0).astype(int)
    r, g, b = unsigned[0, 1]
    assert b > r + 60  # non-negative maps keep jet: 0 is dark blue
    assert viz.is_signed(signed) and not viz.is_signed(signed.clamp(min=0))


def test_grid_shared_scale_and_colorbar(tmp_path):
    from xcam import viz

    a = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(0))
    maps = {"a": a, "b": 3 * a}
    own = viz.grid(torch.rand(1, 3, 8, 8), maps, path=tmp_path / "own.png")
    pixels = [ax.get_images()[0].get_array() for ax in own.axes[1:3]]
    assert np.allclose(pixels[0], pixels[1])  # each map on its own range: the same picture
    shared = viz.grid(torch.rand(1, 3, 8, 8), maps, path=tmp_path / "shared.png", shared_scale=True)
    pixels = [ax.get_images()[0].get_array() for ax in shared.axes[1:3]]
    assert not np.allclose(pixels[0], pixels[1])
    with_bars = viz.grid(torch.rand(1, 3, 8, 8), maps, path=tmp_path / "bars.png", colorbar=True)
    assert len(with_bars.axes) == 3 + 2


def test_metrics_take_an_explanation_and_its_targets(net, images):
    exp = _explanation(net, images, [1, 2, 3])
    given = deletion(net, images, exp, steps=4)
    explicit = deletion(net, images, exp.maps, exp.targets, steps=4)
    top = deletion(net, images, exp.maps, None, steps=4)
    assert torch.equal(given.auc, explicit.auc)
    assert not torch.equal(given.auc, top.auc)  # the explanation's targets, not the top class


def test_a_zero_score_is_announced():
    import xcam
    from tests.nets import TinyNet
    from xcam.errors import DeadEndWarning
    from xcam.targets import channel

    net = TinyNet().eval()
    with torch.no_grad():
        net.features[-1].bias[0] = -1e3  # channel 0 is off after the ReLU: its score is 0
    with pytest.warns(DeadEndWarning, match="score is exactly 0 for samples \\[0, 1\\]"):
        exp = xcam.GradCAM(net, "act")(torch.randn(2, 3, 16, 16), channel("act", 0))
    assert float(exp.maps.abs().max()) == 0.0
