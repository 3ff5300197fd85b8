"""The timm and Hugging Face model lists of the coverage tests and ``docs/coverage.py``.

Random weights (nothing is downloaded), the smallest variant of each family, small inputs where
the model takes an ``img_size``; Hugging Face models from tiny configs (two layers, hidden size
32). Each entry is (name, family, input size, constructor keyword arguments).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tests.test_torchvision_models import calibrate_batchnorm

# name, family, input size, extra kwargs for timm.create_model
TIMM: list[tuple[str, str, int, dict[str, Any]]] = [
    ("resnet18", "ResNet", 128, {}),
    ("resnet10t", "ResNet", 128, {}),
    ("resnest14d", "ResNeSt", 128, {}),
    ("densenet121", "DenseNet", 128, {}),
    ("efficientnet_b0", "EfficientNet", 128, {}),
    ("efficientnet_lite0", "EfficientNet", 192, {}),
    ("tf_efficientnetv2_b0", "EfficientNetV2", 128, {}),
    ("mobilenetv3_small_050", "MobileNetV3", 128, {}),
    ("mobilenetv4_conv_small", "MobileNetV4", 192, {}),
    ("ghostnet_100", "GhostNet", 128, {}),
    ("regnetx_002", "RegNet", 128, {}),
    ("regnety_002", "RegNet", 128, {}),
    ("convnext_atto", "ConvNeXt", 128, {}),
    ("convnextv2_atto", "ConvNeXt", 128, {}),
    ("repvgg_a0", "RepVGG", 128, {}),
    ("dla34", "DLA", 128, {}),
    ("vgg11", "VGG", 128, {}),
    ("edgenext_xx_small", "EdgeNeXt", 128, {}),
    ("poolformer_s12", "MetaFormer", 128, {}),
    ("caformer_s18", "MetaFormer", 128, {}),
    ("fastvit_t8", "FastViT", 128, {}),
    ("mobilevit_xxs", "MobileViT", 128, {}),
    ("mobilevitv2_050", "MobileViT", 128, {}),
    ("efficientformer_l1", "EfficientFormer", 224, {}),  # attention biases fixed at 224 px
    ("efficientformerv2_s0", "EfficientFormer", 224, {}),
    ("efficientvit_b0", "EfficientViT", 192, {}),
    ("pvt_v2_b0", "PVTv2", 128, {}),
    ("twins_pcpvt_small", "Twins", 128, {}),
    ("twins_svt_small", "Twins", 128, {}),
    ("vit_tiny_patch16_224", "ViT", 128, {"img_size": 128}),
    ("vit_base_patch16_siglip_224", "ViT", 128, {"img_size": 128, "depth": 2}),
    ("deit_tiny_patch16_224", "DeiT", 128, {"img_size": 128}),
    ("deit_tiny_distilled_patch16_224", "DeiT", 128, {"img_size": 128}),
    ("deit3_small_patch16_224", "DeiT-III", 128, {"img_size": 128}),
    ("beit_base_patch16_224", "BEiT", 128, {"img_size": 128, "depth": 2}),
    ("eva02_tiny_patch14_224", "EVA", 112, {"img_size": 112}),
    ("vit_small_patch14_reg4_dinov2", "DINOv2", 112, {"img_size": 112}),
    ("cait_xxs24_224", "CaiT", 128, {"img_size": 128}),
    ("xcit_nano_12_p16_224", "XCiT", 128, {"img_size": 128}),
    ("swin_tiny_patch4_window7_224", "Swin", 128, {"img_size": 128, "window_size": 4}),
    ("swinv2_tiny_window8_256", "SwinV2", 128, {"img_size": 128, "window_size": 4}),
    ("maxvit_rmlp_pico_rw_256", "MaxViT", 128, {"img_size": 128}),
    ("coatnet_pico_rw_224", "CoAtNet", 128, {"img_size": 128}),
    ("tiny_vit_5m_224", "TinyViT", 224, {}),
    ("levit_128s", "LeViT", 224, {}),
    ("mixer_s32_224", "MLP-Mixer", 128, {"img_size": 128}),
    ("focalnet_tiny_srf", "FocalNet", 128, {}),
    ("crossvit_tiny_240", "CrossViT", 240, {}),
]

# one per family in the default (CI) run; the full list is @pytest.mark.slow
TIMM_SUBSET = {"resnet10t", "mobilenetv3_small_050", "convnext_atto", "vit_tiny_patch16_224",
               "vit_small_patch14_reg4_dinov2", "swin_tiny_patch4_window7_224", "xcit_nano_12_p16_224"}


def build_timm(name: str) -> nn.Module:
    """A timm model with random weights and 8 classes, in eval mode."""
    import timm

    size, kwargs = next((s, k) for n, _, s, k in TIMM if n == name)
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=8, **kwargs).eval()
    _wake_zero_heads(model)
    if name in CALIBRATE:
        calibrate_batchnorm(model, size)
    return model


# BatchNorm statistics from a few scenes, as a trained model's come from its data (as
# tests/test_torchvision_models.py does for ResNets): with the defaults (mean 0, variance 1) these
# random nets amplify or damp block after block, and their maps barely depend on the input (shift
# correlation 0.43-0.58 before, 0.86-0.98 after); LeViT's maps vanish to 1e-12. Not for all:
# calibrated, EfficientNet-B0 / V2-B0 and MobileNetV3 maps stop following a shift (0.3-0.6).
CALIBRATE = {"repvgg_a0", "dla34", "mobilevit_xxs", "efficientvit_b0", "levit_128s"}


def _wake_zero_heads(model: nn.Module) -> None:
    """Random weights for zero-initialised Linear layers (timm's Mixer and ViT 'jax' heads).

    With a zero head every logit is its bias and every gradient is 0: no map can say anything.
    """
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.Linear) and not bool(m.weight.detach().abs().sum() > 0):
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * 0.05)


def timm_size(name: str) -> int:
    return next(s for n, _, s, _ in TIMM if n == name)


_VIT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
_CONV = {"hidden_sizes": [16, 32, 64, 128], "depths": [1, 1, 1, 1]}

# name, model class, config class, input size, config kwargs
HF: list[tuple[str, str, str, int, dict[str, Any]]] = [
    ("vit", "ViTForImageClassification", "ViTConfig", 64, {**_VIT, "image_size": 64, "patch_size": 8}),
    ("deit", "DeiTForImageClassification", "DeiTConfig", 64,
     {**_VIT, "image_size": 64, "patch_size": 8}),
    ("deit-teacher", "DeiTForImageClassificationWithTeacher", "DeiTConfig", 64,
     {**_VIT, "image_size": 64, "patch_size": 8}),
    ("beit", "BeitForImageClassification", "BeitConfig", 64, {**_VIT, "image_size": 64, "patch_size": 8}),
    ("data2vec-vision", "Data2VecVisionForImageClassification", "Data2VecVisionConfig", 64,
     {**_VIT, "image_size": 64, "patch_size": 8}),
    ("dinov2", "Dinov2ForImageClassification", "Dinov2Config", 112,
     {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "mlp_ratio": 2,
      "image_size": 112, "patch_size": 14}),
    ("dinov2-registers", "Dinov2WithRegistersForImageClassification", "Dinov2WithRegistersConfig", 112,
     {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "mlp_ratio": 2,
      "image_size": 112, "patch_size": 14, "num_register_tokens": 4}),
    ("clip-vision", "CLIPForImageClassification", "CLIPConfig", 64,
     {"vision_config": {**_VIT, "image_size": 64, "patch_size": 8},
      "text_config": {**_VIT, "vocab_size": 64}}),
    ("swin", "SwinForImageClassification", "SwinConfig", 64,
     {"image_size": 64, "patch_size": 4, "embed_dim": 16, "depths": [1, 1, 1], "num_heads": [1, 2, 4],
      "window_size": 4}),
    ("swinv2", "Swinv2ForImageClassification", "Swinv2Config", 64,
     {"image_size": 64, "patch_size": 4, "embed_dim": 16, "depths": [1, 1, 1], "num_heads": [1, 2, 4],
      "window_size": 4}),
    ("convnext", "ConvNextForImageClassification", "ConvNextConfig", 128, {**_CONV}),
    ("convnextv2", "ConvNextV2ForImageClassification", "ConvNextV2Config", 128, {**_CONV}),
    ("resnet", "ResNetForImageClassification", "ResNetConfig", 128,
     {**_CONV, "embedding_size": 16, "layer_type": "basic"}),
    ("regnet", "RegNetForImageClassification", "RegNetConfig", 128,
     {**_CONV, "embedding_size": 16, "groups_width": 8}),
    ("efficientnet", "EfficientNetForImageClassification", "EfficientNetConfig", 128,
     {"image_size": 128, "width_coefficient": 0.25, "depth_coefficient": 0.25, "hidden_dim": 320}),
    ("mobilevit", "MobileViTForImageClassification", "MobileViTConfig", 128, {"image_size": 128}),
    ("mobilevitv2", "MobileViTV2ForImageClassification", "MobileViTV2Config", 128,
     {"image_size": 128, "width_multiplier": 0.5}),
    ("pvt-v2", "PvtV2ForImageClassification", "PvtV2Config", 128,
     {"hidden_sizes": [16, 32, 64, 128], "depths": [1, 1, 1, 1], "num_attention_heads": [1, 1, 2, 2]}),
    ("mobilenet-v2", "MobileNetV2ForImageClassification", "MobileNetV2Config", 128,
     {"image_size": 128, "depth_multiplier": 0.35}),
]

HF_SUBSET = {"vit", "dinov2-registers", "swin", "resnet", "clip-vision"}


def build_hf(name: str) -> nn.Module:
    """A Hugging Face image classifier from a tiny config, random weights, 8 classes, eval mode."""
    import transformers

    _, model_cls, config_cls, _, kwargs = next(e for e in HF if e[0] == name)
    config = getattr(transformers, config_cls)(**kwargs, num_labels=8)
    torch.manual_seed(0)
    model = getattr(transformers, model_cls)(config).eval()
    # Hugging Face initialises convolutions (and some BatchNorm scales) with N(0, 0.02): through a
    # deep random CNN (EfficientNet, MobileViT) the activations shrink 1e-7 per block and every
    # map is exactly 0. PyTorch's default init (scaled by the fan-in; BN scale 1) keeps them
    # alive, as a trained model's are.
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d)):
            m.reset_parameters()
    _wake_zero_heads(model)
    return model


def hf_size(name: str) -> int:
    return next(e[3] for e in HF if e[0] == name)


def real_maps(model: nn.Module, size: int, follow: bool = True) -> dict[str, tuple[list[int], list[float]]]:
    """The torchvision shift test (tests/test_torchvision_models.py) on one model, with no layer.

    Grad-CAM, Grad-CAM++ and occlusion explain a scene (one textured patch on faint noise) for its
    classes in order of score; a map must be finite and at input resolution, and for the first
    class whose map is not constant, the map of the same scene cropped 32 pixels further must
    match it on the overlap (correlation > 0.8, away from the borders). Returns, per method, the
    classes with a non-constant map and the correlations; the caller asserts.
    """
    import warnings

    import xcam
    from tests.test_torchvision_models import corr, explain, scene

    shift = 32
    big = scene(size, shift, seed=2)
    x, y = big[:, :, :size, :size], big[:, :, shift:, shift:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.no_grad():
            top = xcam.outputs.logits(model(x)).argsort(dim=1, descending=True)[0].tolist()
    margin = size // 8
    inner = (slice(margin, -margin), slice(margin, -margin))
    w = size // 4
    explainers = {"gradcam": xcam.GradCAM(model), "gradcampp": xcam.GradCAMPlusPlus(model),
                  "occlusion": xcam.create("occlusion", model, window=(w, w), stride=(w, w))}
    result = {}
    for method, explainer in explainers.items():
        varied: list[int] = []
        follows: list[float] = []
        for cls in top:
            m = explain(explainer, x, cls).maps[0]
            assert m.shape == (size, size) and bool(torch.isfinite(m).all()), (method, cls)
            if not float(m.max() - m.min()) > 1e-5 * float(m.abs().max()):
                continue
            varied.append(cls)
            if not follow or method == "occlusion":
                break
            m1 = m[shift:, shift:]
            m2 = explain(explainer, y, cls).maps[0][:-shift, :-shift]
            follows.append(corr(m1[inner], m2[inner]))
            if follows[-1] > 0.8:
                break
        result[method] = (varied, follows)
    return result
