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


# ---- the explicit step: CAMExplainer.combine, for every method with channel weights ----------

def _cam_classes(channel_weights: bool) -> list[str]:
    from xcam.methods import CAMExplainer
    from xcam.registry import EXPLAINERS

    return [n for n in xcam.list_explainers() if issubclass(EXPLAINERS.get(n), CAMExplainer)
            and EXPLAINERS.get(n).channel_weights is channel_weights]


def _small(name: str, **kwargs):
    import inspect
    import warnings

    from xcam.registry import EXPLAINERS

    params = inspect.signature(EXPLAINERS.get(name)).parameters
    small = {"n_samples": 2, "steps": 3, "seed": 0}
    kwargs.update({k: v for k, v in small.items() if k in params})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xcam.create(name, kwargs.pop("model"), **kwargs)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", _cam_classes(True))
def test_every_channel_weight_method_projects_the_weighted_features(name, tiny, images, monkeypatch):
    """CAM, Score-CAM, Smooth Grad-CAM++, Opti-CAM, ...: the map is built by combine(w, F); with
    eigen_smooth it is the first principal component of w_k F_k (numpy SVD by hand), and without
    it ReLU(sum_k w_k F_k) of the same weights."""
    from xcam.methods import CAMExplainer

    seen = []
    original = CAMExplainer.combine

    def record(self, weights, features):
        seen.append((weights.detach().clone(), features.detach().clone()))
        return original(self, weights, features)

    monkeypatch.setattr(CAMExplainer, "combine", record)
    smooth = _small(name, model=tiny, eigen_smooth=True)(images, targets=2)
    assert smooth.params["eigen_smooth"] is True and seen
    weights, features = seen[-1]
    for b in range(images.shape[0]):
        expected = by_hand(weights[b, :, None, None] * features[b])
        assert rel_err(smooth.low_res[b], expected) < 1e-4, (name, b)
    plain = _small(name, model=tiny)(images, targets=2)
    summed = torch.relu(torch.einsum("bc,bchw->bhw", weights, features))
    assert rel_err(plain.low_res, summed) < 1e-4  # the same weights, summed
    assert rel_err(smooth.low_res, plain.low_res) > 1e-3  # and the projection changes the map


@pytest.mark.parametrize("name", _cam_classes(False))
def test_methods_without_channel_weights_refuse_eigen_smooth_when_built(name, tiny):
    with pytest.raises(InputError, match="eigen_smooth=True has nothing to project"):
        _small(name, model=tiny, eigen_smooth=True)


def test_scorecam_eigen_smooth_agrees_with_pytorch_grad_cam(resnet18, images):
    """Rank correlation > 0.99, as for the plain maps (tests/methods/test_scorecam.py): with
    log-probability targets pytorch-grad-cam's weights are ours over a constant, to which the
    projection is blind, but it upsamples the activations into masks with
    nn.UpsamplingBilinear2d (align_corners=True) where xcam uses align_corners=False (as for every
    map), so the masked inputs, hence the weights, differ a little, and the first principal
    component amplifies that (measured: max abs difference of the normalized maps 0.09, rank
    correlation 0.994 on this seed)."""
    from pytorch_grad_cam import ScoreCAM as LibScoreCAM
    from scipy.stats import spearmanr

    from xcam.methods import ScoreCAM

    x = images[:1]
    ours = ScoreCAM(resnet18, "layer3", eigen_smooth=True)(x, targets=[3])
    with LibScoreCAM(model=resnet18, target_layers=[resnet18.layer3]) as cam:
        cam.batch_size = 64
        theirs = torch.from_numpy(np.asarray(cam(
            x, targets=[lambda out: torch.log_softmax(out, dim=-1)[..., 3]], eigen_smooth=True)))
    rho = float(spearmanr(xcam.normalize(ours.maps)[0].flatten(), theirs[0].flatten())[0])
    diff = float((xcam.normalize(ours.maps)[0] - theirs[0]).abs().max())
    print(f"Score-CAM eigen_smooth vs pytorch-grad-cam: max abs diff {diff:.2e}, rank correlation {rho:.4f}")
    assert rho > 0.99


def test_aug_smooth_equals_pytorch_grad_cam(resnet18, images):
    """aug_smooth=True: the mean of the min-max normalized maps of x * {0.9, 1, 1.1}, flipped or
    not, un-flipped; exactly pytorch-grad-cam's test-time augmentation (ttach's default Compose)."""
    from pytorch_grad_cam import GradCAM as LibGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    x, targets = images[:2], [1, 4]
    ours = GradCAM(resnet18, "layer3", aug_smooth=True)(x, targets=targets)
    assert ours.params["aug_smooth"] is True
    with LibGradCAM(model=resnet18, target_layers=[resnet18.layer3]) as cam:
        theirs = torch.from_numpy(np.asarray(cam(x, targets=[ClassifierOutputTarget(t) for t in targets],
                                                 aug_smooth=True)))
    diff = float((ours.maps - theirs).abs().max())
    print(f"aug_smooth vs pytorch-grad-cam: max abs diff {diff:.2e}")
    assert diff < 1e-4
    plain = GradCAM(resnet18, "layer3")(x, targets=targets)
    assert float((xcam.normalize(plain.maps) - ours.maps).abs().max()) > 1e-2  # it averages
    assert torch.equal(ours.scores, plain.scores) and torch.equal(ours.targets, plain.targets)
    # by hand: the flipped, brighter copy is one of the six terms
    flipped = GradCAM(resnet18, "layer3")((x * 1.1).flip(-1), targets=targets)
    assert float((xcam.normalize(flipped.maps).flip(-1) - ours.maps).abs().max()) < 1


def test_aug_smooth_with_eigen_smooth_and_refusal(tiny, images):
    from xcam.methods import ScoreCAM

    both = ScoreCAM(tiny, "act", eigen_smooth=True, aug_smooth=True)(images, targets=2)
    assert both.maps.shape == images[:, 0].shape and float(both.maps.max()) <= 1 + 1e-6
    with pytest.raises(xcam.errors.InputTypeError, match="aug_smooth"):
        GradCAM(tiny, "act", aug_smooth="yes")
