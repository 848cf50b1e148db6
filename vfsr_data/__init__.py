"""vfsr datasets. Importing this package registers every ``*_dataset.py`` into BasicSR's ``DATASET_REGISTRY``."""
import vfsr_compat  # noqa: F401  (must run before basicsr is imported)

from vfsr_registry import import_modules

dataset_modules = import_modules(__name__, __file__, ('_dataset',))
