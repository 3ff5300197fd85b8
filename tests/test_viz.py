"""xcam.viz: curves of deletion / insertion results (overlays and grids: tests/test_viz_cli.py)."""

from __future__ import annotations

import sys

import pytest
import torch

from tests.metrics.conftest import SmallNet
from xcam.errors import InputTypeError
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
