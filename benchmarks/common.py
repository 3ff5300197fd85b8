"""Shared timing helpers: interleaved rounds, medians, ratio tables.

Every contender of a comparison runs once per round, in the same order, for several rounds; the
median over rounds is reported. Interleaving spreads machine noise (other processes, frequency
changes) evenly over the contenders, so that ratios measured in one run are meaningful.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["interleaved", "format_table", "Row"]

Row = tuple[str, float, dict[str, float]]


def interleaved(
    contenders: dict[str, Callable[[], Any]], rounds: int = 5, warmup: int = 1
) -> dict[str, float]:
    """Median seconds per call of each contender, timed in interleaved rounds."""
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def format_table(
    title: str, medians: dict[str, float], references: dict[str, str]
) -> str:
    """A Markdown table: contender, median ms, and its ratio to each reference contender.

    Args:
        title: heading printed above the table.
        medians: seconds per call by contender.
        references: column title -> contender name to divide by (e.g. "vs bare" -> "bare pass").
    """
    cols = ["contender", "median ms", *references]
    lines = [f"### {title}", "", "| " + " | ".join(cols) + " |",
             "|" + "|".join("---" for _ in cols) + "|"]
    for name, sec in medians.items():
        ratios = [f"{sec / medians[ref]:.2f}x" if ref in medians else "-" for ref in references.values()]
        lines.append(f"| {name} | {sec * 1e3:.1f} | " + " | ".join(ratios) + " |")
    return "\n".join(lines)
