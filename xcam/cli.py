"""The ``xcam`` command."""

from __future__ import annotations

import argparse
import sys

from . import __version__

__all__ = ["main"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out)
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    from .registry import list_explainers, list_metrics

    print("explainers:", ", ".join(list_explainers()))
    print("metrics:", ", ".join(list_metrics()) or "-")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xcam", description="Explain what vision models look at.")
    parser.add_argument("--version", action="version", version=f"xcam {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="EfficientNet-Lite0 on sample photos, every method, a grid PNG")
    demo.add_argument("--out", default="demo-output", help="output folder (default: demo-output)")
    demo.set_defaults(func=_demo)
    lst = sub.add_parser("list", help="list the registered explainers and metrics")
    lst.set_defaults(func=_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 error, 2 usage)."""
    args = build_parser().parse_args(argv)
    from .errors import XcamError

    try:
        return int(args.func(args))
    except (XcamError, ModuleNotFoundError) as err:
        print(f"xcam: error: {err}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
