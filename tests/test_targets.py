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
