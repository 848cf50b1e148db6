"""VidFace demo on a fresh machine, CPU only, nothing downloaded: ``python demo.py``.

1. builds a small TUFs-format dataset from scikit-image's astronaut photo (``datasets_prep/make_demo_tufs.py``);
2. trains a small VidFace on it for a few minutes (``python train.py -opt options/demo_vidface.yml``), validating
   on clips with unseen random framings;
3. scores bicubic interpolation on the same validation clips (``python test.py -opt options/test_bicubic_demo.yml``);
4. prints PSNR/SSIM (RGB and Y) of both side by side.

Images of the validation clips (``LR bicubic | VidFace | GT``) are under ``experiments/demo_vidface/visualization``.
Every run starts afresh: it replaces the demo's own dataset and folders of the previous run (BasicSR would keep each
earlier one as ``*_archived_<time>``).
``--iters N`` shortens the schedule (the tests use it); the folders are relative to this file.
"""
import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from datasets_prep.make_demo_tufs import make_demo_tufs

ROOT = Path(__file__).resolve().parent
TRAIN_OPTIONS = 'options/demo_vidface.yml'
BICUBIC_OPTIONS = 'options/test_bicubic_demo.yml'
VIDFACE_METRICS = ROOT / 'experiments' / 'demo_vidface' / 'metrics_demo_tufs_val.json'
BICUBIC_METRICS = ROOT / 'results' / 'bicubic_demo' / 'metrics_demo_tufs_val.json'
# The folders a run writes (its experiment name in the option files), with the archived copies of earlier runs.
RUN_FOLDERS = (('experiments', 'demo_vidface'), ('tb_logger', 'demo_vidface'), ('results', 'bicubic_demo'))
METRICS = (('psnr_rgb', 'PSNR RGB (dB)'), ('ssim_rgb', 'SSIM RGB'), ('psnr_y', 'PSNR Y (dB)'), ('ssim_y', 'SSIM Y'))


def run(script: str, *args: str):
    subprocess.run([sys.executable, str(ROOT / script), *args], cwd=ROOT, check=True)


def shortened_schedule(iters: int) -> list[str]:
    """``--force_yml`` entries for an ``iters``-long cosine, validated once at the end."""
    return ['--force_yml', f'train:total_iter={iters}', f'train:scheduler:periods=[{iters}]',
            f'val:val_freq={iters + 1}', f'logger:save_checkpoint_freq={iters}']


def remove_previous_run() -> None:
    """Remove the demo's own output folders of earlier runs, so that a rerun neither resumes nor piles up copies."""
    for parent, name in RUN_FOLDERS:
        for folder in [ROOT / parent / name, *(ROOT / parent).glob(f'{name}_archived_*')]:
            shutil.rmtree(folder, ignore_errors=True)


def comparison_table(bicubic: dict, vidface: dict) -> str:
    lines = [f'{"metric":<16}{"bicubic":>10}{"VidFace":>10}{"gain":>10}']
    for key, label in METRICS:
        lines.append(f'{label:<16}{bicubic[key]:>10.4f}{vidface[key]:>10.4f}{vidface[key] - bicubic[key]:>+10.4f}')
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--iters', type=int, default=None, help='training iterations (default: the option file)')
    args = parser.parse_args()

    remove_previous_run()
    make_demo_tufs(ROOT / 'datasets' / 'demo_tufs', overwrite=True)
    run('train.py', '-opt', TRAIN_OPTIONS, *(shortened_schedule(args.iters) if args.iters else []))
    run('test.py', '-opt', BICUBIC_OPTIONS)

    vidface = json.loads(VIDFACE_METRICS.read_text())
    bicubic = json.loads(BICUBIC_METRICS.read_text())
    print(f'\nVidFace demo: {vidface["num_clips"]} validation clips, scored on their reference snapshot (im4)\n')
    print(comparison_table(bicubic['metrics'], vidface['metrics']))
    gain = vidface['metrics']['psnr_y'] - bicubic['metrics']['psnr_y']
    verdict = 'beats' if gain > 0 else 'does not beat yet (train longer)'
    print(f'\nVidFace {verdict} bicubic: {gain:+.2f} dB PSNR on Y.')
    print(f'Images: {VIDFACE_METRICS.parent / "visualization"}')


if __name__ == '__main__':
    main()
