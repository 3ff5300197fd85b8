"""``xcam.models`` is :mod:`xcam.evaluation.models`: the same module under its documented name.

The evaluation layer lives in :mod:`xcam.evaluation`; this alias keeps ``import xcam.models`` and
``from xcam.models import ...`` working (one module object, so patches and identities agree).
"""

import sys

from .evaluation import models as evaluation_models

sys.modules[__name__] = evaluation_models
