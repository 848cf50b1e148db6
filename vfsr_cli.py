"""Command-line entry points: ``train.py`` / ``test.py`` at the repo root and the ``vfsr-train`` / ``vfsr-test``
console scripts all land here.

They register the plugin, check the option file before anything is written (an unknown ``type``, an unexpected
network keyword, a missing dataset folder or weights file is one clear error line and exit code 2, with nothing
created under ``experiments/`` or ``results/``), then hand over to BasicSR's own ``train_pipeline`` /
``test_pipeline``.
"""
import argparse
import difflib
import inspect
import os
import sys

import vfsr_compat  # noqa: F401  (before basicsr)

import torch
import yaml
from basicsr.utils.options import _postprocess_yml_value, ordered_yaml
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY

import vfsr_arch  # noqa: F401  (registers the plugin's networks)
import vfsr_data  # noqa: F401
import vfsr_models  # noqa: F401
from vfsr_arch.checkpoint import CheckpointError

KNOWN_SCHEDULERS = ('MultiStepLR', 'MultiStepRestartLR', 'CosineAnnealingRestartLR')


class OptionsError(ValueError):
    """An option file asks for something that does not exist."""


def load_options(opt_path: str, force_yml: list[str] | None = None) -> dict:
    """Read a BasicSR option file and apply ``--force_yml key:sub=value`` overrides as BasicSR will."""
    if not os.path.isfile(opt_path):
        raise OptionsError(f'-opt: option file {opt_path!r} does not exist')
    with open(opt_path) as stream:
        opt = yaml.load(stream, Loader=ordered_yaml()[0])
    for entry in force_yml or []:
        keys, value = (part.strip() for part in entry.split('=', 1))
        *parents, leaf = keys.split(':')
        node = opt
        for key in parents:
            node = node[key]
        node[leaf] = _postprocess_yml_value(value)
    return opt


def check_registered(registry, name, key: str) -> type:
    """The class registered as ``name`` (BasicSR also looks up ``name + '_basicsr'``), or a clear error."""
    if name in registry:
        return registry.get(name)
    if f'{name}_basicsr' in registry:
        return registry.get(f'{name}_basicsr')
    close = difflib.get_close_matches(str(name), list(registry._obj_map), n=3)
    hint = f'; did you mean {", ".join(close)}?' if close else ''
    raise OptionsError(f'{key}: unknown {registry._name} type {name!r}{hint}')


def check_keywords(callable_, kwargs: dict, key: str) -> None:
    """Keywords that the class does not accept (it has no ``**kwargs``) are named before anything is built."""
    try:
        inspect.signature(callable_).bind_partial(**kwargs)
    except TypeError as error:
        raise OptionsError(f'{key}: {error}') from None


def check_options(opt: dict, is_train: bool) -> None:
    """Raise :class:`OptionsError` naming the first option key that cannot work."""
    check_registered(MODEL_REGISTRY, opt.get('model_type', 'SRModel'), 'model_type')
    for key, network_opt in opt.items():
        if key.startswith('network_') and isinstance(network_opt, dict):
            kwargs = {name: value for name, value in network_opt.items() if name != 'type'}
            network_class = check_registered(ARCH_REGISTRY, network_opt.get('type'), f'{key}.type')
            check_keywords(network_class, kwargs, key)
    for phase, dataset_opt in (opt.get('datasets') or {}).items():
        check_registered(DATASET_REGISTRY, dataset_opt.get('type'), f'datasets.{phase}.type')
        for name, value in dataset_opt.items():
            if (name.startswith('dataroot') or name == 'meta_info_file') and value and not os.path.exists(value):
                raise OptionsError(f'datasets.{phase}.{name}: {value!r} does not exist')
    for name, value in (opt.get('path') or {}).items():
        if name.startswith('pretrain_network') and value and not os.path.isfile(os.path.expanduser(value)):
            raise OptionsError(f'path.{name}: weights file {value!r} does not exist')
    if is_train:
        for name, value in (opt.get('train') or {}).items():
            if not isinstance(value, dict) or 'type' not in value:
                continue
            if name.startswith('optim_'):
                if not hasattr(torch.optim, value['type']):
                    raise OptionsError(f'train.{name}.type: {value["type"]!r} is not a torch.optim optimizer')
            elif name == 'scheduler':
                if value['type'] not in KNOWN_SCHEDULERS:
                    raise OptionsError(f'train.scheduler.type: {value["type"]!r} is not one of {KNOWN_SCHEDULERS}')
            else:
                loss_class = check_registered(LOSS_REGISTRY, value['type'], f'train.{name}.type')
                check_keywords(loss_class, {k: v for k, v in value.items() if k != 'type'}, f'train.{name}')
    for name, metric_opt in ((opt.get('val') or {}).get('metrics') or {}).items():
        check_registered(METRIC_REGISTRY, metric_opt.get('type'), f'val.metrics.{name}.type')


def check_command_line(is_train: bool) -> None:
    """Parse the same ``-opt`` / ``--force_yml`` BasicSR will see, and check that option file."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('-opt', required=True)
    parser.add_argument('--force_yml', nargs='+', default=None)
    args, _ = parser.parse_known_args()
    check_options(load_options(args.opt, args.force_yml), is_train)


def run(root_path: str, is_train: bool) -> None:
    """Check the options, then run BasicSR's pipeline with experiments/results under ``root_path``."""
    try:
        check_command_line(is_train)
    except OptionsError as error:
        print(f'vfsr: error: {error}', file=sys.stderr)
        raise SystemExit(2) from None
    from basicsr.test import test_pipeline
    from basicsr.train import train_pipeline

    try:
        (train_pipeline if is_train else test_pipeline)(root_path)
    except CheckpointError as error:  # a weights file or training state that cannot be used: one line, no traceback
        print(f'vfsr: error: {error}', file=sys.stderr)
        raise SystemExit(2) from None


def train_main() -> None:
    """``vfsr-train -opt options/X.yml``: experiments/ and tb_logger/ go to the current directory."""
    run(os.getcwd(), is_train=True)


def test_main() -> None:
    """``vfsr-test -opt options/X.yml``: results/ go to the current directory."""
    run(os.getcwd(), is_train=False)
