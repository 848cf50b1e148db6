"""Training step time and peak memory of KEEP stage 2 (KEEPModel) and stage 3 (KEEPGANModel).

The models are built from a stage's option file exactly as train.py builds them (losses, frozen modules, EMA,
discriminator), with random weights and random clips of the configured shape instead of the dataset, so no data
or weights are needed (LPIPS gets random stand-in weights when weights/LPIPS is absent). Each stage runs in a fresh
process: one warm-up step, then the median of ``--steps`` steps; memory is the peak over all steps (CUDA: peak
allocated, weights included; CPU: growth of the peak resident set size over the built model, i.e. optimizer state,
activations and gradients).

Examples::

    python benchmarks/bench_keep_training.py --device cpu --img-size 128 --frames 4          # full widths, 128 px
    python benchmarks/bench_keep_training.py --device cuda --frames 8                          # the official setting
    python benchmarks/bench_keep_training.py --options options/demo_keep_stage{}.yml --device cpu
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.harness import machine_description, peak_memory_mb, run_fresh, timed_runs  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--options', default='options/train_keep_vfhq_stage{}.yml',
                        help='option file pattern, {} = stage number (default: the official settings)')
    parser.add_argument('--stages', default='2,3', help='stages to measure, e.g. 2,3')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--img-size', type=int, help='override img_size (the latent grid and latent_size follow)')
    parser.add_argument('--frames', type=int, help='frames per clip (default: num_frame of the options)')
    parser.add_argument('--batch', type=int, help='clips per step (default: batch_size_per_gpu of the options)')
    parser.add_argument('--steps', type=int, default=3, help='timed steps after one warm-up step')
    parser.add_argument('--threads', type=int, default=2, help='CPU threads (torch.set_num_threads)')
    parser.add_argument('--autocast', default='fp32', choices=['fp32', 'bf16'],
                        help='train.autocast: bf16 runs the forward under bf16 autocast (default fp32)')
    parser.add_argument('--stage', type=int, help=argparse.SUPPRESS)  # one stage, in a child process
    return parser.parse_args(argv)


def build_options(args, stage: int, scratch: Path) -> tuple[dict, tuple[int, int]]:
    """The stage's options, for an in-memory model on random weights and random clips."""
    import yaml
    from basicsr.utils.options import ordered_yaml

    with open(REPO_ROOT / args.options.format(stage)) as stream:
        opt = yaml.load(stream, Loader=ordered_yaml()[0])
    network = opt['network_g']
    if args.img_size:
        levels = len(network.get('ch_mult', (1, 2, 2, 4, 4, 8)))
        network['img_size'] = args.img_size
        network['latent_size'] = (args.img_size // 2**(levels - 1))**2
    for key in ('vqgan_path', 'flownet_path'):
        network.pop(key, None)
    train_data = opt['datasets']['train']
    opt.update(is_train=True, dist=False, rank=0, world_size=1, num_gpu=1 if args.device == 'cuda' else 0)
    opt['path'] = {'models': str(scratch), 'training_states': str(scratch), 'visualization': str(scratch)}
    opt['datasets'] = {}
    opt['train'].pop('total_iter', None)
    opt['train']['autocast'] = args.autocast
    perceptual = opt['train'].get('perceptual_opt')
    if perceptual and not Path(perceptual.get('vgg_weights_path', 'weights/LPIPS/vgg16-397923af.pth')).is_file():
        perceptual.update(random_lpips_weights(scratch))
    clip_shape = (args.batch or train_data.get('batch_size_per_gpu', 1), args.frames or train_data.get('num_frame', 8))
    return opt, clip_shape


def random_lpips_weights(folder: Path) -> dict:
    import torch
    import torchvision

    from vfsr_arch.lpips_arch import VGG16_SLICE_CHANNELS

    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs['D'])
    torch.save({f'features.{k}': v for k, v in features.state_dict().items()}, folder / 'vgg16.pth')
    torch.save({f'lin{i}.model.1.weight': torch.rand(1, c, 1, 1) for i, c in enumerate(VGG16_SLICE_CHANNELS)},
               folder / 'lpips.pth')
    return {'vgg_weights_path': str(folder / 'vgg16.pth'), 'lpips_weights_path': str(folder / 'lpips.pth')}


def measure_stage(args, stage: int) -> dict:
    import vfsr_compat  # noqa: F401

    import torch
    from basicsr.utils.registry import MODEL_REGISTRY

    import vfsr_arch  # noqa: F401
    import vfsr_models  # noqa: F401

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as scratch:
        opt, (batch, frames) = build_options(args, stage, Path(scratch))
        model = MODEL_REGISTRY.get(opt['model_type'])(opt)
        size = opt['network_g']['img_size']
        lq_size = size // 4 if opt.get('need_upscale', True) else size
        clip = {'lq': torch.rand(batch, frames, 3, lq_size, lq_size) * 2 - 1,
                'gt': torch.rand(batch, frames, 3, size, size) * 2 - 1}
        # Stage 3's adversarial terms start after net_d_start_iter: time iterations where they are on.
        first_iter = max(getattr(model, 'net_d_start_iter', 0), 0) + 1

        def step(index):
            model.feed_data(clip)
            model.optimize_parameters(first_iter + index)
            if args.device == 'cuda':
                torch.cuda.synchronize()

        if args.device == 'cuda':
            torch.cuda.reset_peak_memory_stats()
        baseline = peak_memory_mb('cpu')
        _, times, _ = timed_runs(step, args.steps)
        peak = peak_memory_mb(args.device)
        trainable = sum(p.numel() for p in model.net_g.parameters() if p.requires_grad)
        return {'stage': stage, 'model': opt['model_type'], 'device': args.device, 'autocast': args.autocast,
                'machine': machine_description(args.device), 'img_size': size,
                'lq_size': lq_size, 'batch': batch, 'frames': frames, 'threads': args.threads,
                'median_step_s': statistics.median(times), 'steps_s': times,
                'peak_memory_mb': peak if args.device == 'cuda' else peak - baseline,
                'memory_kind': 'peak allocated' if args.device == 'cuda' else 'peak RSS growth over the built model',
                'generator_params': sum(p.numel() for p in model.net_g.parameters()), 'trainable_params': trainable,
                'losses': model.get_current_log()}


def main():
    args = parse_args()
    if args.stage is not None:
        print(json.dumps(measure_stage(args, args.stage)))
        return
    for stage in (int(s) for s in args.stages.split(',')):
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        report, stderr = run_fresh([__file__, *sys.argv[1:], '--stage', str(stage)], env=env, cwd=REPO_ROOT)
        if report is None:
            sys.exit(f'stage {stage} failed:\n{stderr[-3000:]}')
        print(f"stage {stage} ({report['model']}, {report['autocast']}) on {report['machine']}: "
              f"{report['batch']} x {report['frames']} "
              f"frames, LQ {report['lq_size']} -> {report['img_size']} px, {report['threads']} threads: "
              f"{report['median_step_s']:.2f} s per step (median of {len(report['steps_s'])}), "
              f"{report['peak_memory_mb']:.0f} MB {report['memory_kind']}; "
              f"{report['trainable_params']:,d} of {report['generator_params']:,d} generator parameters trained")


if __name__ == '__main__':
    main()
