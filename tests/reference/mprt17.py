"""Slow references for smooth MPRT and efficient MPRT (Hedström et al., 2024): loops, one image,
one noisy copy and one layer at a time, scipy for the rank correlation and numpy for the histogram."""

from __future__ import annotations

import copy

import numpy as np
import scipy.stats
import torch
from torch import Tensor, nn

from xcam.metrics.sanity import reinitialize


def entropy(a: np.ndarray, n_bins: int = 100) -> float:
    """Quantus' discrete_entropy: scipy entropy of numpy's histogram with n_bins bins."""
    histogram, _ = np.histogram(a, bins=n_bins)
    return float(scipy.stats.entropy(pk=histogram))


def _denoised(factory, model: nn.Module, x: Tensor, target: int, noise: Tensor, sigma: float) -> np.ndarray:
    """(1/N) sum_n |e(x + sigma * noise_n)| with the clean input as the last copy, one copy at a time."""
    explainer = factory(model)
    copies = [x + sigma * noise[n] for n in range(noise.shape[0])] + [x]
    maps = [np.abs(explainer(c[None], [target]).maps[0].detach().double().numpy()) for c in copies]
    return np.mean(maps, axis=0)


def smooth_mprt(factory, model: nn.Module, x: Tensor, targets: list[int], layers: list[str],
                n_samples: int, noise_level: float, seed: int) -> np.ndarray:
    """(B, L) Spearman correlations, sample by sample, the model copied and randomized per layer."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn((n_samples - 1, *x.shape), generator=gen)  # the metric's draw, all samples
    out = np.zeros((x.shape[0], len(layers)))
    for b in range(x.shape[0]):
        sigma = noise_level * float(x[b].max() - x[b].min())
        original = _denoised(factory, model, x[b], targets[b], noise[:, b], sigma)
        randomized = copy.deepcopy(model)
        modules = dict(randomized.named_modules())
        for j, name in enumerate(layers):
            reinitialize(modules[name], seed + j)
            new = _denoised(factory, randomized, x[b], targets[b], noise[:, b], sigma)
            out[b, j] = scipy.stats.spearmanr(original.ravel(), new.ravel())[0]
    return out


def efficient_mprt(factory, model: nn.Module, x: Tensor, targets: list[int], layers: list[str],
                   seed: int, n_bins: int = 100) -> np.ndarray:
    """(B,) (H(e_random) - H(e)) / H(e), with every layer of ``layers`` re-initialized."""
    randomized = copy.deepcopy(model)
    modules = dict(randomized.named_modules())
    for j, name in enumerate(layers):
        reinitialize(modules[name], seed + j)
    out = []
    def one(m: nn.Module, b: int) -> float:
        return entropy(factory(m)(x[b:b + 1], [targets[b]]).maps[0].detach().double().numpy(), n_bins)

    for b in range(x.shape[0]):
        before, after = one(model, b), one(randomized, b)
        out.append((after - before) / before if before > 0 else np.nan)
    return np.array(out)
