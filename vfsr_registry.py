"""Import every module of a plugin package whose file name ends with a suffix, so its classes register.

BasicSR finds networks, datasets and models by name in its registries; a class is only there once the module that
defines it has been imported. Each vfsr package calls :func:`import_modules` from its ``__init__`` so that
``import vfsr_arch`` (etc.) registers all of its ``*_arch.py`` files exactly once (Python caches imported modules).
"""
import importlib
from pathlib import Path


def import_modules(package_name: str, package_file: str, suffixes: tuple[str, ...]) -> list:
    """Import ``package_name.<stem>`` for every ``<stem><suffix>.py`` next to ``package_file``, in sorted order."""
    folder = Path(package_file).parent
    stems = sorted(path.stem for path in folder.glob('*.py') if path.stem.endswith(suffixes))
    return [importlib.import_module(f'{package_name}.{stem}') for stem in stems]
