"""Does bf16 autocast change the answer? KEEP and CodeFormer at the official widths, ``bf16`` (encoders in float32)
and ``bf16-fast`` (encoders in bf16 too) against float32.

Weights follow the reference-data rule (``tests/conftest.py: randomize_like_reference`` with realistic code margins:
the code head scaled by 20, as in ``../shared/reference``), so that code choices are decided by the network rather
than by float noise, as with trained weights. Both precisions run on the same channels_last network and input;
printed: the fraction of latent positions whose code (argmax of the logits) is the same, the output PSNR against
float32 (images in [-1, 1]) of the images as saved (clamped to [-1, 1]) and of the raw network output (random
weights put a quarter of it outside [-1, 1]), and for KEEP the same per frame and the largest flow and Kalman-gain
differences. Targets (issue 11): codes identical for at least 99.9% of positions, PSNR at least 40 dB.

    python benchmarks/bench_bf16_agreement.py                        # 512x512, KEEP (2 frames) and CodeFormer
    python benchmarks/bench_bf16_agreement.py --size 128 --networks codeformer
"""
import argparse
import itertools
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / 'tests')]

import vfsr_compat  # noqa: E402, F401  (before basicsr)

import torch  # noqa: E402
from conftest import randomize_like_reference, with_realistic_code_margins  # noqa: E402

from benchmarks.bench_keep import OFFICIAL_KEEP  # noqa: E402
from benchmarks.harness import machine_description  # noqa: E402
from vfsr_arch.acceleration import autocast_context  # noqa: E402
from vfsr_arch.codeformer_arch import CodeFormer  # noqa: E402
from vfsr_arch.keep_arch import KEEP  # noqa: E402


def psnr(output: torch.Tensor, reference: torch.Tensor, clamp: bool = True) -> float:
    """PSNR of images in [-1, 1] (peak-to-peak 2); ``clamp``: of the images as saved (clamped to [-1, 1])."""
    output, reference = output.float(), reference.float()
    if clamp:
        output, reference = output.clamp(-1, 1), reference.clamp(-1, 1)
    mse = (output - reference).square().mean().item()
    return 10 * math.log10(4 / mse) if mse > 0 else math.inf


def smooth_clip(frames: int, size: int) -> torch.Tensor:
    """(1, frames, 3, size, size) in [-1, 1]: a smooth random image drifting by a few pixels per frame."""
    generator = torch.Generator().manual_seed(1)
    margin = 2 * frames
    base = torch.nn.functional.interpolate(torch.rand(1, 3, size // 16, size // 16, generator=generator) * 2 - 1,
                                           size=(size + margin, size + margin), mode='bicubic').clamp(-1, 1)
    return torch.stack([base[:, :, i:i + size, 2 * i:2 * i + size] for i in range(frames)], dim=1)


def prepare(net: torch.nn.Module, device: str) -> torch.nn.Module:
    """Reference-rule weights with realistic code margins, eval, channels_last."""
    net = with_realistic_code_margins(randomize_like_reference(net)).eval()
    return net.to(device, memory_format=torch.channels_last)


def keep_agreement(size: int, frames: int, device: str, precision: str) -> dict:
    net = prepare(KEEP(img_size=size, latent_size=(size // 32) ** 2, **OFFICIAL_KEEP), device)
    x = smooth_clip(frames, size).to(device)

    def run(precision):
        with torch.no_grad(), autocast_context(precision, device):
            measurements = [net.measure_frame(x[:, i], x[:, i - 1] if i else None)[0] for i in range(frames)]
            chunk = net.restore(measurements)
        flows = torch.stack([m.flow_to_previous.float() for m in measurements[1:]], dim=1)
        return chunk, flows

    (fp32, fp32_flows), (bf16, bf16_flows) = run('fp32'), run(precision)
    codes_equal = (bf16.logits.argmax(-1) == fp32.logits.argmax(-1)).float().mean(-1)[0]  # per frame
    return {'codes identical': codes_equal.mean().item(),
            'PSNR vs fp32 (dB)': psnr(bf16.outputs, fp32.outputs),
            'raw output': psnr(bf16.outputs, fp32.outputs, clamp=False),
            'per frame: codes identical': [round(value, 4) for value in codes_equal.tolist()],
            'PSNR (dB)': [round(psnr(bf16.outputs[:, i], fp32.outputs[:, i]), 2) for i in range(frames)],
            'max flow difference (px)': (bf16_flows - fp32_flows).abs().max().item(),
            'max Kalman gain difference': (bf16.gains.float() - fp32.gains).abs().max().item()}


def codeformer_agreement(size: int, device: str, precision: str) -> dict:
    net = CodeFormer(img_size=size, latent_size=(size // 32) ** 2, attn_resolutions=[size // 32],
                     connect_list=[str(size // 16), str(size // 8), str(size // 4), str(size // 2)])
    net = prepare(net, device)
    x = smooth_clip(1, size)[:, 0].to(device)

    def run(precision):
        with torch.no_grad(), autocast_context(precision, device):
            return net(x, w=0.5, adain=True)[:2]

    (fp32, fp32_logits), (bf16, bf16_logits) = run('fp32'), run(precision)
    return {'codes identical': (bf16_logits.argmax(-1) == fp32_logits.argmax(-1)).float().mean().item(),
            'PSNR vs fp32 (dB)': psnr(bf16, fp32), 'raw output': psnr(bf16, fp32, clamp=False)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--size', type=int, default=512)
    parser.add_argument('--frames', type=int, default=2, help='KEEP clip length')
    parser.add_argument('--networks', nargs='+', default=['keep', 'codeformer'], choices=['keep', 'codeformer'])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--precisions', nargs='+', default=['bf16', 'bf16-fast'],
                        choices=['bf16', 'bf16-fast', 'fp16'],
                        help='bf16: encoders in float32 (the default policy); bf16-fast: encoders in bf16 too; fp16 '
                             '(GPUs): as bf16 in float16')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f'{machine_description(args.device)}; {args.size}x{args.size}, autocast vs fp32, channels_last')
    for name, precision in itertools.product(args.networks, args.precisions):
        figures = (keep_agreement(args.size, args.frames, args.device, precision) if name == 'keep'
                   else codeformer_agreement(args.size, args.device, precision))
        print(f'{name:<10} {precision:<9} ' + ', '.join(
            f'{key} {value:.4g}' if isinstance(value, float) else f'{key} {value}' for key, value in figures.items()),
            flush=True)


if __name__ == '__main__':
    main()
