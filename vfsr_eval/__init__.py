"""vfsr evaluation: the metrics of the VidFace and KEEP papers, clip-level scoring, ``vfsr-evaluate`` and the papers'
tables.

Importing this package registers every ``*_metric.py`` into BasicSR's ``METRIC_REGISTRY``, so option files can
name the metrics under ``val.metrics`` (``train.py`` / ``test.py`` import it).
"""
import vfsr_compat  # noqa: F401  (must run before basicsr is imported)

from vfsr_registry import import_modules

metric_modules = import_modules(__name__, __file__, ('_metric', ))
