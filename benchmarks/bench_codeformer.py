"""CodeFormer latency and peak memory on one face image (eval, no grad, random weights).

Each configuration runs in a fresh process: 1 warm-up, then the median of ``--runs`` forwards. CPU peak memory is
the growth of the process's peak RSS over its RSS after building the model and the input; CUDA peak memory is
``torch.cuda.max_memory_allocated`` above the allocation before the forward. bf16 rows also give the PSNR of the
output against float32 (images in [-1, 1], so the peak-to-peak range is 2). The warm-up counts the work
(FlopCounterMode); the machine's limits for the dtype are measured right before and after the timed runs and the
achieved rate is printed as a fraction of them (a loaded machine changes it much less than the seconds).

    python benchmarks/bench_codeformer.py                 # 512x512, CPU fp32 + bf16, CUDA when available
    python benchmarks/bench_codeformer.py --size 256 --runs 3 --threads 2
"""
import argparse
import json
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import (  # noqa: E402
    format_speed,
    machine_description,
    memory_in_use_mb,
    peak_memory_mb,
    run_fresh,
    speed_report,
    timed_runs_against_limits,
)

OFFICIAL_FP32_2_THREADS_S = 5.40  # official CodeFormer, 512x512, this machine type (../shared/README.md)


def measure(device: str, dtype: str, layout: str, size: int, runs: int, threads: int, fidelity: float,
            compile: bool = False) -> dict:
    """Run in this process: build, warm up, time ``runs`` forwards. ``layout`` 'cl' puts weights and input in
    channels_last; ``compile`` compiles the submodules (inductor)."""
    import torch

    from vfsr_arch.acceleration import autocast_context, compile_network, keep_freed_memory
    from vfsr_arch.codeformer_arch import CodeFormer

    if device == 'cpu':
        keep_freed_memory()  # as vfsr-restore does on the CPU
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    # The official network at another image size: same levels, attention and fusion levels, position embedding for
    # the (size/32)^2 latent tokens. At 512 these are the official defaults.
    model = CodeFormer(
        img_size=size, latent_size=(size // 32) ** 2, attn_resolutions=[size // 32],
        connect_list=[str(size // 16), str(size // 8), str(size // 4), str(size // 2)]).eval().to(device)
    x = (torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1).to(device)
    if layout == 'cl':
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    model = compile_network(model, compile)

    def forward(index=0):
        with torch.no_grad(), autocast_context(dtype, device):
            out, logits, _ = model(x, w=fidelity, adain=True)
        if device == 'cuda':
            torch.cuda.synchronize()
        return out.float(), logits.argmax(2)

    if device == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base_mb = memory_in_use_mb(device)
    (out, codes), times, cpu_times, against = timed_runs_against_limits(forward, runs, device, dtype, compile)
    peak_mb = peak_memory_mb(device) - base_mb
    result = dict(device=device, dtype=dtype, layout=layout, size=size, threads=threads,
                  median_s=statistics.median(times), times_s=times,
                  cpu_s_per_thread=statistics.median(cpu_times) / threads, peak_mb=peak_mb,
                  limits_gflop_per_s=against['limits'],
                  **speed_report(against['work']['total'], statistics.median(times), against['limits'],
                                 statistics.median(cpu_times) / threads))
    if dtype != 'fp32':
        with torch.no_grad():
            reference, reference_logits, _ = model(x.float(), w=fidelity, adain=True)
        mse = torch.mean((out - reference) ** 2).item()
        result['psnr_vs_fp32_db'] = 10 * math.log10(4 / mse) if mse > 0 else math.inf
        result['codes_equal'] = (codes == reference_logits.argmax(2)).float().mean().item()
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--size', type=int, default=512)
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--w', type=float, default=0.5, help='fidelity weight (inference default 0.5)')
    parser.add_argument('--configs', nargs='*',
                        help="device:dtype:layout, layout 'cl' (channels_last) or 'nchw'; e.g. cpu:fp32:nchw")
    parser.add_argument('--compile', action='store_true', help='torch.compile (inductor) the submodules first')
    parser.add_argument('--single', help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.single:
        print(json.dumps(measure(*args.single.split(':'), args.size, args.runs, args.threads, args.w, args.compile)))
        return

    import torch
    cuda_configs = ['cuda:fp32:nchw', 'cuda:bf16:cl', 'cuda:fp16:cl'] if torch.cuda.is_available() else []
    configs = args.configs or ['cpu:fp32:nchw', 'cpu:fp32:cl', 'cpu:bf16:cl'] + cuda_configs
    torch.set_num_threads(args.threads)
    print(f'CodeFormer {args.size}x{args.size}, w={args.w}, adain, {args.threads} CPU threads, median of {args.runs}')
    print(f'CPU: {machine_description("cpu")}' + (f'; GPU: {machine_description("cuda")}' if cuda_configs else ''))
    print('work (FlopCounterMode), rate, fraction of the limits measured in the same process right before and after '
          '(torch.mm and a 3x3 channels_last convolution in the same dtype)')
    print(f'official fp32 reference: {OFFICIAL_FP32_2_THREADS_S:.2f} s (512x512, 2 threads)')
    print('cpu s/thread: process CPU time per thread, a load-independent estimate when the machine is shared')
    print(f'{"device":6} {"dtype":9} {"layout":6} {"median s":>9} {"cpu s/thread":>12} {"peak MB":>8} '
          f'{"PSNR vs fp32":>13} {"codes = fp32":>12}  work / rate / fraction (limits GFLOP/s mm, conv)')
    for config in configs:
        row, stderr = run_fresh([__file__, '--single', config, '--size', str(args.size), '--runs', str(args.runs),
                                 '--threads', str(args.threads), '--w', str(args.w)]
                                + (['--compile'] if args.compile else []))
        if row is None:
            sys.exit(f'{config} failed:\n{stderr}')
        psnr = f'{row["psnr_vs_fp32_db"]:.1f} dB' if 'psnr_vs_fp32_db' in row else ''
        codes = f'{100 * row["codes_equal"]:.1f} %' if 'codes_equal' in row else ''
        print(f'{row["device"]:6} {row["dtype"]:9} {row["layout"]:6} {row["median_s"]:9.3f} '
              f'{row["cpu_s_per_thread"]:12.3f} {row["peak_mb"]:8.0f} {psnr:>13} {codes:>12}  {format_speed(row)} '
              f'({row["limits_gflop_per_s"]["matmul"]:.0f}, {row["limits_gflop_per_s"]["conv3x3"]:.0f})', flush=True)


if __name__ == '__main__':
    main()
