"""Every workaround vfsr needs to run stock PyPI ``basicsr`` 1.4.2 and ``facexlib`` 0.3.0 on today's stack.

Import this module before ``basicsr`` (the vfsr packages do so first thing). Each fix is one small function,
applied once at import, and each has a test in ``tests/test_compat.py`` that fails if the workaround stops working.
"""
import importlib.util
import sys

import torchvision.transforms.functional


def alias_functional_tensor():
    """basicsr 1.4.2 imports ``torchvision.transforms.functional_tensor``, removed in torchvision 0.17."""
    if importlib.util.find_spec('torchvision.transforms.functional_tensor') is None:
        sys.modules['torchvision.transforms.functional_tensor'] = torchvision.transforms.functional


alias_functional_tensor()
