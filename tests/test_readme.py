"""The README's Python blocks run as pasted, in order, in one namespace (a fresh folder as cwd).

A block preceded by ``<!-- readme-test: skip (reason) -->`` is left out (training for minutes, a data
set on someone else's disk); every other ```python block runs, so the Quick start cannot rot.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"(<!-- readme-test: skip[^>]*-->\s*)?```python\n(.*?)```", re.S)


def readme_blocks() -> list[tuple[int, str, bool]]:
    """(line number, code, skipped) for every ```python block of the README."""
    text = README.read_text(encoding="utf-8")
    return [(text[: m.start(2)].count("\n") + 1, m.group(2), m.group(1) is not None)
            for m in FENCE.finditer(text)]


def test_readme_has_a_runnable_quick_start() -> None:
    blocks = readme_blocks()
    runnable = [code for _, code, skipped in blocks if not skipped]
    assert runnable, "the README has no runnable Python block"
    assert "load_images" in runnable[0] and "overlay" in runnable[0]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_readme_python_blocks_run_as_pasted(tmp_path: Path) -> None:
    pytest.importorskip("skimage")
    pytest.importorskip("efficientnet_lite_pytorch")
    namespace: dict[str, object] = {"__name__": "__readme__"}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for line, code, skipped in readme_blocks():
            if skipped:
                continue
            try:
                exec(compile(code, f"README.md:{line}", "exec"), namespace)
            except Exception as err:  # noqa: BLE001 - re-raised with the block's line
                raise AssertionError(f"README.md block at line {line} failed: {err!r}") from err
    finally:
        os.chdir(cwd)
    # the Quick start ends with an overlay written next to the photo
    overlays = sorted(p.name for p in tmp_path.glob("*.png"))
    assert overlays, "the Quick start wrote no overlay file"
