"""``python -m xcam``: the ``xcam`` command (see :mod:`xcam.cli`)."""

import sys

from .cli import main

sys.exit(main())
