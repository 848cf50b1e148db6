"""vfsr models, losses and metrics.

Importing this package registers every ``*_model.py`` (``MODEL_REGISTRY``), ``*_loss.py`` (``LOSS_REGISTRY``) and
``*_metric.py`` (``METRIC_REGISTRY``) into BasicSR's registries.
"""
import vfsr_compat  # noqa: F401  (must run before basicsr is imported)

from vfsr_models.optimizers import any_torch_optimizer
from vfsr_registry import import_modules

any_torch_optimizer()

model_modules = import_modules(__name__, __file__, ('_model', '_loss', '_metric'))
