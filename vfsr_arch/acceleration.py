"""Speed options shared by the networks, the benchmarks and the training models: bf16 autocast that keeps the
precision-sensitive parts in float32, and ``torch.compile``, each falling back to the plain path with a one-line
warning where the machine or the torch build cannot do it.

* :func:`float32_under_autocast` marks a function whose result decides something discrete or geometric (the code
  logits whose argmax picks the codebook entries, the Kalman gain, KEEP's flow estimator): under autocast it runs
  in float32 on float32 inputs; without autocast it is the plain function. :func:`float32_for_exact_codes` marks
  the VQGAN encoders, whose latent picks the codes: float32 under ``bf16`` and ``fp16``, low precision under
  ``bf16-fast``. What bf16 does to the answer is measured by ``benchmarks/bench_bf16_agreement.py``
  (docs/benchmarks.md).
* :func:`autocast_context` is the autocast context for a precision name (``fp32``, ``bf16``, ``bf16-fast``,
  ``fp16``); :func:`training_autocast` the one of a training step, from the option ``train.autocast``.
* :func:`compile_network` compiles a network's submodules with ``torch.compile`` (inductor), or leaves the network
  unchanged where it cannot compile.
* :func:`keep_freed_memory` makes glibc's malloc reuse freed activation buffers instead of returning them to the
  operating system, so a CPU forward stops paying page faults for every large tensor it allocates.
"""
import contextvars
import ctypes
import ctypes.util
import functools
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn

AUTOCAST_DTYPES = {'fp32': None, 'bf16': torch.bfloat16, 'bf16-fast': torch.bfloat16, 'fp16': torch.float16}
# True inside autocast_context('bf16-fast'): the encoders (float32_for_exact_codes) then run in bf16 too
_ENCODERS_IN_LOW_PRECISION = contextvars.ContextVar('vfsr_encoders_in_low_precision', default=False)


def _to_float32(value):
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.float()
    return value


def to_float32(outputs):
    """``outputs`` (a tensor, or tuples / lists / dicts of them) with every floating-point tensor in float32: a
    network's results under autocast, made ready for float32 losses."""
    return torch.utils._pytree.tree_map(_to_float32, outputs)


def float32_under_autocast(function: Callable) -> Callable:
    """Decorator: under autocast (on the device of the first tensor argument) run ``function`` with autocast off and
    its floating-point tensor arguments (also those in lists, tuples, dicts) in float32; otherwise call it unchanged
    (bit-identical float32 path)."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        leaves = torch.utils._pytree.tree_leaves((args, kwargs))  # tensors also inside lists, tuples, dicts
        device_type = next((leaf.device.type for leaf in leaves if isinstance(leaf, torch.Tensor)), 'cpu')
        if not torch.is_autocast_enabled(device_type):
            return function(*args, **kwargs)
        with torch.autocast(device_type, enabled=False):
            return function(*to_float32(args), **to_float32(kwargs))
    return wrapper


def float32_for_exact_codes(function: Callable) -> Callable:
    """Decorator for a function whose output picks the codes (the VQGAN encoders): like
    :func:`float32_under_autocast` under ``bf16`` / ``fp16`` autocast (the codes stay those of float32), but left to
    autocast under ``bf16-fast`` (faster; a small fraction of the codes may change)."""
    in_float32 = float32_under_autocast(function)

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        return (function if _ENCODERS_IN_LOW_PRECISION.get() else in_float32)(*args, **kwargs)
    return wrapper


class _Autocast:
    """``torch.autocast`` that also tells :func:`float32_for_exact_codes` whether the encoders may run in low
    precision; reusable like ``torch.autocast`` (enter, exit, enter again)."""

    def __init__(self, device: str, dtype: torch.dtype, encoders_in_low_precision: bool):
        self.autocast = torch.autocast(device, dtype=dtype)
        self.encoders_in_low_precision = encoders_in_low_precision
        self.tokens = []

    def __enter__(self):
        self.tokens.append(_ENCODERS_IN_LOW_PRECISION.set(self.encoders_in_low_precision))
        self.autocast.__enter__()

    def __exit__(self, *exc_info):
        self.autocast.__exit__(*exc_info)
        _ENCODERS_IN_LOW_PRECISION.reset(self.tokens.pop())


def precision_supported(precision: str, device: str) -> bool:
    """Whether ``device`` ('cpu', 'cuda') computes ``precision`` natively: bf16 needs AVX512-BF16 or AMX on a CPU
    (otherwise oneDNN emulates it, slower than float32), fp16 autocast is for GPUs."""
    if precision == 'fp32':
        return True
    if device == 'cuda':
        return torch.cuda.is_available() and (precision == 'fp16' or torch.cuda.is_bf16_supported())
    if AUTOCAST_DTYPES[precision] == torch.bfloat16:
        return torch.backends.mkldnn.is_available() and (torch.cpu._is_avx512_bf16_supported()
                                                         or torch.cpu._is_amx_tile_supported())
    return False


def autocast_context(precision: str, device: str) -> AbstractContextManager:
    """The autocast context for ``precision`` on ``device``; a one-line warning and no autocast (float32) where the
    machine cannot compute that precision natively. ``bf16`` keeps the codes of float32 (the encoders run in
    float32); ``bf16-fast`` runs them in bf16 too."""
    if precision not in AUTOCAST_DTYPES:
        raise ValueError(f'precision must be one of {list(AUTOCAST_DTYPES)}, got {precision!r}')
    if AUTOCAST_DTYPES[precision] is None:
        return nullcontext()
    if not precision_supported(precision, device):
        warnings.warn(f'{precision} is not supported natively on this {device} (torch {torch.__version__}); '
                      f'running in fp32', stacklevel=2)
        return nullcontext()
    return _Autocast(device, AUTOCAST_DTYPES[precision], encoders_in_low_precision=precision == 'bf16-fast')


def training_autocast(precision: str | None, device: torch.device | str) -> AbstractContextManager:
    """The autocast context of a training step's forward for the option ``train.autocast`` (``precision``):
    ``fp32`` (default, None: no autocast) or ``bf16`` (no gradient scaler needed; fp16 would need one, so it is
    refused)."""
    precision = precision or 'fp32'
    if precision not in ('fp32', 'bf16'):
        raise ValueError(f"train.autocast must be 'bf16' or 'fp32', got {precision!r}")
    return autocast_context(precision, torch.device(device).type)


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_freed_memory() -> bool:
    """Make this process's glibc malloc keep freed memory for reuse: no ``mmap`` per large allocation and no
    trimming of the heap. Returns whether it applied (False, silently, off glibc: macOS, Windows, musl).

    By default glibc serves each allocation above its mmap threshold (at most 32 MB) with a fresh ``mmap`` and hands
    it back with ``munmap`` when freed, and trims the heap's top; every large activation of a CPU forward (a
    (1, 64, 512, 512) tensor is 32-64 MB) is then page-faulted and zeroed by the kernel before the operator can
    write it: a clone of such a tensor took 8 ms instead of 1.5 ms into a reused buffer. Keeping the memory cut the
    time of CodeFormer and KEEP at 512x512 on CPU by 21-35% (docs/benchmarks.md). Arithmetic is unchanged; the cost
    is memory: the process keeps what it freed instead of returning it (CodeFormer fp32 peak 512 -> 860 MB). Call
    it once, early, in a process that runs networks on the CPU (the benchmarks, the restore CLI); it is
    process-wide.
    """
    library = ctypes.util.find_library('c')
    if library is None:
        return False
    try:
        mallopt = ctypes.CDLL(library).mallopt
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1))


def compiler_available() -> str | None:
    """None if ``torch.compile`` (inductor) builds and runs a kernel on this machine, else why not (one line). It
    compiles a one-line function (seconds on an idle machine, up to minutes on a loaded 2-core one)."""
    import torch._dynamo
    try:
        # errors must surface here even after compile_network switched dynamo's suppress_errors on
        with torch._dynamo.config.patch(suppress_errors=False):
            probe = torch.compile(lambda x: torch.sigmoid(x) * 2, backend='inductor')
            probe(torch.ones(8))
        return None
    except Exception as error:  # a missing C++ compiler, an unsupported platform or build: all mean "run eagerly"
        return f'{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ""}'[:300]


def compile_network(network: nn.Module, enabled: bool = True, **compile_kwargs) -> nn.Module:
    """Compile the submodules of ``network`` in place with ``torch.compile`` (inductor) and return it; where this torch
    build or machine cannot compile, a one-line warning and ``network`` unchanged.

    Each child module (each entry of a ``ModuleList``/``ModuleDict``/``Sequential``, which the networks often
    iterate themselves) is compiled with ``nn.Module.compile``, so the network keeps its class, its methods
    (``KEEP.step``, ``restore_video``) and its state_dict keys, and the Python control flow around the heavy parts
    (KEEP's recurrence over frames) stays eager. Later failures inside a graph fall back to eager for that graph
    (``torch._dynamo.config.suppress_errors``, set globally).
    """
    if not enabled:
        return network
    reason = compiler_available()
    if reason is not None:
        warnings.warn(f'torch.compile cannot compile here ({reason}); running eagerly', stacklevel=2)
        return network
    import torch._dynamo
    torch._dynamo.config.suppress_errors = True
    for child in network.children():
        for module in (child.values() if isinstance(child, nn.ModuleDict) else
                       child if isinstance(child, (nn.ModuleList, nn.Sequential)) else [child]):
            module.compile(**compile_kwargs)
    return network
