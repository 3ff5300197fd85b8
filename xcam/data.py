"""``xcam.data`` is :mod:`xcam.evaluation.data`: the same module under its documented name.

The evaluation layer lives in :mod:`xcam.evaluation`; this alias keeps ``import xcam.data`` and
``from xcam.data import ...`` working (one module object, so patches and identities agree).
"""

import sys

from .evaluation import data as evaluation_data

sys.modules[__name__] = evaluation_data
