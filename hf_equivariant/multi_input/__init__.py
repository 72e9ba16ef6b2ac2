"""Moved to :mod:`hf_equivariant.models.multi_input` (data helpers to :mod:`hf_equivariant.datasets.digits`).

This package keeps the 0.1.0 import paths working for the 0.1.x release line: ``hf_equivariant.multi_input`` and
its sub-modules ``configuration``, ``layers``, ``linear``, ``modeling``, ``groups`` and ``data`` are aliases.
"""

import sys as _sys

from ..actions import registry as _registry
from ..datasets import digits as _digits
from ..models import multi_input as _family
from ..models.multi_input import *  # noqa: F401,F403
from ..models.multi_input import __all__  # noqa: F401
from ..models.multi_input import configuration as _configuration
from ..models.multi_input import layers as _layers
from ..models.multi_input import linear as _linear
from ..models.multi_input import modeling as _modeling

for _name, _module in (("configuration", _configuration), ("layers", _layers), ("linear", _linear),
                       ("modeling", _modeling), ("groups", _family), ("data", _digits)):
    _sys.modules[f"{__name__}.{_name}"] = _module
    globals()[_name] = _module
del _registry
