"""D-RISE on a torchvision detector (random weights, a planted target: one of its own detections)."""

from __future__ import annotations

import pytest
import torch
import torchvision

from tests.reference import perturbation17 as ref17
from xcam.errors import TargetError
from xcam.methods.drise import DRISE, detection_similarity

SIZE = 64


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, num_classes=5, box_score_thresh=0.0, min_size=SIZE,
        max_size=SIZE, rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=20, box_detections_per_img=10,
    ).eval()
    # torchvision initialises the heads with std 0.01 / 0.001, so that untrained proposals are the
    # anchors themselves; larger random heads give image-dependent boxes to explain.
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module, std in [(model.roi_heads.box_predictor.cls_score, 0.5),
                            (model.roi_heads.box_predictor.bbox_pred, 0.05),
                            (model.rpn.head.cls_logits, 0.3), (model.rpn.head.bbox_pred, 0.05)]:
            module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * std)
    x = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        det = model(list(x))[0]
    # the planted target: the clean image's detection that covers the top strip of the image
    k = int(((det["boxes"][:, 3] < SIZE / 2) & (det["boxes"][:, 2] - det["boxes"][:, 0] > SIZE / 2))
            .nonzero()[0, 0])
    return model, x, det["boxes"][k], int(det["labels"][k])


def _weight(model, image, box, label):
    with torch.no_grad():
        return float(detection_similarity(box, label, model([image])[0]))


def test_masking_the_box_lowers_its_score_more_than_masking_elsewhere(setup):
    model, x, box, label = setup
    b = box.round().long().tolist()
    inside, elsewhere = x[0].clone(), x[0].clone()
    inside[:, b[1]:b[3], b[0]:b[2]] = 0
    elsewhere[:, SIZE - (b[3] - b[1]):, SIZE - (b[2] - b[0]):] = 0  # the same area, bottom right
    clean = _weight(model, x[0], box, label)
    drop_inside = clean - _weight(model, inside, box, label)
    drop_elsewhere = clean - _weight(model, elsewhere, box, label)
    assert drop_inside > 2 * drop_elsewhere + 0.05, (drop_inside, drop_elsewhere)


def test_drise_map_is_higher_inside_the_box_and_equals_the_reference(setup):
    model, x, box, label = setup
    explainer = DRISE(model, n_masks=16, cell_size=16, batch_size=16, seed=0)
    exp = explainer(x, box, label)
    assert exp.maps.shape == (1, SIZE, SIZE) and exp.targets.tolist() == [label]
    assert abs(float(exp.scores[0]) - _weight(model, x[0], box, label)) < 1e-6
    b = box.round().long().tolist()
    inside = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    inside[b[1]:b[3], b[0]:b[2]] = True
    assert exp.maps[0][inside].mean() > exp.maps[0][~inside].mean()
    small_explainer = DRISE(model, n_masks=6, cell_size=16, batch_size=3, seed=0)
    small, masks = small_explainer(x, box, label), small_explainer.masks((SIZE, SIZE))
    want = ref17.drise(model, x[0], box.double(), label, masks)
    rel = float((small.maps[0].double() - want).abs().max() / want.abs().max())
    assert rel < 1e-4, rel


def test_bad_box_names_the_fix(setup):
    model, x, _, _ = setup
    with pytest.raises(TargetError, match="boxes"):
        DRISE(model, n_masks=2)(x, [1.0, 2.0, 3.0])
