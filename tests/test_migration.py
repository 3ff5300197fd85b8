"""Migration aids: the peers' names (pytorch-grad-cam, torch-cam, captum, Quantus) work in xcam."""

from __future__ import annotations

import pytest

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
