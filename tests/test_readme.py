"""The README's Python blocks, then the user guide's, run as pasted, in order, in one namespace.

The guide continues from the README's quick start (a fresh folder as cwd for both).

A block preceded by ``<!-- readme-test: skip (reason) -->`` is left out (training for minutes, a data
set on someone else's disk); every other ```python block runs, so the Quick start cannot rot.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, ROOT / "docs" / "guide.md"]  # run in this order, sharing one namespace
FENCE = re.compile(r"(<!-- readme-test: skip[^>]*-->\s*)?```python\n(.*?)```", re.S)


def readme_blocks(page: Path = README) -> list[tuple[int, str, bool]]:
    """(line number, code, skipped) for every ```python block of a page (the README by default)."""
    text = page.read_text(encoding="utf-8")
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
        for page in PAGES:
            name = page.relative_to(ROOT).as_posix()
            for line, code, skipped in readme_blocks(page):
                if skipped:
                    continue
                try:
                    exec(compile(code, f"{name}:{line}", "exec"), namespace)
                except Exception as err:  # noqa: BLE001 - re-raised with the block's line
                    raise AssertionError(f"{name} block at line {line} failed: {err!r}") from err
    finally:
        os.chdir(cwd)
    # the Quick start ends with an overlay written next to the photo
    overlays = sorted(p.name for p in tmp_path.glob("*.png"))
    assert overlays, "the Quick start wrote no overlay file"


LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("page", [README, *sorted((ROOT / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_relative_links_resolve_inside_the_repository(page: Path) -> None:
    """A reader of the repository (or of the built site) has every page a link points to."""
    text = page.read_text(encoding="utf-8")
    assert "../shared" not in text, f"{page.name} points into the development machine's shared folder"
    for target in LINK.findall(text):
        if "://" in target or target.startswith("mailto:"):
            continue
        resolved = (page.parent / target).resolve()
        assert resolved.exists(), f"{page.name} links to {target}, which does not exist"
        inside = ROOT in resolved.parents or resolved == ROOT
        assert inside, f"{page.name} links outside the repository: {target}"
