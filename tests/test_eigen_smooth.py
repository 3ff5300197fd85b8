"""eigen_smooth=True for the CAM family (pytorch-grad-cam's option)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import xcam
from xcam.errors import InputError
from xcam.methods import AblationCAM, GradCAM, HiResCAM, XGradCAM


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-12))


def by_hand(weighted: torch.Tensor) -> torch.Tensor:
    """First principal component of one sample's (C, h, w) weighted features, numpy SVD, float64."""
    c, h, w = weighted.shape
    a = weighted.double().reshape(c, h * w).T.numpy()
    a = a - a.mean(axis=0)
    _, _, vt = np.linalg.svd(a, full_matrices=True)
    proj = a @ vt[0]
    if float(proj @ a.sum(axis=1)) < 0:  # xcam's sign: along the unsmoothed weighted sum
        proj = -proj
    return torch.from_numpy(np.maximum(proj, 0).reshape(h, w))


def test_gradcam_eigen_smooth_matches_the_projection_by_hand(resnet18, images):
    exp = GradCAM(resnet18, "layer3", eigen_smooth=True)(images, targets=[1, 4, 7])
    plain = GradCAM(resnet18, "layer3")(images, targets=[1, 4, 7])
    assert exp.params["eigen_smooth"] is True
    with xcam.capture(resnet18, "layer3") as cap:
        out = resnet18(images)
        grads = cap.gradients(out.gather(1, torch.tensor([[1], [4], [7]]))[:, 0])["layer3"]
        feats = cap["layer3"].detach()
    weighted = grads.mean(dim=(2, 3))[:, :, None, None] * feats
    for b in range(3):
        expected = by_hand(weighted[b])
        assert expected.max() > 0
        assert rel_err(exp.low_res[b], expected) < 1e-4
    assert rel_err(exp.low_res, plain.low_res) > 1e-2  # it does change the map


def test_agrees_with_pytorch_grad_cam(resnet18, images):
    from pytorch_grad_cam import GradCAM as LibGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection
    from scipy.stats import spearmanr

    ours = GradCAM(resnet18, "layer3", eigen_smooth=True)(images, targets=[1, 4, 7])
    with LibGradCAM(model=resnet18, target_layers=[resnet18.layer3]) as cam:
        lib_targets = [ClassifierOutputTarget(t) for t in (1, 4, 7)]
        theirs = torch.from_numpy(np.asarray(cam(images, targets=lib_targets, eigen_smooth=True)))
        # the same model and targets, its raw projection: LAPACK's sign, before its ReLU
        acts = cam.activations_and_grads.activations[0].numpy()
        grads = cam.activations_and_grads.gradients[0].numpy()
    raw = torch.from_numpy(get_2d_projection(grads.mean(axis=(2, 3))[:, :, None, None] * acts))
    same = (raw * ours.low_res).sum(dim=(1, 2)) >= 0  # where LAPACK's sign is xcam's
    for b in range(3):
        expected = torch.relu(raw[b] if same[b] else -raw[b])
        assert rel_err(ours.low_res[b], expected) < 1e-4
        if same[b]:
            assert float((xcam.normalize(ours.maps[b:b + 1])[0] - theirs[b]).abs().max()) < 1e-4
    rhos = [round(float(spearmanr(ours.maps[b].flatten(), theirs[b].flatten())[0]), 4) for b in range(3)]
    print("eigen_smooth: pytorch-grad-cam's sign is xcam's:", same.tolist(), "rank correlation:", rhos)


def test_other_weighted_sums_are_smoothed_too(tiny, images):
    for cls in (XGradCAM, AblationCAM):
        smooth = cls(tiny, "act", eigen_smooth=True)(images, targets=2)
        plain = cls(tiny, "act")(images, targets=2)
        assert smooth.low_res.shape == plain.low_res.shape
        assert rel_err(smooth.low_res, plain.low_res) > 1e-3


def test_methods_without_channel_weights_refuse_it(tiny, images):
    with pytest.raises(InputError, match="eigen_smooth"):
        HiResCAM(tiny, "act", eigen_smooth=True)(images, targets=1)
    with pytest.raises(xcam.errors.InputTypeError, match="eigen_smooth"):
        GradCAM(tiny, "act", eigen_smooth=1)
