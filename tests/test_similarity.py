"""The similarity target (issue 13, item 3): cosine similarity of an embedding to a reference.

- the score is the cosine (a hand reference), per image or one reference for all;
- a constructed case: occluding the region that carries the reference's evidence lowers the score;
- the identity with class targets: on a bias-free linear head over the L2-normalized embedding
  (a cosine classifier, as CLIP's zero-shot head), ``S_sim = h_c / ||w_c||``;
- every registered method that takes a target (skipped by flag, never by name) explains it;
- clear errors for a wrong reference.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import xcam
from tests.reference import similarity as ref
from xcam.errors import NonFiniteError, OutputError, TargetError
from xcam.registry import EXPLAINERS
from xcam.targets import SimilarityTarget, resolve, similarity


class EmbedNet(nn.Module):
    """conv-ReLU-pool-conv-ReLU -> GAP -> Linear projection: a (B, D) embedding, no classes."""

    def __init__(self, d: int = 6, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(width, 2 * width, 3, padding=1))
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.proj = nn.Linear(2 * width, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(self.act(self.features(x))).flatten(1))


class CosineClassifier(nn.Module):
    """``h(x) = W e(x) / ||e(x)||``: a bias-free linear head on the L2-normalized embedding."""

    def __init__(self, embed: nn.Module, weight: torch.Tensor) -> None:
        super().__init__()
        self.embed = embed
        self.head = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        with torch.no_grad():
            self.head.weight.copy_(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.normalize(self.embed(x), dim=1))


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def quiet(explainer, x, targets):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return explainer(x, targets)


@pytest.fixture
def nets():
    torch.manual_seed(0)
    g = EmbedNet().eval()
    w = torch.randn(5, 6, generator=torch.Generator().manual_seed(1))
    return g, CosineClassifier(g, w).eval(), w


X = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))


# --- the score ---------------------------------------------------------------------------------

def test_the_score_is_the_cosine_similarity(nets):
    g, _, w = nets
    with torch.no_grad():
        e = g(X)
    one = resolve(similarity(w[1]), 2).score(e)
    per_image = resolve(similarity(w[[3, 0]]), 2).score(e)
    as_list = resolve(similarity(w[1].tolist()), 2).score(e)
    as_numpy = resolve(similarity(w[[3, 0]].numpy()), 2).score(e)
    for b in range(2):
        assert abs(float(one[b]) - ref.cosine(e[b], w[1])) < 1e-6
        assert abs(float(per_image[b]) - ref.cosine(e[b], w[[3, 0]][b])) < 1e-6
    assert torch.equal(one, as_list) and torch.equal(per_image, as_numpy)
    assert float((one - per_image).abs().max()) > 1e-2  # different references, different scores
    # scale invariance of both sides, and a zero embedding scores 0 (not NaN)
    assert torch.allclose(resolve(similarity(7 * w[1]), 2).score(3 * e), one, atol=1e-6)
    assert resolve(similarity(w[1]), 1).score(torch.zeros(1, 6)).tolist() == [0.0]


def test_embedding_rules_of_model_outputs(nets):
    g, _, w = nets
    with torch.no_grad():
        e = g(X)
    target = resolve(similarity(w[0]), 2)
    expected = target.score(e)
    for output in (e, {"image_embeds": e}, {"image_features": e, "text_features": None},
                   (e, None, torch.tensor(1.0)), [e]):
        assert torch.equal(target.score(output), expected)
    with pytest.raises(OutputError, match="output=lambda"):
        target.score({"logits": e})  # class scores are not an embedding
    custom = resolve(similarity(w[0]), 2, output_fn=lambda out: out["emb"])
    assert torch.equal(custom.score({"emb": e}), expected)


def test_gradcam_equals_the_hand_reference(nets):
    g, _, w = nets
    exp = quiet(xcam.GradCAM(g, "act"), X, similarity(w[[2, 4]]))
    for b, c in enumerate([2, 4]):
        expected = ref.gradcam_of_cosine(g, g.act, X[b], w[c])
        assert expected.max() > 0
        assert rel_err(exp.low_res[b], expected) < 1e-5
        with torch.no_grad():
            assert abs(float(exp.scores[b]) - ref.cosine(g(X[b:b + 1])[0], w[c])) < 1e-6


def test_unnormalized_head_differs_by_the_normalization_term(nets):
    """On ``h = W e`` (no normalization) the Grad-CAM weights are ``(w/||w|| - S e/||e||) / ||e||``.

    With ``e = P mean_ij A`` (GAP then the projection P), ``dS/dA_k = P^T (w/||w|| - S e/||e||)_k
    / (||e|| h w)``: the similarity map is the class map of that per-image weight row, not of w.
    """
    g, _, w = nets
    c = 3
    exp = quiet(xcam.GradCAM(g, "act"), X, similarity(w[c]))
    with torch.no_grad(), xcam.capture(g, "act") as cap:
        e = g(X)
    feats = cap["act"].detach().double()
    h, wd = feats.shape[-2:]
    e, wc, p = e.double(), w[c].double(), g.proj.weight.double()
    s = (e @ wc) / (e.norm(dim=1) * wc.norm())
    v = wc / wc.norm() - s[:, None] * e / e.norm(dim=1, keepdim=True)  # (B, D)
    alpha = (v @ p) / (e.norm(dim=1, keepdim=True) * h * wd)  # (B, C)
    expected = torch.relu(torch.einsum("bc,bchw->bhw", alpha, feats))
    assert rel_err(exp.low_res, expected) < 1e-5
    plain = torch.relu(torch.einsum("c,bchw->bhw", wc @ p, feats))  # the class map of W e
    assert float((xcam.normalize(exp.low_res.detach()) - xcam.normalize(plain)).abs().max()) > 1e-2


# --- the constructed case ----------------------------------------------------------------------

class EvidenceNet(nn.Module):
    """A 1x1-conv embedding: red pixels drive channel 0, green and blue the others; GAP; rotation.

    ``e = Q mean_ij ReLU(M x_ij)`` with Q orthogonal, so ``cos(e, Q u_0)`` is the share of the
    red evidence (channel 0) in the pooled features.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1, bias=False)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.proj = nn.Linear(4, 4, bias=False)
        q, _ = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(5)))
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[1.0, -1.0, -1.0], [0.0, 1.0, 0.0],
                                                 [0.0, 0.0, 1.0], [-1.0, 1.0, 1.0]])[:, :, None, None])
            self.proj.weight.copy_(q)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(self.act(self.conv(x))).flatten(1))


def test_occluding_the_evidence_lowers_the_score():
    net = EvidenceNet().eval()
    gen = torch.Generator().manual_seed(6)
    x = torch.zeros(1, 3, 32, 32)
    x[:, 1:] = 0.05 + 0.1 * torch.rand(1, 2, 32, 32, generator=gen)  # green-blue background
    region = (slice(8, 16), slice(16, 24))
    x[:, 0, region[0], region[1]] = 1.0  # the red patch: the reference's evidence
    x[:, 1:, region[0], region[1]] = 0.0
    reference = net.proj.weight[:, 0].detach()  # Q u_0: the embedding of pure red evidence
    target = similarity(reference)
    inside = torch.zeros(32, 32, dtype=torch.bool)
    inside[region] = True

    with torch.no_grad():
        clean = float(target(net(x)))
        hidden = x.clone()
        hidden[:, :, region[0], region[1]] = 0.0
        elsewhere = x.clone()
        elsewhere[:, :, 0:8, 0:8] = 0.0
        assert clean > 0.2
        assert float(target(net(hidden))) < 1e-6  # the evidence is gone
        assert float(target(net(elsewhere))) >= clean  # hiding background only helps

    occ = quiet(xcam.Occlusion(net, window=8, stride=8), x, target)
    assert abs(float(occ.scores[0]) - clean) < 1e-6
    assert float(occ.maps[0][inside].min()) > 0.1
    assert float(occ.maps[0][~inside].max()) <= 0.0
    cam = quiet(xcam.GradCAM(net, "act"), x, target)
    assert float(cam.maps[0][inside].min()) > float(cam.maps[0][~inside].max())


# --- the identity with class targets -----------------------------------------------------------

@pytest.mark.parametrize("name", ["gradcam", "hirescam", "xgradcam", "layercam", "occlusion"])
def test_class_map_of_the_cosine_classifier_is_norm_times_the_similarity_map(nets, name):
    """``h_c = ||w_c|| S_sim`` exactly, so maps linear in the score differ by the factor ``||w_c||``.

    The condition: a bias-free linear head on the L2-normalized embedding. Then the class-c map
    equals ``||w_c||`` times the similarity map for Grad-CAM, HiResCAM, XGrad-CAM, LayerCAM and
    occlusion (same layer), hence the maps are equal after min-max normalization.
    """
    g, h, w = nets
    kwargs = {"window": 4, "stride": 4} if name == "occlusion" else {"layer": g.act}
    for c in (1, 4):
        cls = quiet(xcam.create(name, h, **kwargs), X, c)
        sim = quiet(xcam.create(name, g, **kwargs), X, similarity(w[c]))
        assert float(sim.maps.abs().max()) > 0
        assert rel_err(cls.maps, float(w[c].norm()) * sim.maps) < 1e-5
        assert torch.allclose(cls.scores, float(w[c].norm()) * sim.scores, atol=1e-5)
        assert float((xcam.normalize(cls.maps) - xcam.normalize(sim.maps)).abs().max()) < 1e-5


def test_gradcampp_is_not_scale_equivariant(nets):
    """Grad-CAM++'s weights ``g^2 / (2 g^2 + sum(A) g^3)`` change with the score's scale: no identity."""
    g, h, w = nets
    cls = quiet(xcam.GradCAMPlusPlus(h, g.act), X, 1)
    sim = quiet(xcam.GradCAMPlusPlus(g, g.act), X, similarity(w[1]))
    assert float((xcam.normalize(cls.maps) - xcam.normalize(sim.maps)).abs().max()) > 1e-3


# --- every method that takes a target ----------------------------------------------------------

def _takes_targets(name: str) -> bool:
    cls = EXPLAINERS.get(name)
    return not (cls.is_control or cls.needs_class_targets or cls.model_type is not None)


TAKES = [n for n in xcam.list_explainers() if _takes_targets(n)]


def _make(name: str, model: nn.Module, layer: nn.Module):
    cls = EXPLAINERS.get(name)
    params = inspect.signature(cls).parameters
    kwargs: dict[str, object] = {}
    if "layer" in params:
        kwargs["layer"] = layer
    if "seed" in params:
        kwargs["seed"] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xcam.create(name, model, **kwargs)


@pytest.mark.parametrize("name", TAKES)
def test_every_method_explains_a_similarity_target(nets, name, one_thread):
    """The similarity map on ``e`` is the map of the callable ``h_c / ||w_c||`` on the classifier.

    Per-image references follow their images (deterministic methods: image 1 of the batch, with
    its own reference, equals image 1 alone); stochastic methods are compared with one reference.
    """
    g, h, w = nets
    deterministic = EXPLAINERS.get(name).deterministic
    refs = w[[2, 4]] if deterministic else w[2]
    sim = quiet(_make(name, g, g.act), X, similarity(refs))
    assert sim.maps.shape == (2, 16, 16) and bool(torch.isfinite(sim.maps).all())
    assert sim.targets is None
    with torch.no_grad():
        e = g(X)
    for b in range(2):
        r = refs[b] if deterministic else refs
        assert abs(float(sim.scores[b]) - ref.cosine(e[b], r)) < 1e-5
    c = 4 if deterministic else 2
    rows = slice(1, 2) if deterministic else slice(0, 2)
    call = quiet(_make(name, h, g.act), X[rows], lambda out: out[:, c] / w[c].norm())
    assert float(call.maps.abs().max()) > 0
    assert rel_err(sim.maps[rows], call.maps) < 1e-4


def test_methods_for_class_targets_only_refuse_it_by_flag(nets):
    g, _, w = nets
    refusing = [n for n in xcam.list_explainers() if EXPLAINERS.get(n).needs_class_targets
                and EXPLAINERS.get(n).model_type is None]  # LeGrad: its ViT test refuses it
    assert refusing  # CAM reads the classifier's weight row
    for name in refusing:
        with pytest.raises(TargetError, match="GradCAM"):
            quiet(xcam.create(name, g), X, similarity(w[0]))


# --- errors ------------------------------------------------------------------------------------

def test_errors_name_the_sizes_and_the_fix(nets):
    g, _, w = nets
    cam = xcam.GradCAM(g, "act")
    with pytest.raises(TargetError, match=r"reference has D=5 .* embedding has D=6"):
        quiet(cam, X, similarity(torch.ones(5)))
    with pytest.raises(NonFiniteError, match="reference"):
        similarity(torch.tensor([1.0, float("nan"), 0.0]))
    with pytest.raises(NonFiniteError, match="reference"):
        similarity(np.array([1.0, np.inf]))
    with pytest.raises(TargetError, match="norm 0"):
        similarity(torch.zeros(6))
    with pytest.raises(TargetError, match=r"reference rows \[1\] has norm 0"):
        similarity(torch.stack([w[0], torch.zeros(6)]))
    with pytest.raises(TargetError, match=r"3 rows .* batch of 2"):
        quiet(cam, X, similarity(w[:3]))
    with pytest.raises(TargetError, match=r"\(D,\) vector or \(B, D\)"):
        similarity(torch.ones(2, 3, 4))
    with pytest.raises(TargetError, match="bools"):
        similarity(torch.ones(6, dtype=torch.bool))
    with pytest.raises(TargetError, match="numbers"):
        similarity("a cat")
    with pytest.raises(TargetError, match="eps"):
        similarity(w[0], eps=0)
    tokens = resolve(similarity(w[0]), 2)
    with pytest.raises(TargetError, match=r"token sequence .* out\[:, 0\]"):
        tokens.score(torch.randn(2, 5, 6))


def test_the_reference_is_copied_and_moves_to_the_embedding(nets):
    g, _, w = nets
    reference = w[0].clone().double()
    target = similarity(reference)
    reference.fill_(0)  # the caller's tensor changes later: the target does not
    with torch.no_grad():
        e = g(X)
    scores = resolve(target, 2).score(e)
    assert scores.dtype == e.dtype
    assert abs(float(scores[0]) - ref.cosine(e[0], w[0])) < 1e-6
    assert isinstance(resolve(target, 2), SimilarityTarget)
    assert "similarity(reference of shape (6,))" == repr(target)
