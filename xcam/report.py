"""``xcam.report`` is :mod:`xcam.evaluation.report`: the same module under its documented name.

The evaluation layer lives in :mod:`xcam.evaluation`; this alias keeps ``import xcam.report`` and
``from xcam.report import ...`` working (one module object, so patches and identities agree).
"""

import sys

from .evaluation import report as evaluation_report

sys.modules[__name__] = evaluation_report
