"""The one loader of every checkpoint vfsr reads: network weights, training states, LPIPS and facexlib weights.

Files are read with ``torch.load(weights_only=True)`` only: nothing is ever unpickled. When a file cannot be used,
:class:`CheckpointError` says in one line which case it is:

* the file is missing (:class:`MissingCheckpointError`, also a ``FileNotFoundError``), in the words of
  :func:`missing_files_message`, which every command uses for the files it needs and never downloads;
* it is not a PyTorch checkpoint (not written by ``torch.save``, truncated, a plain pickle);
* it contains pickled code or objects (classes, functions): refused, naming them;
* it holds no network weights (e.g. a training state given as ``pretrain_network_g``);
* it is a checkpoint of a different network: how many keys are missing and unexpected, with examples;
* it is the right network built with a different configuration: which option to change.

A network takes part in the last two cases through two optional methods:
``upgrade_checkpoint(state_dict) -> state_dict`` renames keys of older checkpoints (e.g. ``Discriminator3D``), and
``checkpoint_configuration_hint(state_dict) -> str | None`` names the option a checkpoint of the same network needs
(e.g. KEEP's ``cft_list``).

Usage::

    load_network_weights(net, 'weights/KEEP/KEEP-b76feb75.pth', wrapper_keys=('params_ema', 'params'))
    state = read_checkpoint('experiments/x/training_states/8.state', 'training state')
"""
import os
import pickletools
import warnings
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from copy import deepcopy
from pathlib import Path

import torch
from torch import nn

# BasicSR saves networks under these keys; official releases add 'model' (GMFlow) or none at all.
DEFAULT_WRAPPER_KEYS = ('params_ema', 'params')
EXAMPLES = 3


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the message is one line naming the file and the reason."""


class MissingCheckpointError(CheckpointError, FileNotFoundError):
    """A checkpoint file does not exist; vfsr never downloads one."""


def missing_files_message(missing: Iterable[tuple[str, str | os.PathLike, str | None, str | os.PathLike | None]]) \
        -> str:
    """The one message for files that vfsr needs and never downloads, one line per file, all of them at once.

    ``missing`` holds ``(what, path, published_at, folder)``: what the file is (an option key such as
    ``'path.pretrain_network_g'``, or ``'KEEP weights'``), the path as given, where it is published (a direct link
    or a page; None when it is made by another step, e.g. an earlier training stage) and the folder to put it in
    (None: the folder of ``path``). Each line says what is missing, the full path looked at (and that a relative
    path is relative to the current folder), where it is published and which folder it goes in, e.g.::

        path.pretrain_network_g 'weights/KEEP/KEEP-b76feb75.pth': file not found; where to get it:
        https://github.com/jnjaby/KEEP/releases/download/v1.0.0/KEEP-b76feb75.pth; put it in weights/KEEP/
        (looked for /home/me/vfsr/weights/KEEP/KEEP-b76feb75.pth, relative to the current folder; vfsr never
        downloads)

    (one line in the message).
    """
    lines = []
    for what, path, published_at, folder in missing:
        path = Path(path)
        looked_at = Path(os.path.abspath(os.path.expanduser(path)))
        relative = '' if path.expanduser().is_absolute() else ', relative to the current folder'
        folder = Path(folder) if folder is not None else path.parent
        where = f'; where to get it: {published_at}' if published_at else ''
        lines.append(f'{what} {str(path)!r}: file not found{where}; put it in {str(folder).rstrip(os.sep)}{os.sep} '
                     f'(looked for {looked_at}{relative}; vfsr never downloads)')
    return '\n'.join(lines)


def read_checkpoint(path, what: str = 'checkpoint', published_at: str | None = None, mmap: bool = False) -> dict:
    """The dict saved in ``path`` (tensors, numbers, strings and plain containers), loaded on the CPU with
    ``weights_only=True``. ``what`` names the file in errors (e.g. ``'path.pretrain_network_g'``). ``mmap`` maps a
    torch.save archive instead of reading it, for a cheap check of a large file."""
    path = Path(path)
    label = f'{what} {str(path)!r}'
    if not path.is_file():
        raise MissingCheckpointError(missing_files_message([(what, path, published_at, None)]))
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of files it then refuses anyway
            warnings.filterwarnings('ignore', message='Detected pickle protocol', category=UserWarning)
            checkpoint = torch.load(path, map_location='cpu', weights_only=True,
                                    mmap=mmap and zipfile.is_zipfile(path))
    except Exception:  # noqa: BLE001 (torch raises many types; each is explained below, never re-tried unsafely)
        raise CheckpointError(f'{label}: {why_unreadable(path)}') from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'{label}: holds a {type(checkpoint).__name__}, not a dict of tensors')
    return checkpoint


def why_unreadable(path: Path) -> str:
    """Why ``torch.load(path, weights_only=True)`` failed, found by reading the pickle opcodes (never running them)."""
    if zipfile.is_zipfile(path):
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # noqa: BLE001 (a zip archive that torch cannot read: not torch.save's layout)
            return 'not a PyTorch checkpoint (a zip archive that torch.save did not write, or a damaged one)'
        if unsafe:
            return refused(unsafe)
        return 'not a readable PyTorch checkpoint (the archive is damaged or written by an incompatible torch)'
    globals_used = pickled_globals(path)
    if globals_used is None:
        return 'not a PyTorch checkpoint (neither a torch.save archive nor a pickle; truncated or another format?)'
    if globals_used:
        return refused(globals_used)
    return 'not a PyTorch checkpoint (a plain pickle that torch.save did not write)'


def refused(names: Sequence[str]) -> str:
    shown = ', '.join(sorted(set(names))[:EXAMPLES])
    return (f'contains pickled code or objects ({shown}); refused, vfsr loads only tensors and plain containers '
            '(save the state_dict of the network instead)')


def pickled_globals(path: Path) -> list[str] | None:
    """The classes/functions named by the pickles in ``path`` (read with ``pickletools``, never executed), without
    those torch.save itself writes (``torch.*``, ``collections.OrderedDict``); None if the file is no pickle.
    A legacy (pre-zip) torch.save file is a few pickles followed by raw tensor data."""
    names = []
    with open(path, 'rb') as stream:
        for index in range(4):
            try:
                names += globals_of_one_pickle(stream)
            except Exception:  # noqa: BLE001 (pickletools raises ValueError/EOFError/... where no pickle is)
                if index == 0:
                    return None
                break
    return [name for name in names if not name.startswith('torch.') and name != 'collections.OrderedDict']


def globals_of_one_pickle(stream) -> list[str]:
    names, pushed, memo = [], [], {}
    for opcode, arg, _ in pickletools.genops(stream):
        if opcode.name in ('GLOBAL', 'INST'):
            names.append(str(arg).replace(' ', '.'))
        elif opcode.name == 'STACK_GLOBAL' and len(pushed) >= 2:
            names.append(f'{pushed[-2]}.{pushed[-1]}')
        elif opcode.name == 'MEMOIZE' and pushed:
            memo[len(memo)] = pushed[-1]
        elif opcode.name in ('BINPUT', 'LONG_BINPUT', 'PUT') and pushed:
            memo[arg] = pushed[-1]
        elif opcode.name in ('BINGET', 'LONG_BINGET', 'GET'):
            pushed.append(memo.get(arg, ''))
        elif isinstance(arg, str):
            pushed.append(arg)
    return names


def network_state_dict(checkpoint: Mapping, wrapper_keys: Sequence[str], label: str) -> dict:
    """The state_dict under the first present of ``wrapper_keys``, else the checkpoint itself; ``module.`` prefixes
    (DataParallel) are removed."""
    state_dict = next((checkpoint[key] for key in wrapper_keys if key in checkpoint), checkpoint)
    if not isinstance(state_dict, Mapping) or not state_dict or \
            not all(isinstance(value, torch.Tensor) for value in state_dict.values()):
        keys = ', '.join(map(str, list(checkpoint)[:6]))
        expected = f' or one under {"/".join(wrapper_keys)}' if wrapper_keys else ''
        raise CheckpointError(f'{label}: holds no network weights (top-level keys: {keys}); expected a state_dict'
                              f'{expected}')
    return {key.removeprefix('module.'): value for key, value in state_dict.items()}


def check_state_dict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], label: str) -> None:
    """Raise :class:`CheckpointError` unless ``state_dict`` has exactly the keys and shapes of ``module``."""
    expected = module.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    resized = [key for key in expected if key in state_dict and state_dict[key].shape != expected[key].shape]
    if not (missing or unexpected or resized):
        return
    network = type(module).__name__
    other_configuration = f'{label}: a checkpoint of {network} built with a different configuration'
    hint_of = getattr(module, 'checkpoint_configuration_hint', None)
    hint = hint_of(state_dict) if hint_of is not None else None
    if hint:
        raise CheckpointError(f'{other_configuration}: {hint}')
    if not (missing or unexpected):
        key = resized[0]
        raise CheckpointError(
            f'{other_configuration}: {len(resized)} tensors differ in shape, e.g. {key} is '
            f'{tuple(state_dict[key].shape)} in the file and {tuple(expected[key].shape)} here; set the size options '
            f'of {network} (widths, depths, ...) to those it was trained with')
    differences = (f'{len(missing)} of its {len(expected)} keys are missing{examples(missing)} and '
                   f'{len(unexpected)} are unexpected{examples(unexpected)}')
    # Submodules on both sides that the other lacks (or no key in common): another network. Otherwise the file
    # has a subset or superset of the submodules, or other layers inside them: another configuration.
    network_only, file_only = top_level_names(expected) - top_level_names(state_dict), \
        top_level_names(state_dict) - top_level_names(expected)
    if (network_only and file_only) or len(missing) == len(expected):
        raise CheckpointError(f'{label}: a checkpoint of a different network, not {network}: {differences}')
    raise CheckpointError(f'{other_configuration} (other submodules or layer counts): {differences}')


def examples(keys: Sequence[str]) -> str:
    return f' ({", ".join(keys[:EXAMPLES])}{", ..." if len(keys) > EXAMPLES else ""})' if keys else ''


def top_level_names(keys) -> set[str]:
    return {key.split('.')[0] for key in keys}


def checked_state_dict(module: nn.Module, path, wrapper_keys: Sequence[str] = DEFAULT_WRAPPER_KEYS,
                       published_at: str | None = None, what: str | None = None, strict: bool = True,
                       mmap: bool = False) -> dict:
    """The state_dict in ``path`` for ``module`` (older key names upgraded), checked against ``module``'s keys and
    shapes when ``strict``. ``module`` may live on the meta device: only its keys and shapes are read."""
    what = what or f'{type(module).__name__} weights'
    state_dict = network_state_dict(read_checkpoint(path, what, published_at, mmap), wrapper_keys,
                                    f'{what} {str(path)!r}')
    upgrade = getattr(module, 'upgrade_checkpoint', None)
    if upgrade is not None:
        state_dict = upgrade(state_dict)
    if strict:
        check_state_dict(module, state_dict, f'{what} {str(path)!r}')
    return state_dict


def load_network_weights(module: nn.Module, path, wrapper_keys: Sequence[str] = DEFAULT_WRAPPER_KEYS,
                         published_at: str | None = None, what: str | None = None, strict: bool = True) -> None:
    """Load the weights in ``path`` into ``module``: a plain state_dict or one under the first present of
    ``wrapper_keys``. With ``strict`` (the default) keys and shapes must match exactly, else the one-line
    :class:`CheckpointError` says whether the file belongs to another network or another configuration."""
    module.load_state_dict(checked_state_dict(module, path, wrapper_keys, published_at, what, strict), strict=strict)


def check_pretrained_networks(opt: Mapping) -> None:
    """Check a BasicSR option dict before anything is written: each ``path.pretrain_network_<x>`` must hold the
    weights of ``network_<x>`` (keys and shapes, unless ``strict_load_<x>`` is false), else :class:`CheckpointError`.
    The networks are built on the meta device (no memory) where their constructors allow it."""
    from basicsr.utils.registry import ARCH_REGISTRY

    def build_network(network_opt):  # not basicsr's build_network: its log call would set up the logger too early
        network_opt = deepcopy(dict(network_opt))
        return ARCH_REGISTRY.get(network_opt.pop('type'))(**network_opt)

    path_opt = opt.get('path') or {}
    for name, path in path_opt.items():
        suffix = name.removeprefix('pretrain_network_')
        network_opt = opt.get(f'network_{suffix}')
        if suffix == name or not path or not isinstance(network_opt, Mapping):
            continue
        try:
            with torch.device('meta'), warnings.catch_warnings():  # weights a constructor loads are not kept there
                warnings.filterwarnings('ignore', message='.*non-meta parameter', category=UserWarning)
                network = build_network(network_opt)
        except (NotImplementedError, RuntimeError):  # a constructor that reads tensor data (VidFace's sinusoid
            network = build_network(network_opt)  # table) builds on the CPU; a real error is raised there again
        param_key = path_opt.get(f'param_key_{suffix}', 'params')
        checked_state_dict(network, path, (param_key, 'params') if param_key else (), what=f'path.{name}',
                           strict=path_opt.get(f'strict_load_{suffix}', True), mmap=True)
