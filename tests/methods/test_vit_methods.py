"""ViT-native explainers (issue 13, item 4): rollout, Chefer et al.'s relevance, LeGrad.

Each equals the slow reference of ``tests/reference/vit.py`` (hand-written forward passes, loops,
float64; relative difference < 1e-4) on a two-block torchvision ViT and on a real-sized ViT-B/16
(random weights, 64 px), and runs on timm and Hugging Face ViTs whose attention is fused by
default. The capture leaves every flag, forward and hook of the model as it was.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import xcam
from tests.nets import tiny_vit
from tests.reference import vit as ref
from xcam.methods._attention import ViTModel, find_vit, project
from xcam.methods.chefer import CheferRelevance
from xcam.methods.legrad import LeGrad
from xcam.methods.rollout import AttentionRollout, rollout

pytestmark = pytest.mark.usefixtures("one_thread")

# The real-sized model: torchvision ViT-B/16 (random weights, a fixed seed, 64 px: a 4 x 4 grid).

X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().flatten(), b.detach().double().flatten()
    assert float(b.amax() - b.amin()) > 0  # a constant (e.g. all-zero) map would prove nothing
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


def quiet(explainer, x, targets=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return explainer(x, targets)


@pytest.fixture(scope="module")
def vit_b16() -> nn.Module:
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torchvision.models.vit_b_16(image_size=64).eval()
        nn.init.normal_(model.heads.head.weight, std=0.05)  # torchvision zeroes it: no gradient
    return model


X64 = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def _timm(name: str = "vit_tiny_patch16_224", **kw) -> nn.Module:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, img_size=32, depth=2, num_classes=5, **kw).eval()


def _hf(implementation: str = "sdpa") -> nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=32, num_labels=5,
                                 attn_implementation=implementation)
    return transformers.ViTForImageClassification(cfg).eval()


# -- the attention capture -----------------------------------------------------------------------
def _model_state(model: nn.Module) -> list[object]:
    state: list[object] = []
    for m in model.modules():
        state += [sorted(m.__dict__.get(k, None) is not None for k in ("forward",)),
                  getattr(m, "fused_attn", None), len(m._forward_hooks), len(m._forward_pre_hooks)]
        cfg = getattr(m, "config", None)
        if cfg is not None and hasattr(cfg, "_attn_implementation"):
            state.append(cfg._attn_implementation)
    return state


@pytest.mark.parametrize("family", ["torchvision", "timm", "huggingface"])
def test_capture_computes_attention_and_restores_the_model(family):
    model = {"torchvision": tiny_vit, "timm": _timm, "huggingface": _hf}[family]()
    forward = {"torchvision": ref.torchvision_forward, "timm": ref.timm_forward,
               "huggingface": ref.huggingface_forward}[family]
    if family == "huggingface":  # the reference reads HF's own eager attention of the same weights
        eager = _hf("eager")
        eager.load_state_dict(model.state_dict())
        reference = forward(eager)
    else:
        reference = forward(model)
    before = _model_state(model)
    requires = [p.requires_grad for p in model.parameters()]
    layout = find_vit(model)
    assert layout is not None and layout.family == family and isinstance(model, ViTModel)
    from xcam.methods._attention import record

    with torch.no_grad(), record(layout, [0, 1], tokens=True) as rec:
        logits = model(X[:1])
        during = _model_state(model)
    expected_logits, attns, outs = reference(X[:1])
    assert during != before  # fused paths were switched off for the pass
    assert _model_state(model) == before
    assert [p.requires_grad for p in model.parameters()] == requires
    got = rec.all_attentions()
    assert all(rel(g, e) < 1e-5 for g, e in zip(got, attns))
    assert all(rel(g, e) < 1e-5 for g, e in zip(rec.tokens, outs))
    out = logits if isinstance(logits, torch.Tensor) else logits.logits
    assert rel(out, expected_logits) < 1e-5
    assert torch.allclose(got[0].sum(-1), torch.ones(()), atol=1e-5)  # rows are probabilities


def test_restored_after_an_exception():
    model = _timm()
    n_hooks = sum(len(m._forward_hooks) for m in model.modules())
    explainer = AttentionRollout(model)
    with pytest.raises(ValueError):
        quiet(explainer, X, targets=[0, 99])
    assert all(b.attn.fused_attn for b in model.blocks)
    assert sum(len(m._forward_hooks) for m in model.modules()) == n_hooks


def test_cnn_is_refused_with_the_fix():
    from tests.nets import TinyNet

    assert not isinstance(TinyNet(), ViTModel)
    for name in ("rollout", "chefer", "legrad"):
        if name in xcam.list_explainers():
            with pytest.raises(TypeError, match="vision transformers.*GradCAM"):
                xcam.create(name, TinyNet())


#: method -> (explainer on a model, reference(forward, x, cls, prefix, layout)) for the other families
REFERENCES: dict = {
    "rollout": (AttentionRollout, lambda f, x, c, p, lay: ref.rollout(f, x, p)),
}


# -- rollout -------------------------------------------------------------------------------------
def test_rollout_of_identity_attention_is_uniform():
    eye = torch.eye(5).expand(2, 3, 5, 5)
    joint = rollout([eye, eye, eye])
    assert torch.equal(joint, torch.eye(5).expand(2, 5, 5))
    assert torch.equal(joint[:, 0, 1:], torch.zeros(2, 4))  # the same value on every patch
    uniform = torch.full((1, 2, 5, 5), 0.2)
    # (U + I)/2 twice = (3U + I)/4: every patch gets 3 / (4 N) from the class token
    assert torch.allclose(rollout([uniform, uniform])[0, 0, 1:], torch.full((4,), 3 / 20))


def test_rollout_uniform_attention_in_a_model():
    model = tiny_vit()
    d = model.hidden_dim
    with torch.no_grad():
        for blk in model.encoder.layers:  # Q = K = 0: every token attends uniformly
            blk.self_attention.in_proj_weight[: 2 * d].zero_()
            blk.self_attention.in_proj_bias[: 2 * d].zero_()
    exp = quiet(AttentionRollout(model), X)
    assert torch.allclose(exp.low_res, torch.full_like(exp.low_res, 3 / (4 * 17)), atol=1e-6)


@pytest.mark.parametrize("fusion,ratio", [("mean", 0.0), ("max", 0.0), ("min", 0.0), ("mean", 0.5),
                                          ("max", 0.9)])
def test_rollout_equals_reference(fusion, ratio):
    model = tiny_vit()
    exp = quiet(AttentionRollout(model, head_fusion=fusion, discard_ratio=ratio), X)
    for b in range(2):
        expected = ref.rollout(ref.torchvision_forward(model), X[b:b + 1], 1, fusion, ratio)
        assert rel(exp.low_res[b].flatten(), expected) < 1e-4
    assert exp.params["head_fusion"] == fusion and exp.maps.shape == (2, 32, 32)


def test_rollout_discard_changes_the_map():
    model = tiny_vit()
    a = quiet(AttentionRollout(model), X).low_res
    b = quiet(AttentionRollout(model, discard_ratio=0.8), X).low_res
    assert rel(a, b) > 1e-2


def test_rollout_bad_arguments():
    with pytest.raises(ValueError, match="head_fusion"):
        AttentionRollout(tiny_vit(), head_fusion="median")
    with pytest.raises(ValueError, match="discard_ratio"):
        AttentionRollout(tiny_vit(), discard_ratio=1.0)
    with pytest.raises(ValueError, match="blocks"):
        AttentionRollout(tiny_vit(), blocks=[5])


def test_vit_b16_rollout_equals_reference(vit_b16):
    got = quiet(AttentionRollout(vit_b16), X64).low_res.flatten()
    assert rel(got, ref.rollout(ref.torchvision_forward(vit_b16), X64, 1)) < 1e-4


# -- Chefer et al. ------------------------------------------------------------------------------
REFERENCES["chefer"] = (CheferRelevance, lambda f, x, c, p, lay: ref.chefer(f, x, c, p))


def test_chefer_equals_reference():
    model = tiny_vit()
    exp = quiet(CheferRelevance(model), X, targets=[1, 3])
    for b, cls in enumerate([1, 3]):
        expected = ref.chefer(ref.torchvision_forward(model), X[b:b + 1], cls, 1)
        assert rel(exp.low_res[b].flatten(), expected) < 1e-4
    other = quiet(CheferRelevance(model), X, targets=[2, 2])
    assert rel(other.low_res, exp.low_res) > 1e-2  # class-specific, unlike rollout


def test_chefer_callable_target_equals_class_target():
    model = tiny_vit()
    a = quiet(CheferRelevance(model), X, targets=2)
    b = quiet(CheferRelevance(model), X, targets=lambda out: out[:, 2])
    assert torch.allclose(a.maps, b.maps)


def test_vit_b16_chefer_equals_reference(vit_b16):
    cls = int(vit_b16(X64).argmax())
    got = quiet(CheferRelevance(vit_b16), X64).low_res.flatten()
    assert rel(got, ref.chefer(ref.torchvision_forward(vit_b16), X64, cls, 1)) < 1e-4


# -- LeGrad --------------------------------------------------------------------------------------
REFERENCES["legrad"] = (LeGrad, lambda f, x, c, p, lay: ref.legrad(
    f, x, c, p, [0, 1], lambda z: project(lay, z, "mean")))
REFERENCES["legrad-token"] = (lambda m: LeGrad(m, pooling="token"), lambda f, x, c, p, lay: ref.legrad(
    f, x, c, p, [0, 1], lambda z: project(lay, z, "token")))


@pytest.mark.parametrize("pooling", ["mean", "token"])
def test_legrad_equals_reference(pooling):
    model = tiny_vit()
    layout = find_vit(model)
    exp = quiet(LeGrad(model, pooling=pooling), X, targets=[1, 3])
    for b, cls in enumerate([1, 3]):
        expected = ref.legrad(ref.torchvision_forward(model), X[b:b + 1], cls, 1, [0, 1],
                              lambda z: project(layout, z, pooling))
        assert rel(exp.low_res[b].flatten(), expected) < 1e-4


def test_legrad_token_pooling_of_the_last_block_is_the_logit():
    model = tiny_vit()
    layout = find_vit(model)
    logits, _, outs = ref.torchvision_forward(model)(X[:1])
    assert torch.allclose(project(layout, outs[-1], "token"), logits, atol=1e-5)
    assert not torch.allclose(project(layout, outs[-1], "mean"), logits, atol=1e-3)


def test_legrad_refuses_callable_targets():
    assert LeGrad.needs_class_targets  # the flag the suites and the similarity tests read
    with pytest.raises(ValueError, match="class targets"):
        quiet(LeGrad(tiny_vit()), X, targets=lambda out: out[:, 0])
    with pytest.raises(xcam.errors.TargetError, match="class targets"):
        quiet(LeGrad(tiny_vit()), X, targets=xcam.targets.similarity(torch.ones(10)))


def test_vit_b16_legrad_equals_reference(vit_b16):
    layout = find_vit(vit_b16)
    cls = int(vit_b16(X64).argmax())
    blocks = [8, 9, 10, 11]
    got = quiet(LeGrad(vit_b16, blocks=blocks), X64).low_res.flatten()
    expected = ref.legrad(ref.torchvision_forward(vit_b16), X64, cls, 1, blocks,
                          lambda z: project(layout, z, "mean"))
    assert rel(got, expected) < 1e-4


def test_legrad_matches_torchcam_on_vit_b16(vit_b16):
    """torch-cam's LeGrad: same blocks, image and class. Its score projection is
    ``heads(encoder.ln(tokens.mean(1)))``, xcam's ``pooling="mean"``: equal raw maps. torch-cam
    min-max normalizes by default (the paper's last step); xcam keeps raw values, and its
    ``normalized()`` is that map. xcam's ``pooling="token"`` (the model's own class-token pooling)
    is not what torch-cam computes."""
    torchcam = pytest.importorskip("torchcam.methods")
    layers = [vit_b16.encoder.layers[i] for i in (8, 9, 10, 11)]
    cls = int(vit_b16(X64).argmax())
    with torchcam.LeGrad(vit_b16, layers) as extractor:
        scores = vit_b16(X64)
        raw = extractor(cls, scores, normalized=False)[0]
        scores = vit_b16(X64)
        normed = extractor(cls, scores)[0]
    ours = quiet(LeGrad(vit_b16, blocks=[8, 9, 10, 11]), X64, targets=cls)
    assert rel(ours.low_res, raw) < 1e-4
    minmax = (ours.low_res - ours.low_res.amin()) / (ours.low_res.amax() - ours.low_res.amin())
    assert rel(minmax, normed) < 1e-4 and float(normed.amax()) == pytest.approx(1.0, abs=1e-4)
    token = quiet(LeGrad(vit_b16, blocks=[8, 9, 10, 11], pooling="token"), X64, targets=cls)
    assert rel(token.low_res, raw) > 1e-2  # the documented difference


# -- timm and Hugging Face ViTs, fused attention by default ----------------------------------------
@pytest.mark.parametrize("method", sorted(REFERENCES))
@pytest.mark.parametrize("family", ["timm", "timm-distilled", "huggingface"])
def test_other_families_equal_reference(family, method):
    if family == "huggingface":
        model = _hf()
        eager = _hf("eager")
        eager.load_state_dict(model.state_dict())
        forward, prefix = ref.huggingface_forward(eager), 1
    else:
        distilled = family == "timm-distilled"
        model = _timm("deit_tiny_distilled_patch16_224" if distilled else "vit_tiny_patch16_224",
                      **({} if distilled else {"patch_size": 8}))
        forward, prefix = ref.timm_forward(model), model.num_prefix_tokens
    make, reference = REFERENCES[method]
    x = X[:1]
    cls = int(forward(x)[0].argmax())
    exp = quiet(make(model), x, targets=cls)
    assert exp.maps.shape == (1, 32, 32) and torch.isfinite(exp.maps).all()
    assert rel(exp.low_res.flatten(), reference(forward, x, cls, prefix, find_vit(model))) < 1e-4


def test_registered_with_the_model_type_flag():
    for name in REFERENCES:
        cls = xcam.registry.EXPLAINERS.get(name.split("-")[0])
        assert cls.model_type is ViTModel and not cls.needs_layer


# -- more architectures: the recording changes nothing, the head is understood --------------------
def _timm_arch(name: str, **kw) -> nn.Module:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, img_size=56, depth=2, num_classes=5, **kw).eval()


def _hf_arch(kind: str) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    small = dict(image_size=56, patch_size=14, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=32, num_labels=5)
    if kind == "dinov2-registers":
        cfg = transformers.Dinov2WithRegistersConfig(num_register_tokens=4, **small)
        return transformers.Dinov2WithRegistersForImageClassification(cfg).eval()
    config, model = {"deit": ("DeiTConfig", "DeiTForImageClassification"),
                     "dinov2": ("Dinov2Config", "Dinov2ForImageClassification"),
                     "beit": ("BeitConfig", "BeitForImageClassification")}[kind]
    return getattr(transformers, model)(getattr(transformers, config)(**small)).eval()


ARCHS = {
    "timm-dinov2-registers": lambda: _timm_arch("vit_small_patch14_reg4_dinov2"),
    "timm-deit3": lambda: _timm_arch("deit3_small_patch16_224"),
    "timm-beit": lambda: _timm_arch("beit_base_patch16_224"),
    "timm-eva02": lambda: _timm_arch("eva02_tiny_patch14_224"),
    "timm-avgpool-no-class-token": lambda: _timm_arch("vit_tiny_patch16_224", global_pool="avg",
                                                      class_token=False),
    "hf-deit": lambda: _hf_arch("deit"),
    "hf-dinov2": lambda: _hf_arch("dinov2"),
    "hf-dinov2-registers": lambda: _hf_arch("dinov2-registers"),
    "hf-beit": lambda: _hf_arch("beit"),
}


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_architectures(arch):
    """Recording A leaves the logits as they were; A's rows are probabilities; the model's own
    pooling of the last block's tokens gives its logits; the three explainers give finite maps."""
    from xcam.methods._attention import record

    model = ARCHS[arch]()
    x = torch.randn(1, 3, 56, 56, generator=torch.Generator().manual_seed(3))
    layout = find_vit(model)
    assert layout is not None
    with torch.no_grad():
        plain = model(x)
        with record(layout, range(len(layout.blocks)), tokens=True) as rec:
            recorded = model(x)
    plain, recorded = getattr(plain, "logits", plain), getattr(recorded, "logits", recorded)
    assert rel(recorded, plain) < 1e-5
    for attn in rec.all_attentions():
        assert torch.allclose(attn.sum(-1), torch.ones(()), atol=1e-5)
    assert rel(project(layout, rec.tokens[-1], "token"), plain) < 1e-5
    cls = int(plain.argmax())
    for explainer in (AttentionRollout(model), CheferRelevance(model), LeGrad(model, pooling="token")):
        exp = quiet(explainer, x, targets=cls)
        assert exp.maps.shape == (1, 56, 56) and torch.isfinite(exp.maps).all()
        assert float(exp.low_res.amax()) > 0


def test_legrad_mean_pooling_needs_a_one_token_head():
    with pytest.raises(ValueError, match="pooling='token'.*projection="):
        quiet(LeGrad(_hf_arch("dinov2")), torch.randn(1, 3, 56, 56))
