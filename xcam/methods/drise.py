"""D-RISE (Petsiuk et al., CVPR 2021): RISE for object detectors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.ops import box_iou

from .._checks import check_inputs, check_number, check_positive_int, check_seed, eval_mode, make_generator
from ..errors import InputError, InputTypeError, TargetError
from ..explanation import Explanation
from .rise import rise_cells, rise_grids, rise_masks

__all__ = ["DRISE", "detection_similarity"]


def detection_similarity(target_box: Tensor, target_label: int | None,
                         detections: Mapping[str, Tensor]) -> Tensor:
    """The D-RISE weight of one masked image: ``max_j IoU(T, D_j) * cos(P_T, P_j) * O_j``.

    Args:
        target_box: (4,) target box (x1, y1, x2, y2).
        target_label: the target class, or ``None`` for a box-only target (any class).
        detections: one torchvision detection dict: ``boxes`` (K, 4), ``scores`` (K,), ``labels``
            (K,); optionally ``probs`` (K, classes), the class-probability vectors, and
            ``objectness`` (K,).

    With ``probs``, the class term is the cosine similarity of the detection's probability vector
    with the target's one-hot vector (``probs[label] / ||probs||``). Without it (torchvision's
    detectors give a label and a score) the detection's vector is taken as ``score`` at its
    label, so the class term is the detection's score when its label is the target's, else 0
    (any label for a box-only target). ``objectness`` multiplies in where given.

    Returns:
        A 0-d tensor: the weight (0 when there is no detection).
    """
    boxes = detections["boxes"]
    if boxes.shape[0] == 0:
        return boxes.new_zeros(())
    iou = box_iou(target_box[None].to(boxes.dtype), boxes)[0]
    probs = detections.get("probs")
    if probs is not None:
        if target_label is None:
            sim = probs.amax(dim=1) / probs.norm(dim=1).clamp_min(1e-12)
        else:
            sim = probs[:, target_label] / probs.norm(dim=1).clamp_min(1e-12)
    else:
        scores = detections["scores"].to(iou.dtype)
        sim = scores if target_label is None else scores * (detections["labels"] == target_label)
    weight = iou * sim.to(iou.dtype)
    objectness = detections.get("objectness")
    if objectness is not None:
        weight = weight * objectness.to(iou.dtype)
    best: Tensor = weight.max()
    return best


class DRISE:
    """D-RISE: the saliency of a pixel for one detection, from detections under random masks.

    Petsiuk, Jain, Manjunatha, Lee, Ordonez & Saenko, "Black-box Explanation of Object Detectors
    via Saliency Maps", CVPR 2021. The masks ``M_i`` are RISE's (:func:`~xcam.methods.rise.rise_grids`,
    :func:`~xcam.methods.rise.rise_masks`: cells kept with probability ``p``, bilinear upsampling,
    random shift). The detector runs on every masked image ``x ⊙ M_i``; the target detection
    ``d_T = (box T, class one-hot)`` is compared with each proposal ``d_j`` of the masked image
    (:func:`detection_similarity`)::

        w_i = max_j  IoU(T, box_j) * cos(P_T, P_j) * O_j
        map(λ) = 1 / N * sum_{i=1}^{N} w_i M_i(λ)

    with ``O_j`` the objectness where the detector gives it (else 1), and, for torchvision
    detectors (a label and a score per detection), ``cos(P_T, P_j) = score_j`` when the labels
    agree, else 0.

    Works with torchvision detectors (``model(list of (C, H, W) images) -> list of dicts`` with
    ``boxes``, ``labels``, ``scores``, in eval mode) and with any model of that interface. The
    images are passed as the detector expects them (torchvision's normalize inside: pixels in
    [0, 1]); masked pixels become 0.

    It is not registered with :func:`xcam.create`: its targets are boxes, not classes, so the
    classifier contract (``explainer(inputs, targets)``, class scores) does not apply to it.

    Args:
        model: the detector.
        n_masks: number of masks ``N`` (default 1000).
        p: probability of keeping a cell (default 0.5).
        cell_size: cell size in pixels (int or pair); ``None`` gives a 16 x 16 grid, the paper's.
        batch_size: most masked images per forward pass (default 16).
        seed: seed of the masks (drawn on the input's device; bit-identical for a seed).
    """

    name = "drise"

    def __init__(
        self,
        model: nn.Module,
        n_masks: int = 1000,
        p: float = 0.5,
        cell_size: int | tuple[int, int] | None = None,
        batch_size: int = 16,
        seed: int | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.n_masks = check_positive_int("n_masks", n_masks)
        self.p = check_number("p", p)
        if not 0 < self.p <= 1:
            raise InputError(f"p (the probability of keeping a cell) must be in (0, 1], got {p!r}")
        if cell_size is not None and (isinstance(cell_size, bool) or not isinstance(cell_size, (int, tuple))
                                      or isinstance(cell_size, int) and cell_size < 1):
            raise InputError(f"cell_size must be None, a positive int or a pair of them, got {cell_size!r}")
        self.cell_size = cell_size
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.seed = check_seed(seed)

    def params(self) -> dict[str, Any]:
        """Hyper-parameters, recorded in every :class:`~xcam.explanation.Explanation`."""
        return {"n_masks": self.n_masks, "p": self.p, "cell_size": self.cell_size,
                "batch_size": self.batch_size, "seed": self.seed}

    def _cell(self, size: tuple[int, int]) -> tuple[int, int]:
        if self.cell_size is None:
            return -(-size[0] // 16), -(-size[1] // 16)
        return rise_cells(size, self.cell_size)

    def masks(self, size: tuple[int, int], device: torch.device | str = "cpu") -> Tensor:
        """The (N, H, W) masks a call on an H x W input on ``device`` uses (with a fixed ``seed``)."""
        cell = self._cell(size)
        grids, shifts = rise_grids(self.n_masks, size, cell, self.p,
                                   make_generator(self.seed, torch.device(device)))
        return rise_masks(grids, shifts, size, cell)

    def _detect(self, batch: Tensor) -> list[Mapping[str, Tensor]]:
        out = self.model(list(batch))
        if not isinstance(out, (list, tuple)) or not all(isinstance(d, Mapping) and "boxes" in d
                                                          for d in out):
            raise InputTypeError(
                "D-RISE needs a detector returning one dict per image with 'boxes', 'labels' and "
                f"'scores' (torchvision's detection models, in eval mode); got {type(out).__name__}"
            )
        return list(out)

    def __call__(self, inputs: Tensor, boxes: Tensor | Sequence[float],
                 labels: int | Sequence[int] | Tensor | None = None) -> Explanation:
        """Explain the detection ``boxes`` (B, 4) or (4,) (x1, y1, x2, y2), of class ``labels``.

        Returns:
            An :class:`~xcam.explanation.Explanation`: maps (B, H, W); ``targets`` the labels
            (``None`` for box-only targets); ``scores`` the weight of the clean image
            (``max_j IoU * similarity``, how well the detector finds the target unmasked).
        """
        x = check_inputs(inputs)
        b, _, height, width = x.shape
        box = torch.as_tensor(boxes, dtype=torch.float32, device=x.device)
        if box.dim() == 1:
            box = box[None].expand(b, -1)
        if box.shape != (b, 4):
            raise TargetError(
                f"boxes must be (4,) or ({b}, 4) (x1, y1, x2, y2), got shape {tuple(box.shape)}"
            )
        label_list: list[int | None]
        if labels is None:
            label_list = [None] * b
        else:
            lab = torch.as_tensor(labels).reshape(-1)
            if lab.dtype.is_floating_point or lab.dtype == torch.bool or lab.numel() not in (1, b):
                raise TargetError(f"labels must be None, an int or {b} ints (one per image), got {labels!r}")
            label_list = [int(v) for v in lab.expand(b).tolist()]
        size = (int(height), int(width))
        cell = self._cell(size)
        grids, shifts = rise_grids(self.n_masks, size, cell, self.p, make_generator(self.seed, x.device))
        total = x.new_zeros((b, height * width), dtype=torch.float32)
        per_batch = max(1, self.batch_size // b)
        with torch.no_grad(), eval_mode(self.model):
            clean = torch.stack([detection_similarity(box[i], label_list[i], d)
                                 for i, d in enumerate(self._detect(x))]).float()
            for m0 in range(0, self.n_masks, per_batch):
                m1 = min(self.n_masks, m0 + per_batch)
                masks = rise_masks(grids[m0:m1], shifts[m0:m1], size, cell)
                m = m1 - m0
                masked = (x[None] * masks[:, None, None].to(x.dtype)).reshape(m * b, *x.shape[1:])
                dets = self._detect(masked)  # mask-major: row r is image r % B
                weights = torch.stack([detection_similarity(box[r % b], label_list[r % b], d)
                                       for r, d in enumerate(dets)]).float()
                total += weights.reshape(m, b).T @ masks.reshape(m, -1).float()
        maps = (total / self.n_masks).reshape(b, height, width)
        targets = None if labels is None else torch.tensor(label_list, device=x.device)
        return Explanation(maps=maps, low_res=None, targets=targets, scores=clean, layer=None,
                           method=self.name, params=self.params())
