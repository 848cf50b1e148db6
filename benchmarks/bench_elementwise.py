"""Element-wise arithmetic on one large activation, in place against into a new tensor, per dtype.

Why the networks write some residual sums to a new tensor: on the CPU (torch 2.14, AVX512), PyTorch's in-place
bf16 add and multiply run about twice as slow as the same operation into a new tensor, while float32 and float16
do not show this. New tensors only pay off where freed memory is reused (``keep_freed_memory``, as vfsr-restore and
the benchmarks do; CUDA's caching allocator always does), so this script turns it on.

    python benchmarks/bench_elementwise.py                      # (1, 128, 512, 512), the decoder's largest
    python benchmarks/bench_elementwise.py --shape 1 256 128 128 --threads 2
"""
import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import machine_description, timed_runs  # noqa: E402


def median_ms(operation, runs: int) -> float:
    """Median wall milliseconds of ``operation()`` after one warm-up call."""
    _, wall_seconds, _ = timed_runs(lambda index: operation(), runs)
    return statistics.median(wall_seconds) * 1e3


def timings(a, b, runs: int) -> tuple[float, float, float, float]:
    """ms of a.add_(b), a + b, a.mul_(s), a * s."""
    # in-place ops alternate with their inverse (add_ / sub_, mul_ / div_) so the values stay in range
    return (median_ms(lambda: a.add_(b).sub_(b), runs) / 2, median_ms(lambda: a + b, runs),
            median_ms(lambda: a.mul_(1.5).div_(1.5), runs) / 2, median_ms(lambda: a * 1.5, runs))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--shape', type=int, nargs='+', default=[1, 128, 512, 512])
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--runs', type=int, default=11)
    args = parser.parse_args()

    import torch

    from vfsr_arch.acceleration import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(args.threads)
    print(f'element-wise ops on {tuple(args.shape)} channels_last, median of {args.runs}, ms')
    print(f'CPU: {machine_description("cpu")}')
    print(f'{"dtype":9} {"a.add_(b)":>10} {"a + b":>8} {"a.mul_(s)":>10} {"a * s":>8}')
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        generator = torch.Generator().manual_seed(0)
        a, b = (torch.randn(args.shape, generator=generator).to(dtype).contiguous(memory_format=torch.channels_last)
                for _ in range(2))
        add_in_place, add_new, mul_in_place, mul_new = timings(a, b, args.runs)
        name = str(dtype).removeprefix('torch.')
        print(f'{name:9} {add_in_place:10.1f} {add_new:8.1f} {mul_in_place:10.1f} {mul_new:8.1f}')


if __name__ == '__main__':
    main()
