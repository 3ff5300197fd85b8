"""Run every benchmark module (``bench_*.py``) or the ones named: ``python -m benchmarks [cam ...]``.

Each module defines ``main(quick: bool) -> str`` returning Markdown tables; they are printed and
written to ``benchmarks/results/<name>.md``.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from pathlib import Path

import benchmarks


def main() -> None:
    names = sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules(benchmarks.__path__)
                   if m.name.startswith("bench_"))
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("only", nargs="*", choices=[*names, []], help="benchmarks to run")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, smaller inputs")
    args = parser.parse_args()
    out_dir = Path(__file__).parent / "results"
    out_dir.mkdir(exist_ok=True)
    for name in args.only or names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        text = module.main(quick=args.quick)
        print(text, flush=True)
        (out_dir / f"{name}.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
