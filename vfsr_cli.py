"""Command-line entry points: ``train.py`` / ``test.py`` at the repo root and the ``vfsr-train`` / ``vfsr-test``
console scripts all land here.

They register the plugin, parse BasicSR's ``parse_options`` flags in kebab-case (``--opt``, ``--auto-resume``,
``--force-yml``, ``--local-rank``; BasicSR's own spellings ``-opt``, ``--auto_resume``, ``--force_yml``,
``--local_rank`` are aliases, so ``basicsr/train.py``-style commands work unchanged), with ``--help`` that explains
each, check the whole option file before anything is written or renamed, then hand over to BasicSR's own
``train_pipeline`` / ``test_pipeline`` (given the flags in BasicSR's spelling). The check lists every problem at
once, one ``vfsr-train: error: <key>: ...`` line each (``vfsr-test``, ``train.py``, ``test.py``: their own name),
and exits with code 2: unknown ``type`` names, keywords a network or loss does not take, missing dataset folders,
landmark/meta files and weights (all missing files at once, with where each is published), misspelled keys,
malformed ``--force-yml`` entries. BasicSR would only meet most of these after renaming the previous experiment
folder to ``*_archived_*`` and opening a log. Ctrl-C or SIGTERM ends a run with one line (for training, how to
resume) and exit code 130 or 143.
"""
import argparse
import difflib
import inspect
import os
import re
import shlex
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import vfsr_compat  # noqa: F401  (before basicsr)

import basicsr.data
import basicsr.test
import basicsr.train
import basicsr.utils.logger
import basicsr.utils.options
import torch
import yaml
from basicsr.utils.options import _postprocess_yml_value, ordered_yaml
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY

import vfsr_arch  # noqa: F401  (registers the plugin's networks)
import vfsr_data  # noqa: F401
import vfsr_eval  # noqa: F401  (registers the metrics that val.metrics may name)
import vfsr_models  # noqa: F401
from vfsr_eval.clip_scoring import ClipInputError
from vfsr_io.checkpoint import CheckpointError, check_pretrained_networks, missing_files_message, read_checkpoint
from vfsr_io.stopping import Terminated, stop_exit_code, stop_signals

REPO_ROOT = Path(__file__).resolve().parent
OPTION_FOLDERS = ('options', 'tests/options')  # where a mistyped -opt path looks for what was meant
KNOWN_SCHEDULERS = ('MultiStepLR', 'MultiStepRestartLR', 'CosineAnnealingRestartLR')
# Keys BasicSR's options.py or pipelines need: without them BasicSR stops with a KeyError (after archiving the
# previous experiment folder). Sections map to the keys they need.
REQUIRED_KEYS = ('name', 'num_gpu', 'datasets', 'path')
REQUIRED_TRAIN_KEYS = ('train', 'logger')
REQUIRED_SECTION_KEYS = {'val': ('save_img', )}
REQUIRED_TRAIN_SECTION_KEYS = {'train': ('total_iter', ), 'logger': ('print_freq', 'save_checkpoint_freq'),
                               'val': ('val_freq', )}
IO_BACKENDS = ('disk', 'lmdb', 'memcached')  # BasicSR's FileClient backends (vfsr's own datasets: disk, lmdb)
# Keys of a dataset section that BasicSR itself sets or its dataloader reads.
DATASET_BASE_KEYS = {'name', 'type', 'phase', 'scale'}
# Where a missing dataset comes from: (a part of its path, the hint). The first match wins.
DATASET_ORIGINS = (
    ('demo_tufs', 'make it with: python -m datasets_prep.make_demo_tufs --output datasets/demo_tufs'),
    ('tiny_vimeo', 'make it with: python -m datasets_prep.make_tiny_vimeo --output datasets/tiny_vimeo'),
    ('synthetic_vfhq', "make it with the KEEP demo's commands in docs/data.md (Demo and test data)"),
    ('TUFS145K', 'TUFs-145K, from the official VidFace repository: see docs/data.md (VidFace: TUFs-145K and IJB-C)'),
    ('IJBC', 'IJB-C, from NIST, in the TUFs layout: see docs/data.md (VidFace: TUFs-145K and IJB-C)'),
    ('VFHQ-Test', 'VFHQ-Test: see docs/data.md (KEEP: VFHQ-Test)'),
    ('VFHQ', 'VFHQ, aligned by python -m datasets_prep.align_vfhq_clips: see docs/data.md (KEEP: VFHQ (training))'),
)
# Where the weights files that option files name are published (a direct link where there is one), by file name.
PUBLISHED_WEIGHTS = {
    'KEEP-b76feb75.pth': 'https://github.com/jnjaby/KEEP/releases/download/v1.0.0/KEEP-b76feb75.pth',
    'KEEP_Asian-4765ebe0.pth': 'https://github.com/jnjaby/KEEP/releases/download/v1.0.0/KEEP_Asian-4765ebe0.pth',
    'codeformer.pth': 'https://github.com/sczhou/CodeFormer/releases/download/v0.1.0/codeformer.pth',
    'vqgan_code1024.pth': 'https://github.com/sczhou/CodeFormer/releases/download/v0.1.0/vqgan_code1024.pth',
    'gmflow_sintel-0c07dcb3.pth': 'the pretrained models of https://github.com/haofeixu/gmflow',
    'net_g_600000.pth': 'Baidu Pan, linked from https://github.com/yuangan/VidFace',
    'recognition_arcface_ir_se50.pth':
        'https://github.com/xinntao/facexlib/releases/download/v0.1.0/recognition_arcface_ir_se50.pth',
    'alignment_WFLW_4HG.pth': 'https://github.com/xinntao/facexlib/releases/download/v0.1.0/alignment_WFLW_4HG.pth',
    'vgg16-397923af.pth': 'https://download.pytorch.org/models/vgg16-397923af.pth',
    'vgg.pth': 'the lpips pip package (lpips/weights/v0.1/vgg.pth)',
    'spynet_sintel_final-3d2a1287.pth': 'the releases of https://github.com/XPixelGroup/BasicSR',
}
MADE_BY_TRAINING = 'made by an earlier training run (python train.py --opt options/<its options>.yml)'
WEIGHTS_HINT = 'see the weights table of README.md'


class OptionsError(ValueError):
    """An option file asks for something that does not exist; the message may hold several lines, one each."""


class Problems:
    """The errors and warnings found in one option file, each one line starting with the option key."""

    def __init__(self):
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, key: str, message: str) -> None:
        self.errors.append(f'{key}: {message}')

    def warn(self, key: str, message: str) -> None:
        self.warnings.append(f'{key}: {message}')


def did_you_mean(name, candidates) -> str:
    """'; did you mean X?' for the candidates close to ``name`` (spelling, or containing it, 'psnr' ->
    'calculate_psnr'), else ''."""
    name, candidates = str(name), sorted(set(candidates))
    containing = [candidate for candidate in candidates if name.lower() in candidate.lower() and name]
    close = difflib.get_close_matches(name, candidates, n=3)
    matches = list(dict.fromkeys(close + containing))[:3]
    return f'; did you mean {", ".join(matches)}?' if matches else ''


# ------------------------------------------------------------------------------------------------ command line
def command_name(is_train: bool) -> str:
    """The name errors start with: the script as it was called (``vfsr-train``, ``train.py``, ...)."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ''
    return name if name and not name.startswith('-') else ('vfsr-train' if is_train else 'vfsr-test')


def build_parser(is_train: bool) -> argparse.ArgumentParser:
    """BasicSR's ``parse_options`` flags in kebab-case, BasicSR's spellings as aliases, each explained
    (``vfsr-test`` has no ``--auto-resume``)."""
    command = 'train' if is_train else 'test'
    examples = (f'examples:\n  %(prog)s --opt options/{command}_vidface_tufs.yml\n'
                + ('  %(prog)s --opt options/train_vidface_tufs.yml --auto-resume\n'
                   '  %(prog)s --opt X.yml --force-yml train:total_iter=1000 datasets:train:batch_size_per_gpu=2\n'
                   '  torchrun --nproc-per-node=2 train.py --opt X.yml --launcher pytorch\n' if is_train else
                   '  %(prog)s --opt options/test_keep_vfhq.yml --force-yml num_gpu=0\n')
                + '\nThe option file is checked before anything is written; every problem is listed, exit code 2.\n'
                'BasicSR\'s spellings (-opt, --auto_resume, --force_yml, --local_rank) work too.\n'
                + ('Ctrl-C stops a run (exit code 130; SIGTERM: 143); --auto-resume continues it.\n' if is_train else
                   'Ctrl-C stops a run (exit code 130; SIGTERM: 143).\n')
                + 'Data and weights: README.md and docs/data.md.')
    parser = argparse.ArgumentParser(
        prog=command_name(is_train),
        description=('Train a network with BasicSR\'s trainer and vfsr\'s networks: experiments/<name>/ gets the\n'
                     'checkpoints, training states and log, tb_logger/<name>/ the tensorboard events.' if is_train else
                     'Test a network with BasicSR\'s test pipeline and vfsr\'s networks: results/<name>/ gets the\n'
                     'metrics, the log and, with val.save_img, the images.'),
        epilog=examples, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--opt', '-opt', required=True, metavar='OPTIONS.yml',
                        help='the YAML option file (options/*.yml): data, network, model, training and validation')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                        help='how processes were started: none (one process), pytorch (torchrun or '
                             'torch.distributed.launch), slurm (srun); see docs/distributed.md')
    if is_train:
        parser.add_argument('--auto-resume', '--auto_resume', dest='auto_resume', action='store_true',
                            help='continue from the newest complete training state in '
                                 'experiments/<name>/training_states/ (start afresh when there is none)')
    parser.add_argument('--debug', action='store_true',
                        help='prefix the name with debug_' + (' and validate, log and checkpoint every few '
                                                              'iterations, without tensorboard' if is_train else
                                                              ' (results go to results/debug_<name>/)'))
    parser.add_argument('--local-rank', '--local_rank', dest='local_rank', type=int, default=0,
                        help='process rank on this machine, set by torch.distributed.launch; torchrun sets '
                             'LOCAL_RANK instead')
    parser.add_argument('--force-yml', '--force_yml', dest='force_yml', nargs='+', default=None,
                        metavar='KEY:SUBKEY=VALUE',
                        help='override option values, keys joined by ":" (e.g. train:total_iter=1000 '
                             'datasets:train:batch_size_per_gpu=2); values in YAML spelling (~ for null)')
    return parser


def basicsr_argv(args: argparse.Namespace) -> list[str]:
    """The parsed flags in the spelling of BasicSR's ``parse_options``, which reads ``sys.argv`` itself."""
    argv = ['-opt', args.opt, '--launcher', args.launcher, '--local_rank', str(args.local_rank)]
    if getattr(args, 'auto_resume', False):
        argv.append('--auto_resume')
    if args.debug:
        argv.append('--debug')
    if args.force_yml:
        argv += ['--force_yml', *args.force_yml]
    return argv


# ----------------------------------------------------------------------------------------------- option files
def option_file_suggestion(opt_path: str) -> str:
    """'; did you mean X?' among the option files shipped with vfsr, as paths relative to the current folder."""
    shipped = [path for folder in OPTION_FOLDERS for path in sorted((REPO_ROOT / folder).glob('*.yml'))]
    close = difflib.get_close_matches(Path(opt_path).name, [path.name for path in shipped], n=3)
    if not close:
        return ''
    shown = []
    for name in close:
        path = next(path for path in shipped if path.name == name)
        relative = os.path.relpath(path)
        shown.append(str(path) if relative.startswith('..') else relative)
    return f'; did you mean {", ".join(shown)}?'


def load_options(opt_path: str, force_yml: list[str] | None = None, problems: Problems | None = None) -> dict:
    """Read a BasicSR option file and apply ``--force-yml key:sub=value`` overrides as BasicSR will.

    Malformed overrides go to ``problems`` (or raise :class:`OptionsError` when none is given); a missing or
    unreadable file raises :class:`OptionsError`.
    """
    if not os.path.isfile(opt_path):
        raise OptionsError(f'--opt: option file {opt_path!r} does not exist{option_file_suggestion(opt_path)}')
    try:
        with open(opt_path) as stream:
            opt = yaml.load(stream, Loader=ordered_yaml()[0])
    except yaml.YAMLError as error:
        mark = getattr(error, 'problem_mark', None)
        where = f' (line {mark.line + 1})' if mark is not None else ''
        raise OptionsError(f'--opt: {opt_path} is not valid YAML{where}: {getattr(error, "problem", error)}') from None
    if not isinstance(opt, dict):
        raise OptionsError(f'--opt: {opt_path} does not hold a mapping of options')
    own_problems = problems or Problems()
    for entry in force_yml or []:
        apply_force_yml(opt, entry, own_problems)
    if problems is None and own_problems.errors:
        raise OptionsError('\n'.join(own_problems.errors))
    return opt


def apply_force_yml(opt: dict, entry: str, problems: Problems) -> None:
    """Apply one ``key:sub=value`` override as BasicSR will (it may add a last key, never a section)."""
    key = f'--force-yml {entry}'
    if entry.count('=') != 1:
        problems.error(key, 'expected KEY:SUBKEY=VALUE with one "=", e.g. train:total_iter=1000')
        return
    keys, value = (part.strip() for part in entry.split('='))
    *parents, leaf = keys.split(':')
    node, path = opt, []
    for name in parents:
        if not isinstance(node.get(name), dict):
            where = ':'.join(path) or 'the top level'
            hint = did_you_mean(name, [k for k, v in node.items() if isinstance(v, dict)])
            problems.error(key, f'{where} has no section {name!r}{hint}')
            return
        node, path = node[name], path + [name]
    if not leaf:
        problems.error(key, 'the key is empty')
        return
    try:
        node[leaf] = _postprocess_yml_value(value)
    except (SyntaxError, ValueError, NameError, TypeError) as error:
        problems.error(key, f'cannot read the value {value!r}: {error}')


# ---------------------------------------------------------------------------------------------- registry names
def check_registered(registry, name, key: str) -> type:
    """The class registered as ``name`` (BasicSR also looks up ``name + '_basicsr'``), or a clear error."""
    if name in registry:
        return registry.get(name)
    if f'{name}_basicsr' in registry:
        return registry.get(f'{name}_basicsr')
    raise OptionsError(f'{key}: unknown {registry._name} type {name!r}{did_you_mean(name, registry._obj_map)}')


def check_keywords(callable_, kwargs: dict, key: str) -> None:
    """Keywords that the class does not accept (it has no ``**kwargs``) are named before anything is built."""
    parameters = inspect.signature(callable_).parameters
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return
    unknown = [name for name in kwargs if name not in parameters]
    if unknown:
        lines = [f'{key}.{name}: {callable_.__name__} takes no keyword {name!r}{did_you_mean(name, parameters)}'
                 for name in unknown]
        raise OptionsError('\n'.join(lines))


# ------------------------------------------------------------------------------------------------- free keys
OPTION_KEY_PATTERNS = (
    re.compile(r"\w*opt\w*(?:\[['\"]\w+['\"]\])*(?:\[|\.(?:get|pop|setdefault)\(\s*)['\"](\w+)['\"]"),
    re.compile(r"['\"](\w+)['\"]\s+(?:not\s+)?in\s+\w*opt"),
    re.compile(r"\w*opt\w*,\s*['\"](\w+)['\"]"),  # a helper given the section and a key: build_loss(train_opt, 'x')
    re.compile(r"or \{\}\)\.get\(\s*['\"](\w+)['\"]"),  # (opt.get('val') or {}).get('x')
)


@cache
def keys_read_by(*sources) -> frozenset[str]:
    """Option keys the given classes/modules read, found in their source (``opt['k']``, ``dataset_opt.get('k')``,
    ``'k' in train_opt`` ...). Dataset, model and trainer sections are free dictionaries in BasicSR, so this is
    how a misspelled key (``num_framez``) is told from one that some class reads."""
    keys = set()
    for source in sources:
        for cls in (inspect.getmro(source) if inspect.isclass(source) else (source, )):
            module = getattr(cls, '__module__', cls.__name__)
            if module in ('builtins', 'typing') or module.startswith('torch'):
                continue
            try:
                text = inspect.getsource(cls)
            except (OSError, TypeError):
                continue
            for pattern in OPTION_KEY_PATTERNS:
                keys.update(pattern.findall(text))
    return frozenset(keys)


def check_free_keys(section: dict, known: set[str], key: str, owner: str, problems: Problems) -> None:
    """A key nobody reads: an error when it is a near miss of a key that is read (a typo that would be silently
    ignored), a warning otherwise (a class could read it in a way the source scan does not see)."""
    for name in section:
        if name in known:
            continue
        hint = did_you_mean(name, known)
        if hint and difflib.get_close_matches(name, known, n=1, cutoff=0.75):
            problems.error(f'{key}.{name}', f'{owner} does not read this key{hint}')
        else:
            problems.warn(f'{key}.{name}', f'{owner} does not seem to read this key; it is ignored{hint}')


# ----------------------------------------------------------------------------------------------------- paths
def dataset_origin(path: str) -> str:
    for part, hint in DATASET_ORIGINS:
        if part in path:
            return f' ({hint})'
    return ' (see docs/data.md for the datasets and their preparation)'


def referenced_paths(opt: dict) -> Iterator[tuple[str, str, str, str]]:
    """Every path an option file names: (option key, last key, path, kind), kind 'folder' or 'file' for data,
    'weights' for network weights (``network_*.*_path``, ``path.pretrain_network_*``, ``path.resume_state``) and
    metric weights (``val.metrics.*.*_path``)."""
    for phase, dataset_opt in (opt.get('datasets') or {}).items():
        for name, value in (dataset_opt.items() if isinstance(dataset_opt, dict) else ()):
            if isinstance(value, str) and (name.startswith('dataroot') or name.endswith(('_file', '_path', '_root'))):
                kind = 'folder' if name.startswith('dataroot') and not name.endswith('_file') else 'file'
                yield f'datasets.{phase}.{name}', name, value, kind
    for key, network_opt in opt.items():
        if key.startswith('network_') and isinstance(network_opt, dict):
            for name, value in network_opt.items():
                if isinstance(value, str) and name.endswith('_path'):
                    yield f'{key}.{name}', name, value, 'weights'
    for name, value in (opt.get('path') or {}).items():
        if isinstance(value, str) and (name.startswith('pretrain_network') or name == 'resume_state'):
            yield f'path.{name}', name, value, 'weights'
    for metric, metric_opt in ((opt.get('val') or {}).get('metrics') or {}).items():
        for name, value in (metric_opt.items() if isinstance(metric_opt, dict) else ()):
            if isinstance(value, str) and name.endswith('_path'):  # LPIPS, ArcFace, GMFlow weights of a metric
                yield f'val.metrics.{metric}.{name}', name, value, 'weights'


def check_paths(opt: dict, problems: Problems) -> None:
    """Missing data is one line each; missing weights files are listed together in the words of
    :func:`vfsr_io.checkpoint.missing_files_message` (full path, where published, which folder)."""
    missing_weights = []
    for key, name, value, kind in referenced_paths(opt):
        if kind == 'weights':
            if not os.path.isfile(os.path.expanduser(value)):
                missing_weights.append((key, value, weights_origin(name, value), None))
        elif not os.path.exists(os.path.expanduser(value)):
            problems.error(key, f'{kind} {value!r} does not exist{dataset_origin(value)}')
    if missing_weights:
        problems.errors.extend(missing_files_message(missing_weights).splitlines())


def weights_origin(name: str, path: str) -> str:
    """Where a weights file named by option ``name`` is published, or which run makes it."""
    if Path(path).name in PUBLISHED_WEIGHTS:
        return PUBLISHED_WEIGHTS[Path(path).name]
    if name == 'resume_state' or Path(path).parts[:1] == ('experiments', ):
        return MADE_BY_TRAINING
    if name == 'vqgan_path':
        return f"the stage-1 checkpoint (train stage 1) or CodeFormer's {PUBLISHED_WEIGHTS['vqgan_code1024.pth']}"
    return WEIGHTS_HINT


# ---------------------------------------------------------------------------------------------------- checks
def check_options(opt: dict, is_train: bool, problems: Problems | None = None) -> Problems:
    """Check the whole option file; raise :class:`OptionsError` listing every error (one line each) unless a
    ``problems`` collector is given. Returns the collector (its warnings)."""
    own = problems or Problems()
    for name in REQUIRED_KEYS + (REQUIRED_TRAIN_KEYS if is_train else ()):
        if name not in opt:
            own.error(name, f'missing; BasicSR needs it{did_you_mean(name, opt)}')
    for required in (REQUIRED_SECTION_KEYS, REQUIRED_TRAIN_SECTION_KEYS if is_train else {}):
        for section, names in required.items():
            for name in names:
                if isinstance(opt.get(section), dict) and name not in opt[section]:
                    own.error(f'{section}.{name}', f'missing; BasicSR needs it{did_you_mean(name, opt[section])}')

    model_class = collect(own, check_registered, MODEL_REGISTRY, opt.get('model_type', 'SRModel'), 'model_type')
    for key, network_opt in opt.items():
        if key.startswith('network_') and isinstance(network_opt, dict):
            check_network(network_opt, key, own)
    for phase, dataset_opt in (opt.get('datasets') or {}).items():
        check_dataset(dataset_opt, f'datasets.{phase}', own)
    check_paths(opt, own)

    pipeline = basicsr.train if is_train else basicsr.test
    readers = (pipeline, basicsr.utils.options) + ((model_class, ) if model_class is not None else ())
    known_keys = keys_read_by(*readers)
    if is_train and isinstance(opt.get('train'), dict):
        check_train(opt['train'], known_keys, own)
    if is_train and isinstance(opt.get('logger'), dict):
        logger_known = keys_read_by(basicsr.train, basicsr.utils.logger) | {'wandb'}
        check_free_keys(opt['logger'], logger_known, 'logger', 'BasicSR\'s logger', own)
    if isinstance(opt.get('val'), dict):
        val_known = known_keys | {'metrics', 'pbar', 'suffix'}
        check_free_keys(opt['val'], val_known, 'val', 'BasicSR\'s validation', own)
        for name, metric_opt in (opt['val'].get('metrics') or {}).items():
            collect(own, check_registered, METRIC_REGISTRY, metric_opt.get('type'), f'val.metrics.{name}.type')
    if problems is None and own.errors:
        raise OptionsError('\n'.join(own.errors))
    return own


def collect(problems: Problems, check, *args):
    """Run one check that raises :class:`OptionsError`; record its lines and go on."""
    try:
        return check(*args)
    except OptionsError as error:
        problems.errors.extend(str(error).splitlines())
        return None


def check_network(network_opt: dict, key: str, problems: Problems) -> None:
    network_class = collect(problems, check_registered, ARCH_REGISTRY, network_opt.get('type'), f'{key}.type')
    if network_class is not None:
        kwargs = {name: value for name, value in network_opt.items() if name != 'type'}
        collect(problems, check_keywords, network_class, kwargs, key)


def check_dataset(dataset_opt: dict, key: str, problems: Problems) -> None:
    if not isinstance(dataset_opt, dict):
        problems.error(key, 'must be a section of dataset options')
        return
    dataset_class = collect(problems, check_registered, DATASET_REGISTRY, dataset_opt.get('type'), f'{key}.type')
    backend = (dataset_opt.get('io_backend') or {}).get('type', 'disk')
    if backend not in IO_BACKENDS:
        problems.error(f'{key}.io_backend.type', f'unknown backend {backend!r}; one of {", ".join(IO_BACKENDS)}'
                       f'{did_you_mean(backend, IO_BACKENDS)}')
    if dataset_class is not None:
        known = keys_read_by(dataset_class, basicsr.data, basicsr.train) | DATASET_BASE_KEYS
        check_free_keys(dataset_opt, known, key, dataset_class.__name__, problems)


def check_train(train_opt: dict, known_keys: frozenset[str], problems: Problems) -> None:
    for name, value in train_opt.items():
        if not isinstance(value, dict) or 'type' not in value:
            continue
        if name.startswith('optim_'):
            if not hasattr(torch.optim, str(value['type'])):
                problems.error(f'train.{name}.type', f'{value["type"]!r} is not a torch.optim optimizer'
                               f'{did_you_mean(value["type"], [n for n in dir(torch.optim) if n[0].isupper()])}')
        elif name == 'scheduler':
            if value['type'] not in KNOWN_SCHEDULERS:
                problems.error('train.scheduler.type', f'{value["type"]!r} is not one of {KNOWN_SCHEDULERS}')
        else:
            loss_class = collect(problems, check_registered, LOSS_REGISTRY, value['type'], f'train.{name}.type')
            if loss_class is not None:
                collect(problems, check_keywords, loss_class, {k: v for k, v in value.items() if k != 'type'},
                        f'train.{name}')
    check_free_keys(train_opt, set(known_keys), 'train', 'the model and trainer', problems)


def check_command_line(args: argparse.Namespace, is_train: bool) -> Problems:
    """Check the option file the parsed flags name, as BasicSR will read it."""
    problems = Problems()
    opt = load_options(args.opt, args.force_yml, problems)
    check_options(opt, is_train, problems)
    if not problems.errors:
        check_checkpoints(opt, problems)
    return problems


def check_checkpoints(opt: dict, problems: Problems) -> None:
    """The weights files the options name are weights-only checkpoints (mapped, not read), and each
    ``path.pretrain_network_*`` holds the weights of its network: one line per bad file."""
    try:
        for key, _, value, kind in referenced_paths(opt):
            if kind == 'weights':
                read_checkpoint(os.path.expanduser(value), key, mmap=True)
        check_pretrained_networks(opt)
    except CheckpointError as error:
        problems.errors.append(str(error))


def interrupted_line(args: argparse.Namespace, argv: list[str], root_path: str, is_train: bool) -> str:
    """What a stopped run says: that it stopped and, for training, how to continue (the newest training state
    BasicSR saved, read from disk now); ``argv`` are the flags as given, repeated in the command to rerun."""
    if not is_train:
        return 'interrupted; nothing to resume, rerun the command to test again'
    try:
        name = load_options(args.opt, args.force_yml)['name']
    except (OptionsError, KeyError, TypeError):
        name = None
    name = f'debug_{name}' if name and args.debug and 'debug' not in name else name
    states = sorted((Path(root_path) / 'experiments' / str(name) / 'training_states').glob('*.state'),
                    key=lambda path: int(path.stem) if path.stem.isdigit() else -1)
    command = shlex.join([command_name(is_train), *argv] + ([] if args.auto_resume else ['--auto-resume']))
    if name and states:
        return (f'interrupted; rerun with --auto-resume to continue from iteration {states[-1].stem} '
                f'(experiments/{name}/training_states/{states[-1].name}): {command}')
    return ('interrupted before the first training state (every logger.save_checkpoint_freq iterations); '
            f'--auto-resume would start afresh: {command}')


def run(root_path: str, is_train: bool) -> None:
    """Check the options, then run BasicSR's pipeline with experiments/results under ``root_path``. Every error
    is one line starting with the command's name; Ctrl-C and SIGTERM end the run with one line, exit code 130 or
    143."""
    prefix = f'{command_name(is_train)}: error:'
    argv = sys.argv[1:]
    args = build_parser(is_train).parse_args(argv)  # --help prints the flags and exits; a bad flag exits with code 2
    with stop_signals():
        try:
            run_checked(args, root_path, is_train, prefix)
        except (KeyboardInterrupt, Terminated) as stop:
            code = stop_exit_code(stop)
            print(f'\n{command_name(is_train)}: {interrupted_line(args, argv, root_path, is_train)}', file=sys.stderr)
            raise SystemExit(code) from None


def run_checked(args: argparse.Namespace, root_path: str, is_train: bool, prefix: str) -> None:
    try:
        problems = check_command_line(args, is_train)
    except OptionsError as error:
        problems = Problems()
        problems.errors.extend(str(error).splitlines())
    for line in problems.warnings:
        print(f'{command_name(is_train)}: warning: {line}', file=sys.stderr)
    if problems.errors:
        for line in problems.errors:
            print(f'{prefix} {line}', file=sys.stderr)
        raise SystemExit(2)
    sys.argv = [sys.argv[0], *basicsr_argv(args)]  # BasicSR's parse_options reads sys.argv in its own spelling
    try:
        (basicsr.train.train_pipeline if is_train else basicsr.test.test_pipeline)(root_path)
    except CheckpointError as error:  # weights of another network or configuration: one line, no traceback
        print(f'{prefix} {error}', file=sys.stderr)
        raise SystemExit(2) from None
    except ClipInputError as error:  # a clip a metric cannot score (no face, other size): names clip and frame
        print(f'{prefix} {error}', file=sys.stderr)
        raise SystemExit(1) from None


def train_main() -> None:
    """``vfsr-train -opt options/X.yml``: experiments/ and tb_logger/ go to the current directory."""
    run(os.getcwd(), is_train=True)


def test_main() -> None:
    """``vfsr-test -opt options/X.yml``: results/ go to the current directory."""
    run(os.getcwd(), is_train=False)
