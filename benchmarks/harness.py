"""What the benchmark scripts share: one measurement per fresh Python process (so its peak memory is its own), timing
after one warm-up call, the memory a process uses (CUDA allocations, or its resident set from /proc), and the hardware
limit: the machine (CPU model and ISA, or GPU), its matmul and 3x3-convolution rooflines for the dtype at hand, the work
of a forward (FlopCounterMode, CPU attention included) and the fraction of the limit a network reaches."""
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def run_fresh(args: list[str], **kwargs) -> tuple[dict | None, str]:
    """``python *args`` in a new process: (the JSON object it printed last, or None if it failed; its stderr).
    ``kwargs`` go to ``subprocess.run`` (``env``, ``cwd``)."""
    completed = subprocess.run([sys.executable, *args], capture_output=True, text=True, **kwargs)
    if completed.returncode:
        return None, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1]), completed.stderr


def timed_runs(function: Callable[[int], object], runs: int,
               warm_up: bool = True) -> tuple[object, list[float], list[float]]:
    """Call ``function(index)`` for index 0 (the warm-up; skipped with ``warm_up=False``, then None) to ``runs``: the
    warm-up's result, and the wall and process CPU seconds (all threads) of each later call."""
    warm_up = function(0) if warm_up else None
    wall_seconds, cpu_seconds = [], []
    for index in range(1, runs + 1):
        start, cpu_start = time.perf_counter(), time.process_time()
        function(index)
        wall_seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu_start)
    return warm_up, wall_seconds, cpu_seconds


def resident_mb(field: str) -> float:
    """``VmRSS`` (current) or ``VmHWM`` (peak) resident set of this process in MB."""
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(field + ':'):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f'{field} not found in /proc/self/status')


def memory_in_use_mb(device: str) -> float:
    """Memory in use now: CUDA allocations on ``cuda``, the resident set (VmRSS) on ``cpu``."""
    if device == 'cuda':
        import torch
        return torch.cuda.memory_allocated() / 2**20
    return resident_mb('VmRSS')


def peak_memory_mb(device: str) -> float:
    """Peak since the process started or since :func:`reset_peak_memory`: CUDA allocations, or the resident set
    (VmHWM)."""
    if device == 'cuda':
        import torch
        return torch.cuda.max_memory_allocated() / 2**20
    return resident_mb('VmHWM')


def reset_peak_memory(device: str):
    """Start :func:`peak_memory_mb` afresh from the memory in use now."""
    if device == 'cuda':
        import torch
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        Path('/proc/self/clear_refs').write_text('5')  # resets the resident high-water mark


# ------------------------------------------------------------------------------------------------------------------
# The hardware limit: what this machine does at best, measured in the same process as the network, and the work of
# a forward. A figure as a fraction of the limit means the same on a loaded machine and an idle one (both slow down).
# ------------------------------------------------------------------------------------------------------------------
CPU_FLAGS_OF_INTEREST = ('avx2', 'avx512f', 'avx512_bf16', 'avx512_fp16', 'amx_tile', 'amx_bf16')


def machine_description(device: str) -> str:
    """The GPU's name, or the CPU model with the ISA flags that decide the fast paths (and torch's threads)."""
    import torch
    if device == 'cuda':
        return f'{torch.cuda.get_device_name()} (torch {torch.__version__}, CUDA {torch.version.cuda})'
    model, flags = 'unknown CPU', set()
    cpuinfo = Path('/proc/cpuinfo')
    for line in (cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []):
        key, _, value = line.partition(':')
        if key.strip() == 'model name':
            model = value.strip()
        elif key.strip() == 'flags':
            flags = set(value.split())
    present = [flag for flag in CPU_FLAGS_OF_INTEREST if flag in flags] or ['none of ' + '/'.join(
        CPU_FLAGS_OF_INTEREST)]
    return (f'{model}; {" ".join(present)}; torch {torch.__version__} CPU capability '
            f'{torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads')


def _best_rate(run: Callable[[], object], flop: float, device: str, repeats: int) -> tuple[float, float]:
    """GFLOP/s of the fastest of ``repeats`` calls of ``run`` (after one warm-up), by wall time and by process CPU
    time per thread: the machine's best. On a shared machine the CPU-time rate is the one that load hardly moves."""
    import torch
    run()
    best_wall = best_cpu = float('inf')
    for _ in range(repeats):
        if device == 'cuda':
            torch.cuda.synchronize()
        start, cpu_start = time.perf_counter(), time.process_time()
        run()
        if device == 'cuda':
            torch.cuda.synchronize()
        best_wall = min(best_wall, time.perf_counter() - start)
        best_cpu = min(best_cpu, (time.process_time() - cpu_start) / torch.get_num_threads())
    return flop / best_wall / 1e9, flop / best_cpu / 1e9


def rooflines(device: str, dtype: str, repeats: int = 5) -> dict[str, float]:
    """The limits for ``dtype`` (a precision name: 'fp32', 'bf16', 'bf16-fast', 'fp16'; float32's where ``device``
    cannot compute it natively and the networks run float32) on ``device``, in GFLOP/s:
    ``matmul`` (``torch.mm`` of square matrices, 4096 on CUDA and for the low precisions on CPU, 2048 for fp32 on CPU
    to keep it short) and
    ``conv3x3`` (a 256 -> 256 channel 3x3 convolution on a 64x64 channels_last map, batch 2: KEEP's typical layer);
    ``matmul_cpu``, ``conv3x3_cpu``: the same by process CPU time per thread."""
    import torch
    import torch.nn.functional as F

    from vfsr_arch.acceleration import AUTOCAST_DTYPES, precision_supported
    # the precision's autocast dtype; float32 where it has none, or where autocast_context falls back to float32
    torch_dtype = (AUTOCAST_DTYPES[dtype] if precision_supported(dtype, device) else None) or torch.float32
    size = 2048 if device == 'cpu' and dtype == 'fp32' else 4096
    a, b = (torch.randn(size, size, device=device, dtype=torch_dtype) for _ in range(2))
    x = torch.randn(2, 256, 64, 64, device=device, dtype=torch_dtype).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(256, 256, 3, 3, device=device, dtype=torch_dtype).contiguous(
        memory_format=torch.channels_last)
    with torch.no_grad():
        matmul, matmul_cpu = _best_rate(lambda: torch.mm(a, b), 2 * size**3, device, repeats)
        conv, conv_cpu = _best_rate(lambda: F.conv2d(x, weight, padding=1), 2 * x.numel() * 256 * 9, device, repeats)
    return {'matmul': matmul, 'conv3x3': conv, 'matmul_cpu': matmul_cpu, 'conv3x3_cpu': conv_cpu}


def _register_cpu_attention_flops() -> None:
    """FlopCounterMode has no formula for the CPU flash-attention kernels that ``F.scaled_dot_product_attention``
    runs on: give them the formula of the other attention kernels (two matmuls forward, four backward)."""
    import torch
    from torch.utils import flop_counter
    forward_op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    backward_op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
    if forward_op.default in flop_counter.flop_registry:
        return

    @flop_counter.register_flop_formula(forward_op)
    def forward_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
        return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)

    @flop_counter.register_flop_formula(backward_op)
    def backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
        return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def count_flops(function: Callable[[], object]) -> tuple[object, dict[str, float]]:
    """Run ``function()`` once under ``FlopCounterMode`` (CPU attention included): its result and the work in
    floating-point operations (one multiply-add = 2), ``total`` and per aten operator."""
    from torch.utils.flop_counter import FlopCounterMode
    _register_cpu_attention_flops()
    with FlopCounterMode(display=False) as counter:
        result = function()
    per_op = {str(op).split('.')[-1]: float(flops) for op, flops in counter.get_flop_counts()['Global'].items()}
    return result, {'total': float(counter.get_total_flops()), **per_op}


def speed_report(flop: float, seconds: float, limits: dict[str, float],
                 cpu_seconds_per_thread: float | None = None) -> dict[str, float]:
    """Work, achieved rate and the fraction of each limit: ``gflop``, ``gflop_per_s``, ``of_matmul``,
    ``of_conv3x3``; with the run's process CPU time per thread also ``of_matmul_cpu`` (CPU-time rate over the
    CPU-time limit: the figure that a shared, loaded machine distorts least)."""
    rate = flop / seconds / 1e9
    report = {'gflop': flop / 1e9, 'gflop_per_s': rate,
              **{f'of_{name}': rate / limits[name] for name in ('matmul', 'conv3x3')}}
    if cpu_seconds_per_thread and 'matmul_cpu' in limits:
        report['of_matmul_cpu'] = flop / cpu_seconds_per_thread / 1e9 / limits['matmul_cpu']
    return report


def format_speed(report: dict[str, float]) -> str:
    """``854.0 GFLOP  912 GFLOP/s  46% of mm  38% of conv  (CPU time: 47% of mm)`` from :func:`speed_report`."""
    cpu = f' (CPU time: {100 * report["of_matmul_cpu"]:3.0f}% of mm)' if 'of_matmul_cpu' in report else ''
    return (f'{report["gflop"]:7.1f} GFLOP {report["gflop_per_s"]:6.0f} GFLOP/s {100 * report["of_matmul"]:4.0f}% '
            f'of mm {100 * report["of_conv3x3"]:4.0f}% of conv{cpu}')


def between_rooflines(measure: Callable[[], object], device: str, dtype: str) -> tuple[object, dict[str, float]]:
    """``measure()`` between two measurements of :func:`rooflines`: its result and the limits averaged over both, so
    that the limit reflects the same load (on a shared machine) as the measurement."""
    before = rooflines(device, dtype)
    result = measure()
    after = rooflines(device, dtype)
    return result, {name: (before[name] + after[name]) / 2 for name in before}


def timed_runs_against_limits(function: Callable[[int], object], runs: int, device: str, dtype: str,
                              compiled: bool = False) -> tuple[object, list[float], list[float], dict]:
    """:func:`timed_runs` whose warm-up counts the work of one call and whose timed calls run
    :func:`between_rooflines`: the warm-up's result, wall and CPU seconds, and ``{'work': {total, per op},
    'limits': {matmul, conv3x3}}`` in FLOP and GFLOP/s. A ``compiled`` function gets one more, plain warm-up first,
    where it compiles (under FlopCounterMode's dispatch mode it would run eagerly)."""
    if compiled:
        function(0)
    warm_up, work = count_flops(lambda: function(0))
    (_, wall_seconds, cpu_seconds), limits = between_rooflines(lambda: timed_runs(function, runs, warm_up=False),
                                                               device, dtype)
    return warm_up, wall_seconds, cpu_seconds, {'work': work, 'limits': limits}
