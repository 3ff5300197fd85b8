"""The ``xcam`` command line: :func:`main` (the console script) and the demo.

``xcam.cli.commands`` parses the arguments and runs each command; ``xcam.cli.demo`` is the
``xcam demo`` command (EfficientNet-Lite0 on sample photos).
"""

from __future__ import annotations

from .commands import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    build_parser,
    main,
)

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_PARTIAL",
           "EXIT_INTERRUPTED"]
