from __future__ import annotations

import pytest
import torch

from xcam.errors import TargetError
from xcam.targets import channel, class_scores, neuron

OUT = torch.tensor([[0.1, 0.9, 0.3], [2.0, -1.0, 0.5]])


def test_none_is_argmax():
    idx, scores = class_scores(None, OUT, 2)
    assert idx.tolist() == [1, 0]
    assert scores.tolist() == pytest.approx([0.9, 2.0])


def test_int_sequence_tensor_callable():
    assert class_scores(2, OUT, 2)[1].tolist() == pytest.approx([0.3, 0.5])
    assert class_scores([0, 1], OUT, 2)[1].tolist() == pytest.approx([0.1, -1.0])
    assert class_scores(torch.tensor([2, 2]), OUT, 2)[0].tolist() == [2, 2]
    idx, scores = class_scores(lambda o: o.sum(1), OUT, 2)
    assert idx is None and scores.tolist() == pytest.approx([1.3, 1.5])


@pytest.mark.parametrize(
    "targets, message",
    [
        ([1], "1 entries for a batch of 2"),
        ([0, 3], "class 3 is out of range"),
        (-1, "class -1 is out of range"),
        (torch.tensor([0.0, 1.0]), "integer tensor"),
        ("cat", "targets must be None"),
        (True, "not a bool"),
        (lambda o: o, "shape \\(2,\\)"),
    ],
)
def test_errors(targets, message):
    with pytest.raises(TargetError, match=message):
        class_scores(targets, OUT, 2)


def test_unit_scores():
    act = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    assert channel("l", 1).score(act).tolist() == [4 + 5 + 6 + 7, 16 + 17 + 18 + 19]
    assert neuron("l", 2, 1, 0).score(act).tolist() == [10, 22]
    with pytest.raises(TargetError, match="3 channels"):
        channel("l", 3).score(act)
    with pytest.raises(TargetError, match="outside"):
        neuron("l", 0, 2, 0).score(act)


# -- the resolved Target object (issue 14): one parser, one object per call --------------------
def test_resolve_kinds_and_flags():
    from xcam.targets import CallableTarget, ClassTarget, UnitScore, resolve

    for raw in (None, 1, [0, 2], torch.tensor([1, 1])):
        target = resolve(raw, 2)
        assert isinstance(target, ClassTarget) and target.is_class and not target.reads_layer
    call = resolve(lambda o: o.sum(1), 2)
    assert isinstance(call, CallableTarget) and call.kind == "callable" and call.classes is None
    unit = resolve(channel("0", 1), 2)
    assert isinstance(unit, UnitScore) and unit.reads_layer and unit.kind == "unit"
    assert resolve(call, 5) is call  # an already resolved target passes through


def test_target_scores_match_class_scores():
    from xcam.targets import resolve

    for raw in (None, 2, [0, 1], torch.tensor([2, 0]), lambda o: o.sum(1)):
        got_idx, got = resolve(raw, 2).evaluate(OUT)
        want_idx, want = class_scores(raw, OUT, 2)
        assert torch.equal(got, want)
        assert (got_idx is None and want_idx is None) or torch.equal(got_idx, want_idx)


def test_fixed_classes_follow_their_samples():
    from xcam.targets import resolve

    fixed = resolve(None, 3).fixed(torch.tensor([2, 0, 1]))
    assert fixed.classes.tolist() == [2, 0, 1]
    follow = fixed.follow(torch.tensor([1, 1, 2, 0]))
    assert follow.batch_size == 4 and follow.classes.tolist() == [0, 0, 1, 2]
    # callables keep scoring any batch, now of the followed size
    call = resolve(lambda o: o.sum(1), 3).fixed(None).follow(torch.tensor([0, 2]))
    assert call.batch_size == 2 and call.score(OUT).tolist() == pytest.approx([1.3, 1.5])


def test_non_class_targets_are_refused_where_classes_are_needed():
    from xcam.targets import class_indices, parse_indices, resolve

    with pytest.raises(TargetError, match="needs class targets"):
        resolve(lambda o: o.sum(1), 2).on_logits(OUT)
    with pytest.raises(TargetError, match="metrics score the softmax"):
        class_indices(lambda o: o.sum(1), OUT)
    with pytest.raises(TargetError, match="custom message"):
        class_indices(channel("l", 0), OUT, "custom message")
    assert class_indices(None, OUT).tolist() == [1, 0]
    assert parse_indices(None, 2, OUT.device) is None
    assert parse_indices(3, 2, OUT.device).tolist() == [3, 3]
    with pytest.raises(TargetError, match="negative class index"):
        parse_indices([0, -1], 2, OUT.device)


def test_unit_layer_resolved_once_per_call():
    from collections import OrderedDict

    from xcam.targets import resolve

    model = torch.nn.Sequential(OrderedDict(conv=torch.nn.Conv2d(3, 4, 3), relu=torch.nn.ReLU()))
    unit = resolve(channel("conv", 1), 2, model=model)
    first = unit.taps(model)[0]
    assert unit.taps(model)[0] is first and unit.follow(torch.tensor([0])).taps(model)[0] is first
    with pytest.raises(Exception, match="did you mean 'conv'"):
        resolve(channel("comv", 1), 2, model=model)
