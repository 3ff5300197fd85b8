"""Slow references for RISE, D-RISE, Poly-CAM and Opti-CAM (issue 17): one mask / one layer at a time."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def rise_mask(grid: Tensor, shift: tuple[int, int], size: tuple[int, int], cell: tuple[int, int]) -> Tensor:
    """One RISE mask (paper, section 3.2): upsample the (gh, gw) grid to (gh+1, gw+1) cells, crop."""
    gh, gw = grid.shape
    up = F.interpolate(grid[None, None].double(), size=((gh + 1) * cell[0], (gw + 1) * cell[1]),
                       mode="bilinear", align_corners=False)[0, 0]
    dy, dx = shift
    return up[dy:dy + size[0], dx:dx + size[1]]


def rise(model: nn.Module, x: Tensor, cls: int, masks: Tensor, p: float) -> Tensor:
    """Eq. 6 of Petsiuk et al.: ``1 / (N p) sum_i softmax(f(x * M_i))[cls] M_i``; (H, W) float64."""
    total = torch.zeros(x.shape[-2:], dtype=torch.float64)
    with torch.no_grad():
        for mask in masks:
            prob = torch.softmax(model((x * mask.to(x.dtype))[None]).double(), dim=1)[0, cls]
            total += float(prob) * mask.double()
    return total / (masks.shape[0] * p)


def drise(detector: nn.Module, x: Tensor, box: Tensor, label: int, masks: Tensor) -> Tensor:
    """D-RISE (Petsiuk et al., CVPR 2021) one mask at a time: ``1/N sum_i w_i M_i``; (H, W) float64.

    ``w_i = max_j IoU(box, box_j) * score_j * [label_j == label]`` over the detections of
    ``x * M_i`` (a torchvision detector: a label and a score per detection).
    """
    total = torch.zeros(x.shape[-2:], dtype=torch.float64)
    with torch.no_grad():
        for mask in masks:
            det = detector([x * mask.to(x.dtype)])[0]
            best = 0.0
            for b, s, lab in zip(det["boxes"].double(), det["scores"].double(), det["labels"].tolist()):
                ix = (min(box[2], b[2]) - max(box[0], b[0])).clamp(min=0)
                iy = (min(box[3], b[3]) - max(box[1], b[1])).clamp(min=0)
                inter = float(ix * iy)
                union = float((box[2] - box[0]) * (box[3] - box[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter
                if lab == label:
                    best = max(best, inter / union * float(s))
            total += best * mask.double()
    return total / masks.shape[0]


def polycam(model: nn.Module, modules: list[tuple[nn.Module, bool]], x: Tensor, cls: int) -> Tensor:
    """Poly-CAM (Englebert et al., 2024) from its recursion, one layer and one channel at a time.

    ``A_l = ReLU(sum_k mean(dS/dF_k) F_k)``; ``S_L = A_L``;
    ``S_l = ReLU(A_l / max(Up(Down(A_l)), 1e-12) * Up(S_{l+1}))``; (H, W) float64. ``modules``:
    ``(module, use_input)`` pairs, finest first (``use_input``: the module's input, not its output).
    """
    from .capture import features_and_grad

    def resize(m: Tensor, size: tuple[int, ...]) -> Tensor:
        return F.interpolate(m[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]

    cams = []
    for module, use_input in modules:
        feat, grad = features_and_grad(model, module, x, cls, use_input)
        cam = torch.zeros(feat.shape[-2:], dtype=torch.float64)
        for k in range(feat.shape[0]):
            cam += grad[k].mean() * feat[k]
        cams.append(torch.relu(cam))
    s = cams[-1]
    for a in reversed(cams[:-1]):
        norm = resize(resize(a, tuple(s.shape)), tuple(a.shape)).clamp(min=1e-12)
        s = torch.relu(a / norm * resize(s, tuple(a.shape)))
    return resize(s, tuple(x.shape[-2:]))


def opticam(model: nn.Module, module: nn.Module, x: Tensor, cls: int, steps: int, lr: float,
            use_input: bool = False) -> Tensor:
    """Opti-CAM (Zhang et al., 2024) for one (C, H, W) image, written plainly; (H, W).

    ``u`` starts at 0; each Adam step maximizes ``f(x * n(Up(sum_k softmax(u)_k F_k)))[cls]``;
    ``n`` is min-max normalization.
    """
    store: dict[str, Tensor] = {}

    def keep(t: Tensor) -> None:
        store["f"] = t.detach().clone()

    if use_input:
        handle = module.register_forward_pre_hook(lambda m, args: keep(args[0]))
    else:
        handle = module.register_forward_hook(lambda m, args, out: keep(out))
    model.eval()
    with torch.no_grad():
        model(x[None])
    handle.remove()
    feat = store["f"][0]

    def saliency(u: Tensor) -> Tensor:
        s = (torch.softmax(u, dim=0)[:, None, None] * feat).sum(0)
        s = F.interpolate(s[None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
        return (s - s.min()) / (s.max() - s.min())

    u = torch.zeros(feat.shape[0], requires_grad=True)
    opt = torch.optim.Adam([u], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = -model((x * saliency(u))[None])[0, cls]
        loss.backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        return saliency(u)
