"""vfsr networks. Importing this package registers every ``*_arch.py`` into BasicSR's ``ARCH_REGISTRY``."""
import vfsr_compat  # noqa: F401  (must run before basicsr is imported)

from vfsr_registry import import_modules

arch_modules = import_modules(__name__, __file__, ('_arch',))
