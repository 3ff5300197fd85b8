"""``xcam.compare`` is :mod:`xcam.evaluation.compare`: call it, or import from it.

``xcam.compare(model, data, ...)`` calls :func:`xcam.evaluation.compare.compare`; this alias
keeps ``import xcam.compare`` and ``from xcam.compare import compare, Comparison`` working (one
module object).
"""

import sys

from .evaluation import compare as evaluation_compare

sys.modules[__name__] = evaluation_compare
