"""Migration aids: the peers' names (pytorch-grad-cam, torch-cam, captum, Quantus) work in xcam."""

from __future__ import annotations

import pytest
import torch

import xcam
from tests.nets import TinyNet
from xcam.errors import InputError
from xcam.registry import EXPLAINERS, METRICS, squash

PEER_NAMES = {
    # pytorch-grad-cam classes and its cam.py method names
    "GradCAM": "gradcam", "HiResCAM": "hirescam", "AblationCAM": "ablationcam", "XGradCAM": "xgradcam",
    "GradCAMPlusPlus": "gradcampp", "gradcam++": "gradcampp", "ScoreCAM": "scorecam",
    "scorecam": "scorecam", "LayerCAM": "layercam", "EigenCAM": "eigencam", "ShapleyCAM": "shapleycam",
    # torch-cam classes
    "CAM": "cam", "GradCAMpp": "gradcampp", "SmoothGradCAMpp": "smoothgradcampp",
    "gradcampp": "gradcampp",
    # captum classes
    "Saliency": "saliency", "IntegratedGradients": "integrated_gradients",
    "GradientShap": "gradient_shap", "Occlusion": "occlusion", "LayerGradCam": "gradcam",
    # spellings of xcam's own names
    "Grad-CAM++": "gradcampp", "Grad-CAM": "gradcam", "Score-CAM": "scorecam",
    "SmoothGradCAMPlusPlus": "smoothgradcampp", "InputGradient": "gradient", "BlankMap": "blank",
    "integrated-gradients": "integrated_gradients", "LFI-CAM": "lficam",
}


@pytest.mark.parametrize("peer", sorted(PEER_NAMES))
def test_peer_names_resolve(peer):
    assert EXPLAINERS.canonical(peer) == PEER_NAMES[peer]
    assert EXPLAINERS.get(peer) is EXPLAINERS.get(PEER_NAMES[peer])
    assert peer in EXPLAINERS


def test_create_accepts_aliases_and_names_the_canonical_method():
    net = TinyNet()
    explainer = xcam.create("gradcam++", net, layer="features")
    assert type(explainer) is xcam.GradCAMPlusPlus and explainer.name == "gradcampp"
    assert type(xcam.create("GradCAMpp", net)) is xcam.GradCAMPlusPlus
    assert type(xcam.create("XGradCAM", net)) is xcam.XGradCAM


def test_aliases_are_not_listed():
    assert "gradcam++" not in xcam.list_explainers()
    assert all(name == name.lower() for name in xcam.list_explainers())


def test_quantus_metric_names_resolve():
    assert METRICS.canonical("PointingGame") == "pointing_game"
    assert METRICS.canonical("RelevanceMassAccuracy") == "relevance_mass"
    assert METRICS.canonical("ModelParameterRandomisation") == "model_parameter_randomization"
    assert METRICS.canonical("MaxSensitivity") == "max_sensitivity"
    assert METRICS.canonical("Sparseness") == "sparseness"


@pytest.mark.parametrize("typo, suggestion", [("gradcma", "gradcam"), ("grdcampp", "gradcampp"),
                                              ("Score-CMA", "scorecam"), ("xgradcma", "xgradcam"),
                                              ("GradCAMPlusPlu", "gradcampp")])
def test_did_you_mean_suggests_the_registered_name(typo, suggestion):
    with pytest.raises(InputError, match=f"did you mean '{suggestion}'"):
        EXPLAINERS.get(typo)


def test_peer_methods_xcam_lacks_say_what_to_use():
    with pytest.raises(InputError, match=r"targets=xcam.targets.finer"):
        xcam.create("FinerCAM", TinyNet())
    with pytest.raises(InputError, match="not implemented"):
        xcam.create("FullGrad", TinyNet())
    with pytest.raises(InputError, match="not implemented"):
        xcam.create("RandomCAM", TinyNet())


def test_squash():
    assert squash("Grad-CAM++") == squash("GradCAMPlusPlus") == squash("grad_cam_pp") == "gradcampp"


# ---- layer=[...]: several layers fused, as pytorch-grad-cam and torch-cam do ------------------------

def _resnet():
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=5).eval()


def test_layer_list_mean_equals_pytorch_grad_cam_target_layers():
    """pytorch-grad-cam's target_layers=[layer3, layer4]: per-layer min-max, resize, mean, min-max."""
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    net = _resnet()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    targets = [1, 3]
    ours = xcam.GradCAM(net, layer=[net.layer3, net.layer4])(x, targets)
    with pgc.GradCAM(model=net, target_layers=[net.layer3, net.layer4]) as cam:
        theirs = torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in targets]))
    assert ours.maps.shape == theirs.shape == (2, 64, 64)
    assert float(ours.maps.std()) > 0.1  # not a degenerate case
    # equal up to pytorch-grad-cam's 1e-7 in its min-max denominators and float32 resizing
    torch.testing.assert_close(ours.maps, theirs, atol=2e-4, rtol=0)
    assert ours.layer == "layer3+layer4" and ours.low_res is None
    assert ours.params["layer"] == ["layer3", "layer4"] and ours.params["fuse"] == "mean"


def test_layer_list_max_is_torch_cam_fuse_cams():
    """torch-cam's fuse_cams: the maximum of the per-layer normalized maps (here at input size)."""
    from xcam.postprocess import normalize, upsample

    net = _resnet()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    fused = xcam.GradCAM(net, layer=["layer3", "layer4"], fuse="max")(x, 2)
    per_layer = [xcam.GradCAM(net, layer=name)(x, 2) for name in ("layer3", "layer4")]
    expected = torch.maximum(*[upsample(normalize(e.low_res), (64, 64)) for e in per_layer])
    torch.testing.assert_close(fused.maps, expected)
    one = xcam.GradCAM(net, layer=["layer4"])(x, 2)  # a one-element list is that layer
    torch.testing.assert_close(one.maps, per_layer[1].maps)
    with pytest.raises(InputError, match="fuse must be one of"):
        xcam.GradCAM(net, layer=["layer3", "layer4"], fuse="sum")
    with pytest.raises(InputError, match="empty list"):
        xcam.GradCAM(net, layer=[])


# ---- xcam explain: overlays at the photo's size with a title, raw maps, a manifest ------------------

def test_cli_explain_writes_photo_sized_titled_overlays_raw_maps_and_a_manifest(tmp_path, capsys):
    import json

    import numpy as np
    from PIL import Image

    from tests.nets import tiny
    from xcam.cli import EXIT_OK, main
    from xcam.models import Preprocess

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (120, 200, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    out = tmp_path / "maps"
    code = main(["explain", str(tmp_path / "photo.png"), "--model", "tests.nets:tiny", "--image-size", "32",
                 "--preprocess", "unit", "--methods", "Grad-CAM++,gradcam", "--layer", "features",
                 "--out", str(out), "--no-progress"])
    assert code == EXIT_OK
    capsys.readouterr()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["versions"]["xcam"] == xcam.__version__ and "torch" in manifest["versions"]
    assert manifest["settings"]["model"] == "tests.nets:tiny" and manifest["settings"]["alpha"] == 0.5
    assert set(manifest["methods"]) == {"gradcampp", "gradcam"}  # registered names
    assert manifest["methods"]["gradcam"]["params"]["layer"] == "features"
    record = manifest["images"][0]
    assert record["original_size"] == [120, 200] and record["class_name"] == f"class {record['target']}"
    written = record["outputs"]["gradcam"]
    assert written == {"overlay": "photo_gradcam.png", "map": "photo_gradcam.npy", "layer": "features",
                       "score": written["score"]}
    with Image.open(out / "photo_gradcampp.png") as img:
        assert img.size == (200, 120)  # the photo's own size, not the model's 32 x 32
        top = np.asarray(img)[:14].astype(int)
    raw = np.load(out / "photo_gradcam.npy")
    # the raw map is the explanation of the model input, untouched
    x, _ = xcam.load_images([tmp_path / "photo.png"], preprocess=Preprocess.named("unit", 32))
    with pytest.warns(UserWarning):  # unnormalized inputs, as the command line was told
        expected = xcam.GradCAM(tiny(), "features")(x, record["target"]).maps[0].numpy()
    assert raw.shape == (32, 32) and raw.dtype == np.float32
    np.testing.assert_allclose(raw, expected, atol=1e-3 * max(1.0, float(expected.max())))
    assert (top < 120).mean() > 0.6  # the title band: darkened, with white text
    assert (top > 200).all(axis=-1).sum() > 10


def test_map_to_original_inverts_resize_and_center_crop():
    from xcam.evaluation.data import map_to_original
    from xcam.models import Preprocess

    prep = Preprocess.named("none", 4)
    prep = type(prep)(prep.mean, prep.std, prep.scale, 4, "none", resize=6)
    m = torch.arange(16.0).reshape(4, 4)
    back = map_to_original(m, (6, 12), prep)  # resized to 6 x 12, cropped at rows 1..4, cols 4..7
    assert back.shape == (6, 12)
    torch.testing.assert_close(back[1:5, 4:8], m)
    assert float(back[0, 0]) == 0.0  # outside the crop: the map's minimum
