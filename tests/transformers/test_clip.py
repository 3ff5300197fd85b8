"""The similarity target on CLIP, with no wrapper: open_clip and Hugging Face ``CLIPModel``.

Tiny configurations with random weights (32 px images, patch 8, two blocks). The explained layer
is given explicitly (the last block's first LayerNorm, as torchvision's ViT); ``layer=None``
chooses the same one (the last test).
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import xcam
from xcam.embeddings import ImageTower
from xcam.errors import OutputError, TargetError
from xcam.methods import CAMExplainer
from xcam.registry import EXPLAINERS
from xcam.targets import similarity

open_clip = pytest.importorskip("open_clip")
transformers = pytest.importorskip("transformers")

X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
#: the CAM family (CAMExplainer subclasses that take any target) and occlusion
METHODS = [n for n in xcam.list_explainers()
           if (issubclass(EXPLAINERS.get(n), CAMExplainer) and not EXPLAINERS.get(n).needs_class_targets)
           or n == "occlusion"]


def open_clip_model() -> tuple[nn.Module, torch.Tensor, str]:
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(0)
    model = CLIP(embed_dim=16,
                 vision_cfg=CLIPVisionCfg(layers=2, width=32, head_width=16, patch_size=8, image_size=32),
                 text_cfg=CLIPTextCfg(context_length=8, vocab_size=100, width=32, heads=2, layers=1)).eval()
    tokens = torch.randint(0, 100, (2, 8), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        text = model.encode_text(tokens)
    return model, text, "visual.transformer.resblocks.1.ln_1"


def hf_clip_model() -> tuple[nn.Module, torch.Tensor, str]:
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = CLIPConfig(
            text_config=dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                             num_attention_heads=4, max_position_embeddings=16, bos_token_id=0,
                             eos_token_id=2, pad_token_id=1),
            vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37,
                               num_hidden_layers=2, num_attention_heads=4),
            projection_dim=16)
    model = CLIPModel(config).eval()
    tokens = torch.randint(3, 99, (2, 8), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        text = model.get_text_features(input_ids=tokens)
    text = getattr(text, "pooler_output", text)  # transformers 5 returns a ModelOutput
    return model, text, "vision_model.encoder.layers.1.layer_norm1"


def image_embeds(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The image embedding the user would compute: the image tower, by hand."""
    if hasattr(model, "get_image_features"):
        out = model.get_image_features(pixel_values=x)
        return getattr(out, "pooler_output", out)
    return model.encode_image(x)


MODELS = {"open_clip": open_clip_model, "hf_clip": hf_clip_model}


def quiet(explainer, x, targets):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return explainer(x, targets)


@pytest.fixture(scope="module", params=list(MODELS))
def clip(request):
    return MODELS[request.param]()


@pytest.mark.parametrize("name", METHODS)
def test_every_cam_method_and_occlusion_explain_a_caption(clip, name, one_thread):
    """Per image, why it matches its caption: finite maps, the scores are the cosines."""
    model, text, layer = clip
    kwargs = {"window": 8, "stride": 8} if name == "occlusion" else {"layer": layer}
    exp = quiet(xcam.create(name, model, **kwargs), X, similarity(text))
    assert exp.maps.shape == (2, 32, 32) and bool(torch.isfinite(exp.maps).all())
    with torch.no_grad():
        expected = F.cosine_similarity(image_embeds(model, X), text, dim=1)
    assert torch.allclose(exp.scores, expected, atol=1e-5)
    if name != "occlusion":
        assert exp.low_res.shape == (2, 4, 4)  # the 4 x 4 patch grid, class token dropped
    assert float(exp.maps.abs().amax()) > 0 or EXPLAINERS.get(name).constant_maps


def test_gradcam_equals_a_hand_written_wrapper(clip):
    """No wrapper needed: the same map as the wrapper and cosine a user would write by hand."""
    model, text, layer = clip

    class Wrapper(nn.Module):
        def __init__(self, clip_model: nn.Module) -> None:
            super().__init__()
            self.clip = clip_model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return image_embeds(self.clip, x)

    module = model.get_submodule(layer)
    ours = quiet(xcam.GradCAM(model, layer), X, similarity(text[0]))
    theirs = quiet(xcam.GradCAM(Wrapper(model), module), X,
                   lambda e: F.cosine_similarity(e, text[:1], dim=1))
    assert float(theirs.low_res.abs().max()) > 0
    scale = float(theirs.low_res.abs().max())
    assert torch.allclose(ours.low_res, theirs.low_res, rtol=1e-4, atol=1e-6 * scale)
    assert ours.layer == layer  # the model's own layer names


def test_the_model_is_left_unchanged(clip):
    model, text, layer = clip
    model.train()
    flags = [m.training for m in model.modules()]
    n_hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    try:
        explainer = xcam.GradCAM(model, layer)
        assert isinstance(explainer.model, ImageTower) and explainer.model.source is model
        quiet(explainer, X, similarity(text))
        assert [m.training for m in model.modules()] == flags
        assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()) == n_hooks
        assert all(p.grad is None for p in model.parameters())
    finally:
        model.eval()


def test_class_targets_and_wrong_references_are_clear_errors(clip):
    model, text, layer = clip
    with pytest.raises(OutputError, match="image_embeds"):
        quiet(xcam.GradCAM(model, layer), X, 0)  # an embedding has no classes
    with pytest.raises(TargetError, match=r"reference has D=32 .* embedding has D=16"):
        quiet(xcam.GradCAM(model, layer), X, similarity(torch.ones(32)))


def test_open_clip_visual_and_hf_vision_with_projection_work_directly():
    """The image towers alone (a tensor; ``image_embeds`` in a ModelOutput) need nothing either."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    model, text, _ = open_clip_model()
    exp = quiet(xcam.GradCAM(model.visual, "transformer.resblocks.1.ln_1"), X, similarity(text))
    with torch.no_grad():
        expected = F.cosine_similarity(model.visual(X), text, dim=1)
    assert torch.allclose(exp.scores, expected, atol=1e-5)

    torch.manual_seed(0)
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(
        image_size=32, patch_size=8, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, projection_dim=16)).eval()
    exp = quiet(xcam.GradCAM(vision, "vision_model.encoder.layers.1.layer_norm1"), X, similarity(text))
    with torch.no_grad():
        expected = F.cosine_similarity(vision(pixel_values=X).image_embeds, text, dim=1)
    assert torch.allclose(exp.scores, expected, atol=1e-5)


def test_the_docs_page_runs_as_pasted():
    """docs/similarity.md's Python blocks, in order, in one namespace (tiny random models)."""
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parents[2] / "docs" / "similarity.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 3
    namespace: dict[str, object] = {"__name__": "__docs__"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for code in blocks:
            exec(compile(code, str(page), "exec"), namespace)
    assert namespace["explanation"].maps.shape == (2, 32, 32)  # type: ignore[attr-defined]
    assert namespace["why"].maps.shape == (1, 32, 32)  # type: ignore[attr-defined]


def test_one_shared_pass_equals_the_methods_alone(clip):
    """xcam.explain on a two-tower model: the shared pass runs the image tower too."""
    model, text, layer = clip
    target = similarity(text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shared = xcam.explain(model, X, ["gradcam", "layercam", "occlusion"], targets=target,
                              layer=layer)
        alone = xcam.GradCAM(model, layer)(X, target)
        built = xcam.explain(model, X, [xcam.GradCAM(model, layer)], targets=target)
    assert float(alone.low_res.abs().max()) > 0
    assert torch.equal(shared["gradcam"].low_res, alone.low_res)
    assert torch.equal(built["gradcam"].low_res, alone.low_res)
    assert shared["occlusion"].maps.shape == (2, 32, 32)


def test_the_automatic_layer_is_the_last_block_norm(clip):
    """layer=None on a CLIP model: the last block's first LayerNorm, as passed explicitly above."""
    model, text, layer = clip
    with pytest.warns(UserWarning, match=f"layer=None: using '{layer}'"):
        auto = xcam.GradCAM(model)(X, similarity(text))
    explicit = quiet(xcam.GradCAM(model, layer), X, similarity(text))
    assert auto.layer == layer
    assert torch.equal(auto.low_res, explicit.low_res)
