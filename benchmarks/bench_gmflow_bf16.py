"""Could GMFlow's backbone and transformer run in bf16? Flows of a GMFlow trained here for a few minutes, in float32
and with its backbone and transformer under bf16 autocast while its matching, propagation and upsampling stay in
float32 (the variant judged; vfsr runs GMFlow in float32 under every precision).

The official GMFlow weights cannot be downloaded here, and random weights say nothing: their features match the
wrong places even in float32, so any rounding moves the flow by pixels. So this script first trains the official
GMFlow configuration on synthetic motion (random affine warps of scikit-image's sample photographs, a dense
ground-truth flow), then compares the two precisions on a held-out photograph (the astronaut's face) at several
sizes: the end-point error of each against the true flow, and their difference. 1500 steps on 2 CPU cores leave a
rough model (docs/benchmarks.md); with a GPU, train longer (``--steps``) before trusting the comparison.

    python benchmarks/bench_gmflow_bf16.py                      # 1500 steps at 128x128 (about 17 min, 2 cores)
    python benchmarks/bench_gmflow_bf16.py --steps 200 --eval-sizes 256
"""
import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import vfsr_compat  # noqa: E402, F401  (before basicsr)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from skimage import data  # noqa: E402

from benchmarks.harness import machine_description  # noqa: E402
from vfsr_arch import gmflow_arch  # noqa: E402
from vfsr_arch.acceleration import float32_under_autocast  # noqa: E402
from vfsr_arch.gmflow_arch import GMFlow  # noqa: E402

TRAIN_IMAGES = ('coffee', 'chelsea', 'rocket', 'immunohistochemistry', 'hubble_deep_field', 'retina')
HELD_OUT = 'astronaut'


def photo(name: str) -> torch.Tensor:
    """(1, 3, H, W) float RGB in [0, 255]."""
    return torch.from_numpy(getattr(data, name)()[..., :3].copy()).permute(2, 0, 1)[None].float()


def random_affine(generator: torch.Generator, max_shift: float, max_angle: float, max_zoom: float):
    """A random 2x2 matrix and translation (pixels): rotation, zoom and shift drawn uniformly."""
    def uniform(bound):
        return (torch.rand((), generator=generator).item() * 2 - 1) * bound
    angle, zoom = math.radians(uniform(max_angle)), 1 + uniform(max_zoom)
    matrix = zoom * torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return matrix, torch.tensor([uniform(max_shift), uniform(max_shift)])


def warped_pair(image: torch.Tensor, size: int, matrix: torch.Tensor, shift: torch.Tensor, top: int, left: int):
    """A ``size`` crop of ``image`` at (top, left), the same crop moved by the affine map about its centre
    (target(A (x - c) + c + t) = source(x)), the true flow source -> target (1, 2, size, size) and the mask of the
    pixels whose match lies inside the target."""
    source = image[:, :, top:top + size, left:left + size]
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing='ij')
    centre = (size - 1) / 2
    points = torch.stack((xs - centre, ys - centre))  # (2, size, size), source pixels about the centre
    moved = torch.einsum('ij,jhw->ihw', matrix, points) + shift[:, None, None]
    flow = (moved - points)[None]
    # target pixel y shows the source at A^-1 (y - c - t) + c: sample the whole image there (no black borders)
    inverse = torch.linalg.inv(matrix)
    back = torch.einsum('ij,jhw->ihw', inverse, points - shift[:, None, None])
    height, width = image.shape[-2:]
    grid_x = (back[0] + centre + left) / (width - 1) * 2 - 1
    grid_y = (back[1] + centre + top) / (height - 1) * 2 - 1
    target = F.grid_sample(image, torch.stack((grid_x, grid_y), dim=-1)[None], mode='bilinear', align_corners=True)
    inside = ((moved + centre >= 0) & (moved + centre <= size - 1)).all(0)[None, None]
    return source, target, flow, inside


def training_batch(images, generator, batch: int, size: int):
    pairs = []
    for _ in range(batch):
        image = images[torch.randint(len(images), (), generator=generator).item()]
        margin = size // 4
        smallest = (size + 2 * margin + 2) / min(image.shape[-2:])  # the crop and its margins must fit
        scale = max(smallest, 0.5 + torch.rand((), generator=generator).item())
        image = F.interpolate(image, scale_factor=scale, mode='bilinear', antialias=True, align_corners=False)
        top = margin + torch.randint(image.shape[-2] - size - 2 * margin, (), generator=generator).item()
        left = margin + torch.randint(image.shape[-1] - size - 2 * margin, (), generator=generator).item()
        matrix, shift = random_affine(generator, max_shift=size / 10, max_angle=5, max_zoom=0.05)
        pairs.append(warped_pair(image, size, matrix, shift, top, left))
    return [torch.cat(parts) for parts in zip(*pairs)]


def gmflow_flow(net: GMFlow, source, target, bf16: bool = False) -> torch.Tensor:
    """GMFlow's full-resolution flow as KEEP calls it (one scale, global matching and propagation); ``bf16``: under
    bf16 autocast, where :func:`float32_matching` keeps the matching, propagation and upsampling in float32."""
    with torch.autocast('cpu', torch.bfloat16, enabled=bf16):
        features = net.extract_features(source, [2]), net.extract_features(target, [2])
        return net.flow_from_features(*features, [2], [-1], [-1])['flow_preds'][-1].float()


def float32_matching(net: GMFlow) -> None:
    """The variant judged: what turns features into pixels through softmaxes runs in float32 under autocast."""
    net.feature_flow_attn.forward = float32_under_autocast(net.feature_flow_attn.forward)
    net.upsampler.forward = float32_under_autocast(net.upsampler.forward)
    gmflow_arch.global_correlation_flow = float32_under_autocast(gmflow_arch.global_correlation_flow)


def end_point_errors(flow: torch.Tensor, reference: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """|flow - reference| (px) at the pixels of the mask."""
    return (flow - reference).norm(dim=1, keepdim=True)[inside]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--steps', type=int, default=1500)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--train-size', type=int, default=128)
    parser.add_argument('--eval-sizes', type=int, nargs='+', default=[128, 256, 512])
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    print(f'GMFlow bf16 check; {machine_description("cpu")}')

    net = GMFlow()  # the official configuration
    float32_matching(net)

    images = [photo(name) for name in TRAIN_IMAGES]
    optimizer = torch.optim.AdamW(net.parameters(), lr=4e-4, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.steps)
    net.train()
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        source, target, true_flow, inside = training_batch(images, generator, args.batch, args.train_size)
        predicted = gmflow_flow(net, source, target)
        loss = ((predicted - true_flow).abs() * inside).sum() / (2 * inside.sum())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == args.steps:
            print(f'step {step}: L1 {loss.item():.3f} px ({time.perf_counter() - start:.0f} s)', flush=True)

    net.eval()
    print('end-point error (px) over the pixels whose match is inside the frame, on the held-out '
          f'{HELD_OUT}; the model was trained at {args.train_size}x{args.train_size}')
    print('size  motion                    fp32 EPE  bf16 EPE  |bf16 - fp32|: mean     p99     max')
    for size in args.eval_sizes:
        face = F.interpolate(photo(HELD_OUT), size=(size + size // 8,) * 2, mode='bilinear', antialias=True)
        for name, (angle, zoom, shift) in {'shift (5, 3)': (0, 0, (5., 3.)), 'shift (-11, 7)': (0, 0, (-11., 7.)),
                                           'rotate 3 deg, zoom 1.03': (3, 0.03, (2., -1.))}.items():
            rad = math.radians(angle)
            matrix = (1 + zoom) * torch.tensor([[math.cos(rad), -math.sin(rad)], [math.sin(rad), math.cos(rad)]])
            source, target, true_flow, inside = warped_pair(face, size, matrix, torch.tensor(shift), size // 16,
                                                            size // 16)
            with torch.no_grad():
                fp32, bf16 = gmflow_flow(net, source, target), gmflow_flow(net, source, target, bf16=True)
            difference = end_point_errors(bf16, fp32, inside)
            print(f'{size:4}  {name:<24} {end_point_errors(fp32, true_flow, inside).mean().item():8.3f}  '
                  f'{end_point_errors(bf16, true_flow, inside).mean().item():8.3f}  {difference.mean().item():19.4f}  '
                  f'{difference.quantile(0.99).item():6.4f}  {difference.max().item():6.3f}')


if __name__ == '__main__':
    main()
