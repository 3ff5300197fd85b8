"""RISE (Petsiuk, Das & Saenko, BMVC 2018): randomized input sampling."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import (
    check_channels_last,
    check_number,
    check_positive_int,
    check_seed,
    eval_mode,
    make_generator,
)
from ..capture import Capture, capture
from ..errors import InputError, InputTypeError
from ..explanation import Explanation
from ..outputs import OutputFn, logits
from ..registry import register_explainer
from ..targets import Target
from ._perturb import channels_last_for, clean_pass, run_model
from .base import Explainer

__all__ = ["RISE", "rise_cells", "rise_grids", "rise_masks"]


def rise_cells(size: tuple[int, int], cell_size: int | tuple[int, int] | None) -> tuple[int, int]:
    """The cell (height, width) in pixels: ``cell_size``, or the paper's 7 x 7 grid when None."""
    if cell_size is None:
        return math.ceil(size[0] / 7), math.ceil(size[1] / 7)
    if isinstance(cell_size, int):
        return cell_size, cell_size
    return cell_size[0], cell_size[1]


def rise_grids(n_masks: int, size: tuple[int, int], cell: tuple[int, int], p: float,
               generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Draw the low-resolution binary grids and the random shifts of ``n_masks`` RISE masks.

    Each grid has ``ceil(H / cell_h) x ceil(W / cell_w)`` cells, each 1 with probability ``p``;
    each shift is uniform in ``[0, cell_h) x [0, cell_w)``. Drawn on the generator's device, in
    this order (grids, then shifts), so that a seed gives bit-identical masks.

    Returns:
        ``(grids, shifts)``: (N, gh, gw) float grids of 0 / 1 and (N, 2) long shifts (dy, dx).
    """
    gh, gw = math.ceil(size[0] / cell[0]), math.ceil(size[1] / cell[1])
    dev = generator.device
    grids = (torch.rand((n_masks, gh, gw), generator=generator, device=dev) < p).float()
    dy = torch.randint(0, cell[0], (n_masks,), generator=generator, device=dev)
    dx = torch.randint(0, cell[1], (n_masks,), generator=generator, device=dev)
    return grids, torch.stack([dy, dx], dim=1)


def rise_masks(grids: Tensor, shifts: Tensor, size: tuple[int, int], cell: tuple[int, int]) -> Tensor:
    """Smooth (N, H, W) masks from :func:`rise_grids`: upsample, then crop with the shift.

    The (gh, gw) grid is upsampled bilinearly (``align_corners=False``) to
    ``((gh + 1) cell_h, (gw + 1) cell_w)`` and the H x W window starting at (dy, dx) is kept, as
    in the paper (section 3.2) and the authors' code.
    """
    n, gh, gw = grids.shape
    up = F.interpolate(grids[:, None], size=((gh + 1) * cell[0], (gw + 1) * cell[1]),
                       mode="bilinear", align_corners=False)[:, 0]
    rows = shifts[:, 0, None] + torch.arange(size[0], device=grids.device)  # (N, H)
    cols = shifts[:, 1, None] + torch.arange(size[1], device=grids.device)  # (N, W)
    idx = torch.arange(n, device=grids.device)[:, None, None]
    return up[idx, rows[:, :, None], cols[:, None, :]]


@register_explainer("rise")
class RISE(Explainer):
    """RISE: the saliency of a pixel is the expected score over random masks that keep it.

    Petsiuk, Das & Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box Models",
    BMVC 2018. ``N`` masks ``M_i`` are drawn as in section 3.2: a binary grid of cells of
    ``cell_size`` pixels, each cell kept with probability ``p``, upsampled bilinearly to
    ``(grid + 1) x cell`` pixels and cropped to H x W at a uniform random shift within one cell
    (:func:`rise_grids`, :func:`rise_masks`), so the masks are smooth. The map is the Monte Carlo
    estimate of the paper's eq. 6, with the normalisation ``1 / (N * E[M]) = 1 / (N p)``::

        map(λ) = 1 / (N p) * sum_{i=1}^{N} S_c(x ⊙ M_i) * M_i(λ)

    where ``S_c`` is the target class's softmax probability, as in the paper (for a callable or
    unit target, its raw score). ``targets=None`` explains the clean input's top class, chosen once
    on the clean input; the masked copies follow that class. The masked input is ``x * M_i``
    (masked pixels become 0, the mean of normalized inputs). The reported ``scores`` are the clean
    input's target scores (logits for class targets), as for every explainer.

    The same ``N`` masks serve every sample of the batch; they are drawn on the input's device
    from a generator seeded with ``seed`` (bit-identical for a seed and device).

    Cost: ``B * (N + 1)`` images, without gradients, in batches of at most ``batch_size``.

    Args:
        model: the model to explain (a black box: only its outputs are read).
        n_masks: number of masks ``N`` (default 4000, the paper's for ResNet-50).
        p: probability of keeping a cell, in (0, 1] (default 0.5, the paper's).
        cell_size: cell height and width in pixels (an int, or a pair); ``None`` (default) gives
            the paper's 7 x 7 grid (``ceil(H / 7)`` pixels per cell).
        batch_size: most masked images per forward pass (default 64).
        seed: seed of the masks; ``None`` draws one from torch's global RNG.
        channels_last: layout of the masked batches (see :class:`~xcam.methods.Occlusion`).
        output: see :class:`~xcam.methods.Explainer`.
    """

    needs_gradients = False
    needs_layer = False
    deterministic = False

    def __init__(
        self,
        model: nn.Module,
        n_masks: int = 4000,
        p: float = 0.5,
        cell_size: int | tuple[int, int] | None = None,
        batch_size: int = 64,
        seed: int | None = None,
        channels_last: bool | None = None,
        *,
        output: OutputFn | None = None,
    ) -> None:
        super().__init__(model, output=output)
        self.n_masks = check_positive_int("n_masks", n_masks)
        self.p = check_number("p", p)
        if not 0 < self.p <= 1:
            raise InputError(f"p (the probability of keeping a cell) must be in (0, 1], got {p!r}")
        if cell_size is not None:
            pair = (cell_size, cell_size) if isinstance(cell_size, int) else cell_size
            if (isinstance(cell_size, bool) or not isinstance(pair, (tuple, list)) or len(pair) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair)):
                raise InputTypeError(
                    f"cell_size must be None, an int or a pair of ints (height, width), got {cell_size!r}"
                )
            if min(pair) < 1:
                raise InputError(f"cell_size must be positive, got {cell_size!r}")
            cell_size = (int(pair[0]), int(pair[1]))
        self.cell_size: tuple[int, int] | None = cell_size
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.seed = check_seed(seed)
        self.channels_last = check_channels_last(channels_last)

    def params(self) -> dict[str, Any]:
        """Hyper-parameters, recorded in every :class:`~xcam.explanation.Explanation`."""
        return {"n_masks": self.n_masks, "p": self.p, "cell_size": self.cell_size,
                "batch_size": self.batch_size, "seed": self.seed}

    def forward_passes(self, batch_size: int) -> int:
        """Images run through the model for a batch of ``batch_size``: ``B * (N + 1)``."""
        return batch_size * (self.n_masks + 1)

    def masks(self, size: tuple[int, int], device: torch.device | str = "cpu") -> Tensor:
        """The (N, H, W) masks a call on an H x W input on ``device`` uses (with a fixed ``seed``)."""
        cell = rise_cells(size, self.cell_size)
        grids, shifts = rise_grids(self.n_masks, size, cell, self.p,
                                   make_generator(self.seed, torch.device(device)))
        return rise_masks(grids, shifts, size, cell)

    def _scores(self, target: Target, output: object, cap: Capture) -> Tensor:
        """The target class's softmax probability, or the callable's / unit's raw score."""
        classes = target.classes
        if classes is not None:
            return torch.softmax(logits(output, self.output), dim=1).gather(1, classes[:, None])[:, 0]
        return target.score(output, cap)

    def explain(self, inputs: Tensor, target: Target) -> Explanation:
        """Score the input under every mask and sum the masks weighted by the scores (eq. 6)."""
        b, _, height, width = inputs.shape
        size = (int(height), int(width))
        cell = rise_cells(size, self.cell_size)
        grids, shifts = rise_grids(self.n_masks, size, cell, self.p,
                                   make_generator(self.seed, inputs.device))
        cl = channels_last_for(self.channels_last, inputs, self.model)
        indices, clean, fixed = clean_pass(self.model, inputs, target)
        taps = fixed.taps(self.model)
        total = inputs.new_zeros((b, height * width), dtype=torch.float32)
        per_batch = max(1, self.batch_size // b)  # masks per forward pass, each over the B samples
        with torch.no_grad(), eval_mode(self.model):
            for m0 in range(0, self.n_masks, per_batch):
                m1 = min(self.n_masks, m0 + per_batch)
                masks = rise_masks(grids[m0:m1], shifts[m0:m1], size, cell)  # (m, H, W)
                m = m1 - m0
                masked = (inputs[None] * masks[:, None, None].to(inputs.dtype)).reshape(
                    m * b, *inputs.shape[1:])  # mask-major: row r is sample r % B
                samples = torch.arange(b, device=inputs.device).repeat(m)
                with capture(self.model, taps, eval_mode=False) as cap:
                    output = run_model(self.model, masked, cl, explicit=self.channels_last is True)
                    scores = self._scores(fixed.follow(samples), output, cap).float()
                total += scores.reshape(m, b).T @ masks.reshape(m, -1).float()
        maps = (total / (self.n_masks * self.p)).reshape(b, height, width)
        return self.make_explanation(maps, indices, clean)
