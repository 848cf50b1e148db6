"""Training loss curves in fp32 and bf16 (``train.autocast``) on the demo data: is bf16 within the seed's noise?

Runs ``train.py -opt OPT`` three times, each in a fresh process and for ``--iters`` iterations: fp32 with two seeds
(the spread between them is the noise of training itself) and bf16 with the first seed. Prints each loss at every
``--every`` iterations and, per loss, the mean |bf16 - fp32| over the logged iterations next to the mean
|fp32 seed A - fp32 seed B|. Validation and checkpoints are switched off; the runs' experiment folders are removed.

    python -m datasets_prep.make_demo_tufs --output datasets/demo_tufs
    python benchmarks/bench_training_curves.py --opt options/demo_vidface.yml
    python benchmarks/bench_training_curves.py --opt options/demo_keep_stage2.yml  # after stage 1 (docs/data.md)
"""
import argparse
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.harness import machine_description  # noqa: E402

LOG_LINE = re.compile(r'iter:\s*([\d,]+).*?\]\s*(l_\w+: .*)$')
LOSS = re.compile(r'(l_\w+): ([-+0-9.eE]+)')


def train(opt: str, name: str, autocast: str, seed: int, iters: int, every: int) -> dict[int, dict[str, float]]:
    """Run train.py; returns {iteration: {loss name: value}} from its log."""
    overrides = [f'name={name}', f'manual_seed={seed}', f'train:autocast={autocast}', f'train:total_iter={iters}',
                 f'logger:print_freq={every}', f'logger:save_checkpoint_freq={10 * iters}',
                 f'val:val_freq={10 * iters}', 'logger:use_tb_logger=false']
    result = subprocess.run([sys.executable, str(REPO / 'train.py'), '-opt', opt, '--force_yml', *overrides],
                            capture_output=True, text=True, cwd=REPO)
    for folder in (REPO / 'experiments' / name, REPO / 'tb_logger' / name):
        shutil.rmtree(folder, ignore_errors=True)
    if result.returncode != 0:
        sys.exit(f'train.py failed for {name}:\n{result.stderr[-3000:]}')
    curve = {}
    for line in result.stderr.splitlines() + result.stdout.splitlines():
        match = LOG_LINE.search(line)
        if match:
            curve[int(match.group(1).replace(',', ''))] = {k: float(v) for k, v in LOSS.findall(match.group(2))}
    if not curve:
        sys.exit(f'no loss lines in the log of {name}')
    return curve


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--opt', required=True, help='a training option file whose data exists (demo options)')
    parser.add_argument('--iters', type=int, default=100)
    parser.add_argument('--every', type=int, default=10, help='log (and compare) every N iterations')
    parser.add_argument('--seeds', type=int, nargs=2, default=[0, 1], help='seeds A and B of the fp32 runs')
    args = parser.parse_args()

    stem = Path(args.opt).stem
    runs = {'fp32 A': ('fp32', args.seeds[0]), 'fp32 B': ('fp32', args.seeds[1]), 'bf16 A': ('bf16', args.seeds[0])}
    curves = {label: train(args.opt, f'curve_{stem}_{label.replace(" ", "_")}', autocast, seed, args.iters,
                           args.every) for label, (autocast, seed) in runs.items()}
    print(f'{args.opt}: {args.iters} iterations, seeds {args.seeds}; CPU {machine_description("cpu")}')
    iterations = sorted(set.intersection(*(set(curve) for curve in curves.values())))
    losses = sorted(curves['fp32 A'][iterations[0]])
    print(f'{"iter":>6} ' + ' '.join(f'{loss + " " + label:>26}' for loss in losses for label in runs))
    for iteration in iterations:
        print(f'{iteration:>6} ' + ' '.join(f'{curves[label][iteration][loss]:>26.5g}' for loss in losses
                                            for label in runs))
    def mean_gap(loss, a, b):
        return statistics.mean(abs(curves[a][i][loss] - curves[b][i][loss]) for i in iterations)

    for loss in losses:
        print(f'{loss}: mean |bf16 A - fp32 A| {mean_gap(loss, "bf16 A", "fp32 A"):.4g}, '
              f'mean |fp32 A - fp32 B| (noise) {mean_gap(loss, "fp32 A", "fp32 B"):.4g}')


if __name__ == '__main__':
    main()
