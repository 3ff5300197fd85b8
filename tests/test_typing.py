"""The top-level names are typed for mypy and pyright: the TYPE_CHECKING block of xcam/__init__.py.

``xcam.create`` is overloaded per registered name (a Literal name -> its class); the list is kept
in sync with the registry here. The slow test runs ``mypy --strict`` on a user script written as the
README is and reads the revealed types.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import xcam
from xcam.registry import EXPLAINERS

ROOT = Path(__file__).resolve().parents[1]


def _overloads() -> dict[str, str]:
    """Literal name -> returned class name, read from the ``create`` overloads."""
    tree = ast.parse((ROOT / "xcam" / "__init__.py").read_text(encoding="utf-8"))
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "create":
            ann = node.args.args[0].annotation
            if (isinstance(ann, ast.Subscript) and isinstance(ann.value, ast.Name)
                    and ann.value.id == "Literal"):
                assert isinstance(ann.slice, ast.Constant) and isinstance(node.returns, ast.Name)
                out[ann.slice.value] = node.returns.id
    return out


def test_create_overloads_match_the_registry():
    overloads = _overloads()
    assert overloads, "no Literal overloads of create found in xcam/__init__.py"
    registry = {name: EXPLAINERS.get(name).__name__ for name in xcam.list_explainers()}
    assert overloads == registry


def test_every_top_level_export_is_typed():
    """Each lazily exported name is imported in the TYPE_CHECKING block (or defined there)."""
    tree = ast.parse((ROOT / "xcam" / "__init__.py").read_text(encoding="utf-8"))
    typed: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for sub in ast.walk(node):
                if isinstance(sub, ast.ImportFrom):
                    typed |= {a.asname for a in sub.names if a.asname == a.name}
                if isinstance(sub, ast.FunctionDef):
                    typed.add(sub.name)
    assert set(xcam._EXPORTS) <= typed, sorted(set(xcam._EXPORTS) - typed)
    assert {"viz", "metrics", "targets", "methods"} <= typed


USER_SCRIPT = '''\
import torch
import xcam

model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1),
                            torch.nn.Flatten(), torch.nn.Linear(4, 2))
x = torch.rand(1, 3, 16, 16)
reveal_type(xcam.GradCAM)
reveal_type(xcam.create("gradcam", model))
reveal_type(xcam.create("gradcampp", model))
reveal_type(xcam.create("Grad-CAM++", model))
explanation = xcam.create("gradcam", model, layer="0")(x)
reveal_type(explanation)
reveal_type(xcam.viz.overlay)
reveal_type(xcam.metrics.deletion)
'''


@pytest.mark.slow
def test_mypy_strict_sees_real_types(tmp_path):
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent)) or shutil.which("mypy")
    if mypy is None:
        pytest.skip("mypy is not installed")
    (tmp_path / "user.py").write_text(USER_SCRIPT, encoding="utf-8")
    out = subprocess.run(
        [mypy, "--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), "user.py"],
        cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": ""},
    ).stdout
    revealed = [line.split("Revealed type is ", 1)[1] for line in out.splitlines()
                if "Revealed type is" in line]
    assert len(revealed) == 7, out
    assert revealed[0].endswith('-> xcam.methods.gradcam.GradCAM"'), revealed[0]
    assert revealed[1] == '"xcam.methods.gradcam.GradCAM"'
    assert revealed[2] == '"xcam.methods.gradcampp.GradCAMPlusPlus"'
    assert revealed[3] == '"xcam.methods.base.Explainer"'  # an alias: the base class
    assert revealed[4] == '"xcam.explanation.Explanation"'
    assert revealed[5].startswith('"def (image: ')  # a function with its signature, not Any
    assert "xcam.metrics" in revealed[6]
    assert "error" not in out.replace("Revealed", ""), out


@pytest.mark.slow
def test_pyright_sees_real_types(tmp_path):
    """pyright applies class decorators: the registry's decorator must give the class back typed."""
    pyright = shutil.which("pyright", path=str(Path(sys.executable).parent)) or shutil.which("pyright")
    if pyright is None:
        pytest.skip("pyright is not installed (the dev extra has it)")
    (tmp_path / "user.py").write_text(USER_SCRIPT, encoding="utf-8")
    # the editable install is an import hook pyright cannot follow: point it at the source tree
    (tmp_path / "pyrightconfig.json").write_text(f'{{"extraPaths": ["{ROOT.as_posix()}"]}}', encoding="utf-8")
    try:
        run = subprocess.run([pyright, "--pythonpath", sys.executable, "user.py"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.skip("pyright did not start (it fetches its Node package on first use)")
    revealed = [line.split('" is "', 1)[1].rstrip('"') for line in run.stdout.splitlines()
                if "information: Type of" in line]
    if not revealed:
        pytest.skip(f"pyright did not run: {run.stdout[-300:]} {run.stderr[-300:]}")
    assert len(revealed) == 7, run.stdout
    assert revealed[0] == "type[GradCAM]"
    assert revealed[1] == "GradCAM"
    assert revealed[2] == "GradCAMPlusPlus"
    assert revealed[3] == "Explainer"  # an alias: the base class
    assert revealed[4] == "Explanation"
    assert revealed[5].startswith("(image: ")  # a function with its signature, not Any
    assert "Any" != revealed[6]
