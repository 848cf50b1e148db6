"""KEEP speed and memory: per-frame latency and peak memory, whole clip vs streaming, T vs 4T frames, fp32 / bf16.

Every measurement runs in a fresh process (so peak memory is its own): build KEEP with the official widths
(``inference_keep.py`` 'KEEP', random weights) at ``img_size`` = --sizes (the latent grid follows the size), one
warm-up run, then the median of --repeats runs under ``torch.no_grad()``: wall seconds per frame, and CPU seconds
per frame (all threads; less sensitive to other processes on a shared machine). The warm-up counts the work
(FlopCounterMode); the machine's limits for the dtype (``torch.mm`` and a 3x3 convolution) are measured right before
and after the timed runs, and the achieved GFLOP/s is given as a fraction of them, which a loaded machine changes
much less than the seconds. Memory is the peak during a run above the memory in use before the first run (model and
input built): resident-set high-water mark (reset through ``/proc/self/clear_refs``) on CPU, which includes what
the process keeps for reuse after freeing it (``keep_freed_memory``), ``torch.cuda.max_memory_allocated`` on CUDA.

Modes: ``clip`` = ``net(x, need_upscale=False)`` on T frames as one chunk (the official ``forward``);
``stream`` = ``net.restore_video(frames, max_length=T)`` (chunks of T frames, the official inference's chunking).
Each is run on T and 4T frames: streaming memory must not depend on the video length.

    python benchmarks/bench_keep.py --sizes 128 256 --frames 2            # CPU, fp32 and bf16
    python benchmarks/bench_keep.py --sizes 512 --frames 2 --modes clip   # official: 6-7 s/frame, 74 + 380 T MB
"""
import argparse
import itertools
import json
import statistics
import sys
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import (  # noqa: E402
    between_rooflines,
    count_flops,
    format_speed,
    machine_description,
    memory_in_use_mb,
    peak_memory_mb,
    reset_peak_memory,
    run_fresh,
    speed_report,
)

OFFICIAL_KEEP = dict(emb_dim=256, dim_embd=512, n_head=8, n_layers=9, codebook_size=1024, cft_list=['16', '32', '64'],
                     kalman_attn_head_dim=48, num_uncertainty_layers=3, cfa_list=['16', '32'], cfa_nhead=4,
                     cfa_dim=256, cond=1)


def measure(size: int, frames: int, mode: str, dtype: str, layout: str, device: str, threads: int, repeats: int,
            chunk: int, compile: bool = False) -> dict:
    """One configuration, in this process."""
    import torch

    from vfsr_arch.acceleration import autocast_context, compile_network, keep_freed_memory
    from vfsr_arch.keep_arch import KEEP  # the package import applies vfsr_compat first

    if device == 'cpu':
        keep_freed_memory()  # as vfsr-restore does on the CPU
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = KEEP(img_size=size, latent_size=(size // 32)**2, **OFFICIAL_KEEP).to(device).eval()
    if layout == 'cl':  # channels_last weights: the convolutions' fast path on CPU
        net = net.to(memory_format=torch.channels_last)
    net = compile_network(net, compile)
    clip = torch.rand(1, frames, 3, size, size, device=device) * 2 - 1
    autocast = autocast_context(dtype, device)

    def run():
        with torch.no_grad(), autocast:
            if mode == 'clip':
                out = net(clip, need_upscale=False)
            else:  # a real stream hands each frame on: keep only the last, so the peak is the model's own
                out = deque(net.restore_video(clip.unbind(1), max_length=chunk), maxlen=1)[0]
        if device == 'cuda':
            torch.cuda.synchronize()
        return out

    # Peak memory is measured above the memory in use before the first run: on the CPU the process keeps what a
    # run frees (keep_freed_memory), so growth within a later run alone would hide the activations.
    base = memory_in_use_mb(device)
    if compile:
        run()  # compiles (under FlopCounterMode's dispatch mode it would run eagerly)
    reference, work = count_flops(run)  # the warm-up, counting the work

    def timed_runs():
        seconds, cpu_seconds, peaks = [], [], []
        for _ in range(repeats):
            reset_peak_memory(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            out = run()
            seconds.append(time.perf_counter() - start)
            cpu_seconds.append(time.process_time() - start_cpu)
            peaks.append(peak_memory_mb(device) - base)
            del out
        return seconds, cpu_seconds, peaks

    (seconds, cpu_seconds, peaks), limits = between_rooflines(timed_runs, device, dtype)
    s_per_frame = statistics.median(seconds) / frames
    result = dict(size=size, frames=frames, mode=mode, dtype=dtype, layout=layout, device=device, threads=threads,
                  chunk=chunk, s_per_frame=s_per_frame, cpu_s_per_frame=statistics.median(cpu_seconds) / frames,
                  peak_growth_mb=max(peaks), limits_gflop_per_s=limits,
                  conv_share=work.get('convolution', 0) / work['total'],
                  **speed_report(work['total'] / frames, s_per_frame, limits,
                                 statistics.median(cpu_seconds) / frames / threads))
    if dtype != 'fp32' and mode == 'clip':  # output agreement with fp32 (random weights: codes may flip)
        with torch.no_grad():
            fp32 = net(clip, need_upscale=False)
        mse = (reference.float() - fp32).square().mean().item()
        result['psnr_vs_fp32_db'] = 10 * torch.log10(torch.tensor(4.0 / max(mse, 1e-20))).item()  # range [-1, 1]
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes', type=int, nargs='+', default=[128, 256, 512])
    parser.add_argument('--frames', type=int, default=2, help='T; every mode also runs 4T frames')
    parser.add_argument('--modes', nargs='+', default=['clip', 'stream'], choices=['clip', 'stream'])
    parser.add_argument('--dtypes', nargs='+', default=['fp32', 'bf16'], choices=['fp32', 'bf16', 'bf16-fast', 'fp16'])
    parser.add_argument('--layouts', nargs='+', default=['nchw'], choices=['nchw', 'cl'],
                        help='weight memory format: nchw (default) or cl (channels_last)')
    parser.add_argument('--device', default=None, help='cpu or cuda (default: cuda when available)')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--compile', action='store_true', help='torch.compile (inductor) the submodules first')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--no-4t', action='store_true', help='only T frames')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(measure(**json.loads(args.child))))
        return

    import torch
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    torch.set_num_threads(args.threads)
    lengths = [args.frames] if args.no_4t else [args.frames, 4 * args.frames]
    print(f'KEEP on {machine_description(device)}')
    print('work per frame (FlopCounterMode), achieved rate, and its fraction of the limits measured in the same '
          'process right before and after: torch.mm and a 3x3 channels_last convolution in the same dtype')
    print(f'{"size":>5} {"mode":>6} {"dtype":>9} {"layout":>6} {"T":>3} {"s/frame":>8} {"CPU s/frame":>11} '
          f'{"peak MB":>8} {"PSNR vs fp32":>12}  work per frame / rate / fraction of the limits (GFLOP/s mm, conv)')
    for size, dtype, layout, mode, frames in itertools.product(args.sizes, args.dtypes, args.layouts, args.modes,
                                                               lengths):
        config = dict(size=size, frames=frames, mode=mode, dtype=dtype, layout=layout, device=device,
                      threads=args.threads, repeats=args.repeats, chunk=args.frames, compile=args.compile)
        r, stderr = run_fresh([__file__, '--child', json.dumps(config)])
        if r is None:
            print(stderr[-2000:], file=sys.stderr)
            continue
        psnr = f'{r["psnr_vs_fp32_db"]:.1f} dB' if 'psnr_vs_fp32_db' in r else ''
        print(f'{size:>5} {mode:>6} {dtype:>9} {layout:>6} {frames:>3} {r["s_per_frame"]:>8.2f} '
              f'{r["cpu_s_per_frame"]:>11.2f} {r["peak_growth_mb"]:>8.0f} {psnr:>12}  {format_speed(r)} '
              f'({r["limits_gflop_per_s"]["matmul"]:.0f}, {r["limits_gflop_per_s"]["conv3x3"]:.0f})', flush=True)


if __name__ == '__main__':
    main()
