"""Benchmark VidFace against basicsr's EDVR: parameters, forward latency, peak memory and a training step.

Every measurement runs in a fresh Python process (this script re-runs itself with ``--case``): build the network
(seeded random weights), one warm-up run, then the median of ``--runs`` timed runs. Peak memory is the growth of the
process's peak resident set (``VmHWM`` in ``/proc/self/status``) over its resident set just before the first run;
on CUDA it is ``torch.cuda.max_memory_allocated`` over the allocation before the first run.

Networks and inputs (7 snapshots of 16x12, as in TUFs-145K):

* ``vidface``: ``VidFace()``, the official full configuration, 8x (128x96 outputs for all 7 snapshots).
  ``vidface_ckpt`` (training only) is the same with ``checkpoint_refiner=True``.
* ``edvr_x4``: basicsr ``EDVR`` (num_feat 64, 5 extraction and 10 reconstruction blocks, TSA, centre frame 3). Its
  upsampler is fixed at 4x, so it runs on the same 16x12 input and returns the 64x48 centre frame.
* ``edvr_x8``: the same EDVR fed the snapshots bilinearly upsampled 2x (32x24), so it returns a 128x96 centre frame;
  the upsampling is included in the timing.

Precisions: ``fp32``, ``bf16`` (``torch.autocast``, CPU or CUDA) and ``fp16`` (CUDA). For VidFace in bf16 or fp16 the
script also reports the PSNR of the output against the fp32 output of the same network and input (images mapped from
[-1, 1] to [0, 1]).
EDVR has no bf16 run on CPU: torchvision's ``deform_conv2d`` has no bf16 CPU kernel.

The warm-up counts the work (FlopCounterMode, CPU attention included); the machine's limits for the precision
(``torch.mm``, a 3x3 convolution) are measured right before and after the timed runs, and the achieved rate is given
as a fraction of them. Besides wall-clock time the table gives ``cpu s``: the process's CPU time per run divided by
the thread count. On a machine shared with other work the wall time grows with the load; ``cpu s`` much less so (it
is close to the wall time on an idle machine). The 1-minute load average before each case is printed too.

The training step (batch 4) is the official one: AdamW (lr 4e-4, betas (0.9, 0.99)), Charbonnier (sum, eps 1e-12)
over all snapshots plus the reference snapshot again, smooth-L1 (sum) landmark loss weighted 1, 2, ... per
iteration, gradient-norm clip 0.05. EDVR trains on its centre frame with the Charbonnier loss only.

Usage::

    python benchmarks/bench_vidface.py                  # CPU, 2 threads, everything
    python benchmarks/bench_vidface.py --threads 4 --runs 7 --skip-train
    python benchmarks/bench_vidface.py --device cuda
"""
import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import vfsr_compat  # noqa: E402, F401  (before basicsr)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from basicsr.archs.edvr_arch import EDVR  # noqa: E402

from benchmarks.harness import (  # noqa: E402
    format_speed,
    machine_description,
    memory_in_use_mb,
    peak_memory_mb,
    run_fresh,
    speed_report,
    timed_runs_against_limits,
)
from vfsr_arch.acceleration import autocast_context, compile_network  # noqa: E402
from vfsr_arch.vidface_arch import VidFace  # noqa: E402

NUM_FRAMES, LR_SIZE, REFERENCE = 7, (16, 12), 3


class UpsampledInputEDVR(torch.nn.Module):
    """EDVR (4x) on snapshots bilinearly upsampled 2x beforehand: 8x overall."""

    def __init__(self):
        super().__init__()
        self.edvr = build_edvr()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = x.shape
        x = F.interpolate(x.flatten(0, 1), scale_factor=2, mode='bilinear', align_corners=False)
        return self.edvr(x.view(b, t, c, 2 * h, 2 * w))


def build_edvr() -> EDVR:
    return EDVR(num_in_ch=3, num_out_ch=3, num_feat=64, num_frame=NUM_FRAMES, deformable_groups=8,
                num_extract_block=5, num_reconstruct_block=10, center_frame_idx=REFERENCE, with_tsa=True)


NETWORKS = {'vidface': (VidFace, 8), 'vidface_ckpt': (lambda: VidFace(checkpoint_refiner=True), 8),
            'edvr_x4': (build_edvr, 4), 'edvr_x8': (UpsampledInputEDVR, 8)}


def charbonnier_sum(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return torch.sqrt((pred - target) ** 2 + eps).sum()


def training_loss(net_name: str, net: torch.nn.Module, x: torch.Tensor, gt: torch.Tensor,
                  gt_landmarks: torch.Tensor) -> torch.Tensor:
    if not net_name.startswith('vidface'):
        return charbonnier_sum(net(x), gt[:, REFERENCE])
    out, landmarks = net(x)
    loss = charbonnier_sum(out, gt) + charbonnier_sum(out[:, REFERENCE], gt[:, REFERENCE])
    for index, predicted in enumerate(landmarks):
        loss = loss + 2 ** index * F.smooth_l1_loss(predicted.float(), gt_landmarks, reduction='sum')
    return loss


def run_case(case: dict) -> dict:
    """Measure one (network, batch, precision, mode) in this process; returns the figures."""
    torch.set_num_threads(case['threads'])
    device = torch.device(case['device'])
    cuda = device.type == 'cuda'
    torch.manual_seed(0)
    build, scale = NETWORKS[case['net']]
    net = compile_network(build().to(device), case.get('compile', False))
    params = sum(p.numel() for p in net.parameters())
    batch = case['batch']
    generator = torch.Generator().manual_seed(1)
    x = (torch.rand(batch, NUM_FRAMES, 3, *LR_SIZE, generator=generator) * 2 - 1).to(device)
    autocast = autocast_context(case['precision'], device.type)

    if case['mode'] == 'train':
        net.train()
        gt = (torch.rand(batch, NUM_FRAMES, 3, LR_SIZE[0] * scale, LR_SIZE[1] * scale, generator=generator) * 2 - 1)
        gt, gt_landmarks = gt.to(device), (torch.rand(batch * NUM_FRAMES, 10, generator=generator) - 0.5).to(device)
        optimizer = torch.optim.AdamW(net.parameters(), lr=4e-4, betas=(0.9, 0.99), weight_decay=0)

        def run():
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss = training_loss(case['net'], net, x, gt, gt_landmarks)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 0.05)
            optimizer.step()
    else:
        net.eval()

        def run():
            with torch.no_grad(), autocast:
                net(x)

    def step(index):
        run()
        if cuda:
            torch.cuda.synchronize(device)

    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    base_memory = memory_in_use_mb(device.type)
    _, times, cpu_times, against = timed_runs_against_limits(step, case['runs'], device.type, case['precision'],
                                                             case.get('compile', False))
    peak = peak_memory_mb(device.type) - base_memory
    result = dict(case, params=params, median_s=statistics.median(times), min_s=min(times),
                  cpu_s=statistics.median(cpu_times) / case['threads'], peak_mb=peak,
                  **speed_report(against['work']['total'], statistics.median(times), against['limits'],
                                 statistics.median(cpu_times) / case['threads']))

    if case['net'] == 'vidface' and case['mode'] == 'forward' and case['precision'] != 'fp32':
        with torch.no_grad():
            reference = net(x)[0].float()
            with autocast:
                low = net(x)[0].float()
        mse = ((reference - low) / 2).square().mean().item()  # images in [0, 1]
        result['psnr_vs_fp32_db'] = 10 * torch.log10(torch.tensor(1 / max(mse, 1e-20))).item()
    return result


def cases(args) -> list[dict]:
    common = dict(threads=args.threads, device=args.device, compile=args.compile)
    found = []
    for net in ('vidface', 'edvr_x4', 'edvr_x8'):
        for batch in args.batches:
            for precision in supported_precisions(net, args):
                found.append(dict(common, net=net, batch=batch, precision=precision, mode='forward', runs=args.runs))
    if not args.skip_train:
        for net in ('vidface', 'vidface_ckpt', 'edvr_x4'):
            for precision in supported_precisions(net, args):
                found.append(dict(common, net=net, batch=4, precision=precision, mode='train', runs=args.train_runs))
    return found


def supported_precisions(net: str, args) -> list[str]:
    if net.startswith('edvr') and args.device == 'cpu':
        return [precision for precision in args.precisions if precision != 'bf16']  # no bf16 deform_conv2d on CPU
    return args.precisions


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--threads', type=int, default=2, help='torch.set_num_threads (default 2)')
    parser.add_argument('--runs', type=int, default=5, help='timed forward runs after one warm-up (default 5)')
    parser.add_argument('--train-runs', type=int, default=3, help='timed training steps after one warm-up')
    parser.add_argument('--batches', type=int, nargs='+', default=[1, 16])
    parser.add_argument('--precisions', nargs='+', default=['fp32', 'bf16'], choices=['fp32', 'bf16', 'fp16'])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--skip-train', action='store_true')
    parser.add_argument('--compile', action='store_true', help='torch.compile (inductor) the submodules first')
    parser.add_argument('--case', help=argparse.SUPPRESS)  # internal: one measurement, JSON in, JSON out
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return

    torch.set_num_threads(args.threads)
    print(f'{machine_description(args.device)}; work (FlopCounterMode; EDVR\'s deformable convolutions are not '
          f'counted) and its fraction of the limits measured in the same process right before and after (torch.mm, '
          f'3x3 convolution, same dtype)')
    print(f'device {args.device}, {args.threads} threads, torch {torch.__version__}; '
          f'median of {args.runs} forward / {args.train_runs} training runs after 1 warm-up, each case in a fresh '
          f'process')
    header = f'{"network":<12} {"params":>10} {"mode":<8} {"batch":>5} {"prec":<5} {"median s":>9} {"min s":>8} ' \
             f'{"cpu s":>7} {"peak MB":>8} {"load":>5}  {"work / rate / fraction of the limits":<56} notes'
    print(header)
    print('-' * len(header))
    for case in cases(args):
        load = os.getloadavg()[0]
        result, stderr = run_fresh([__file__, '--case', json.dumps(case)])
        if result is None:
            print(f'{case["net"]:<12} {case["mode"]} batch {case["batch"]} {case["precision"]}: FAILED\n'
                  f'{stderr[-2000:]}')
            continue
        notes = f'PSNR vs fp32 {result["psnr_vs_fp32_db"]:.1f} dB' if 'psnr_vs_fp32_db' in result else ''
        print(f'{result["net"]:<12} {result["params"]:>10,} {result["mode"]:<8} {result["batch"]:>5} '
              f'{result["precision"]:<5} {result["median_s"]:>9.3f} {result["min_s"]:>8.3f} {result["cpu_s"]:>7.3f} '
              f'{result["peak_mb"]:>8.0f} {load:>5.1f}  {format_speed(result)}  {notes}', flush=True)


if __name__ == '__main__':
    main()
