"""Hugging Face image classifiers (tiny configs, random weights) with no `layer` and no wrapper.

CI runs HF_SUBSET; `make test-all` runs the whole list (tests/transformers/models.py: HF).
"""

from __future__ import annotations

import warnings

import pytest
import torch

import xcam
from xcam.layers import token_prefix

from .models import HF, HF_SUBSET, build_hf, hf_size, real_maps

transformers = pytest.importorskip("transformers")

# token models (position embeddings, windows): maps must vary, need not follow a shift
NO_SHIFT = {"vit", "deit", "deit-teacher", "beit", "data2vec-vision", "dinov2", "dinov2-registers",
            "clip-vision", "swin", "swinv2", "pvt-v2", "mobilevit", "mobilevitv2"}


def params():
    return [pytest.param(e[0], marks=() if e[0] in HF_SUBSET else pytest.mark.slow) for e in HF]


@pytest.mark.parametrize("name", params())
def test_automatic_layer_gives_a_real_map(name, one_thread):
    model = build_hf(name)
    result = real_maps(model, hf_size(name), follow=name not in NO_SHIFT)
    for method, (varied, follows) in result.items():
        assert varied, f"{method}: constant map for every class"
        if follows:
            assert max(follows) > 0.8, (method, follows)


def test_outputs_unwrapped_without_a_wrapper(one_thread):
    model = build_hf("resnet")
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(x)
    assert type(out).__name__ == "ImageClassifierOutputWithNoAttention"
    assert torch.equal(xcam.outputs.logits(out), out.logits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exp = xcam.GradCAM(model)(x)
    assert torch.allclose(exp.scores, out.logits.gather(1, exp.targets[:, None])[:, 0])
    assert torch.equal(exp.targets, out.logits.argmax(1))


@pytest.mark.parametrize("name, prefix, grid", [
    ("vit", 1, (8, 8)), ("deit", 2, (8, 8)), ("dinov2-registers", 5, (8, 8)),
    ("clip-vision", 1, (8, 8)), ("swin", 0, (4, 4)),
])
def test_prefix_tokens_dropped_and_grid(name, prefix, grid, one_thread):
    model = build_hf(name)
    size = hf_size(name)
    assert token_prefix(model) == prefix
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exp = xcam.GradCAM(model)(x)
    assert exp.low_res.shape[-2:] == grid
    assert "attention" not in exp.layer
    tap = xcam.layers.resolve_layer(model, exp.layer)
    with xcam.capture(model, tap) as cap:
        out = model(x).logits
        g = cap.gradients(out[0, exp.targets[0]])[tap.label]
    f = cap[tap].detach()
    assert f.shape[1] == prefix + grid[0] * grid[1]
    expected = torch.relu((g[:, prefix:].mean(1, keepdim=True) * f[:, prefix:]).sum(-1))
    assert torch.allclose(exp.low_res, expected.reshape(1, *grid),
                          atol=1e-6 * float(expected.abs().max()))
