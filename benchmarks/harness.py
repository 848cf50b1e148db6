"""What the benchmark scripts share: one measurement per fresh Python process (so its peak memory is its own), timing
after one warm-up call, and the memory a process uses (CUDA allocations, or its resident set from /proc)."""
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


def timed_runs(function: Callable[[int], object], runs: int) -> tuple[object, list[float], list[float]]:
    """Call ``function(index)`` for index 0 (the warm-up) to ``runs``: the warm-up's result, and the wall and process
    CPU seconds (all threads) of each later call."""
    warm_up = function(0)
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
