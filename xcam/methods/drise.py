"""D-RISE (Petsiuk et al., CVPR 2021): RISE for object detectors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torchvision.ops import box_iou

from .._checks import check_inputs, check_number, check_positive_int, check_seed, eval_mode, make_generator
from ..errors import InputError, InputTypeError, TargetError
from ..explanation import Detector, Explanation
from ..registry import register_explainer
from ..targets import detection
from .base import Explainer
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


@register_explainer("drise")
class DRISE(Explainer):
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
    ``boxes``, ``labels``, ``scores``, in eval mode) and with any model of that interface
    (:class:`~xcam.explanation.Detector`, its ``model_type`` flag). The images are passed as the
    detector expects them (torchvision's normalize inside: pixels in [0, 1]); masked pixels
    become 0. Registered as ``"drise"``; its targets are detections, not classes:

    - ``targets=None``: each image's top-scoring detection on the clean image (its box and label);
    - an ``int``, one int per image, or :func:`xcam.targets.detection` ``(label=c)``: the top
      detection of that class on the clean image;
    - :func:`xcam.targets.detection` ``(label, box)``, or float boxes (4,) / (B, 4) as
      (x1, y1, x2, y2) with ``labels`` (``None``: a box-only target, any class).

    Args:
        model: the detector.
        n_masks: number of masks ``N`` (default 1000).
        p: probability of keeping a cell (default 0.5).
        cell_size: cell size in pixels (int or pair); ``None`` gives a 16 x 16 grid, the paper's.
        batch_size: most masked images per forward pass (default 16).
        seed: seed of the masks (drawn on the input's device; bit-identical for a seed).
    """

    needs_gradients = False
    needs_layer = False
    deterministic = False
    model_type: ClassVar[type | None] = Detector

    def __init__(
        self,
        model: nn.Module,
        n_masks: int = 1000,
        p: float = 0.5,
        cell_size: int | tuple[int, int] | None = None,
        batch_size: int = 16,
        seed: int | None = None,
    ) -> None:
        super().__init__(model)
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

    def forward_passes(self, batch_size: int) -> int:
        """Images run through the detector for a batch of ``batch_size``: ``B * (N + 1)``."""
        return batch_size * (self.n_masks + 1)

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

    def _clean(self, x: Tensor) -> list[Mapping[str, Tensor]]:
        """The detections of the clean images; a model that does not take a list is no detector."""
        try:
            return self._detect(x)
        except (TypeError, AttributeError) as err:
            raise InputTypeError(
                f"model: D-RISE explains object detectors (model(list of images) -> list of dicts, "
                f"such as torchvision's fasterrcnn_resnet50_fpn); {type(self.model).__name__} raised "
                f"{type(err).__name__} on a list of images. For a classifier use RISE (xcam.create('rise', "
                "model))"
            ) from err

    def _targets(self, targets: object, labels: object, dets: list[Mapping[str, Tensor]],
                 b: int, device: torch.device) -> tuple[Tensor, list[int | None]]:
        """(B, 4) boxes and B labels (None: any class) from ``targets`` (see the class doc)."""
        if isinstance(targets, detection):
            if labels is not None:
                raise TargetError("labels: pass the class inside targets=detection(label, box), not both")
            if targets.box is not None:
                return self._targets(targets.box, targets.label, dets, b, device)
            return self._top(None if targets.label is None else [int(targets.label)] * b, dets, device)
        if callable(targets) and not isinstance(targets, Tensor):
            raise TargetError(
                "targets: D-RISE explains a detection, not a score function; pass None (the top "
                "detection), labels, xcam.targets.detection(label, box) or float boxes (B, 4)"
            )
        if targets is None:
            return self._top(None if labels is None else self._labels(labels, b), dets, device)
        value = torch.as_tensor(targets)
        if not value.dtype.is_floating_point:  # ints: one class per image (or one for all)
            if labels is not None:
                raise TargetError("labels: targets already holds the classes; pass boxes as floats")
            return self._top(self._labels(targets, b), dets, device)
        box = value.to(device=device, dtype=torch.float32)
        if box.dim() == 1:
            box = box[None].expand(b, -1)
        if box.shape != (b, 4):
            raise TargetError(
                f"boxes must be (4,) or ({b}, 4) (x1, y1, x2, y2), got shape {tuple(box.shape)}"
            )
        return box, [None] * b if labels is None else self._labels(labels, b)

    @staticmethod
    def _labels(labels: object, b: int) -> list[int | None]:
        lab = torch.as_tensor(labels).reshape(-1)
        if lab.dtype.is_floating_point or lab.dtype == torch.bool or lab.numel() not in (1, b):
            raise TargetError(f"labels must be None, an int or {b} ints (one per image), got {labels!r}")
        return [int(v) for v in lab.expand(b).tolist()]

    @staticmethod
    def _top(labels: list[int | None] | None, dets: list[Mapping[str, Tensor]],
             device: torch.device) -> tuple[Tensor, list[int | None]]:
        """Each image's top-scoring detection (of its label, when given): its box and label."""
        boxes: list[Tensor] = []
        found: list[int | None] = []
        for i, d in enumerate(dets):
            label = None if labels is None else labels[i]
            keep = torch.ones_like(d["scores"], dtype=torch.bool) if label is None else d["labels"] == label
            if not bool(keep.any()):
                raise TargetError(
                    f"targets: image {i} has no detection{'' if label is None else f' of label {label}'} "
                    "to explain; pass its box (targets=xcam.targets.detection(label, box)) or lower "
                    "the detector's box_score_thresh"
                )
            k = int(torch.where(keep, d["scores"], torch.finfo(d["scores"].dtype).min).argmax())
            boxes.append(d["boxes"][k].float())
            found.append(int(d["labels"][k]))
        return torch.stack(boxes).to(device), found

    def __call__(self, inputs: Tensor, targets: object = None,
                 labels: int | Sequence[int] | Tensor | None = None) -> Explanation:
        """Explain one detection per image of ``inputs`` (B, C, H, W) (see the class doc).

        Returns:
            An :class:`~xcam.explanation.Explanation`: maps (B, H, W); ``targets`` the labels
            (``None`` for box-only targets); ``scores`` the weight of the clean image
            (``max_j IoU * similarity``, how well the detector finds the target unmasked).
        """
        x = check_inputs(inputs)
        b, _, height, width = x.shape
        size = (int(height), int(width))
        with torch.no_grad(), eval_mode(self.model):
            dets = self._clean(x)
            box, label_list = self._targets(targets, labels, dets, b, x.device)
            clean = torch.stack([detection_similarity(box[i], label_list[i], d)
                                 for i, d in enumerate(dets)]).float()
        explanation = self._explain(x, box, label_list, clean, size)
        self._check_result(explanation)
        return explanation

    def explain(self, inputs: Tensor, target: Any) -> Explanation:
        """Not used: D-RISE's targets are detections (see :meth:`__call__`)."""
        raise TargetError("D-RISE takes detection targets: call the explainer, explainer(inputs, targets)")

    def _explain(self, x: Tensor, box: Tensor, label_list: list[int | None], clean: Tensor,
                 size: tuple[int, int]) -> Explanation:
        b = int(x.shape[0])
        cell = self._cell(size)
        grids, shifts = rise_grids(self.n_masks, size, cell, self.p, make_generator(self.seed, x.device))
        total = x.new_zeros((b, size[0] * size[1]), dtype=torch.float32)
        per_batch = max(1, self.batch_size // b)
        with torch.no_grad(), eval_mode(self.model):
            for m0 in range(0, self.n_masks, per_batch):
                m1 = min(self.n_masks, m0 + per_batch)
                masks = rise_masks(grids[m0:m1], shifts[m0:m1], size, cell)
                m = m1 - m0
                masked = (x[None] * masks[:, None, None].to(x.dtype)).reshape(m * b, *x.shape[1:])
                dets = self._detect(masked)  # mask-major: row r is image r % B
                weights = torch.stack([detection_similarity(box[r % b], label_list[r % b], d)
                                       for r, d in enumerate(dets)]).float()
                total += weights.reshape(m, b).T @ masks.reshape(m, -1).float()
        maps = (total / self.n_masks).reshape(b, *size)
        known = all(v is not None for v in label_list)
        targets = torch.tensor(label_list, device=x.device) if known else None
        return self.make_explanation(maps, targets, clean)
