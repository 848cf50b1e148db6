"""VidFace demo on a fresh machine, CPU only, nothing downloaded: ``python demo.py``.

1. builds a small TUFs-format dataset from scikit-image's astronaut photo (``datasets_prep/make_demo_tufs.py``);
2. trains a small VidFace on it for a few minutes (``python train.py -opt options/demo_vidface.yml``), validating
   on clips with unseen random framings;
3. scores bicubic interpolation on the same validation clips (``python test.py -opt options/test_bicubic_demo.yml``);
4. prints PSNR/SSIM (RGB and Y) of both side by side;
5. makes a clip of a tiny (20 px wide) moving face from the same photo and restores it with that VidFace
   (``vfsr-restore ... --model vidface --compare``);
6. says what it wrote and what to open.

The validation images (``<clip>_<iteration>_compare.png``: bicubic | VidFace | GT, titles burnt in) are under
``experiments/demo_vidface/visualization``; the final validation after training, a copy of the last one, is not
kept twice. ``results/demo_overview.png`` puts four clips together (the README's picture).
Every run starts afresh: it replaces the demo's own dataset and folders of the previous run (BasicSR would keep each
earlier one as ``*_archived_<time>``).
``--iters N`` shortens the schedule (the tests use it); the folders are relative to this file.
"""
import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import yaml
from PIL import Image

from datasets_prep.make_demo_tufs import make_demo_tufs

ROOT = Path(__file__).resolve().parent
TRAIN_OPTIONS = 'options/demo_vidface.yml'
BICUBIC_OPTIONS = 'options/test_bicubic_demo.yml'
VIDFACE_METRICS = ROOT / 'experiments' / 'demo_vidface' / 'metrics_demo_tufs_val.json'
BICUBIC_METRICS = ROOT / 'results' / 'bicubic_demo' / 'metrics_demo_tufs_val.json'
# The folders a run writes (its experiment name in the option files), with the archived copies of earlier runs.
RUN_FOLDERS = (('experiments', 'demo_vidface'), ('tb_logger', 'demo_vidface'), ('results', 'bicubic_demo'),
               ('results', 'demo_restore'), ('results', 'demo_frames'))
METRICS = (('psnr_rgb', 'PSNR RGB (dB)'), ('ssim_rgb', 'SSIM RGB'), ('psnr_y', 'PSNR Y (dB)'), ('ssim_y', 'SSIM Y'))
VISUALIZATION = VIDFACE_METRICS.parent / 'visualization'
COLUMN_TITLES = ('bicubic', 'VidFace', 'GT')  # the panels of a *_compare.png, left to right
OVERVIEW = ROOT / 'results' / 'demo_overview.png'
RESTORE_FOLDER = ROOT / 'results' / 'demo_restore'
# The validation snapshots in vfsr-evaluate's layout: <method>/<clip>/<frame>.png, the 8 validation clips' reference
# snapshots as the frames of one clip (README: Evaluate).
EVALUATION_FRAMES = ROOT / 'results' / 'demo_frames'
# A clip of a tiny moving face made from the same photo, restored 4x by the demo's VidFace.
FACE_VIDEO = ['-m', 'datasets_prep.make_face_video', '--output', str(RESTORE_FOLDER / 'tiny_face.mp4'),
              '--size', '160x120', '--frames', '48', '--face-width', '20']
RESTORE = ['-m', 'vfsr_restore.cli', str(RESTORE_FOLDER / 'tiny_face.mp4'), '-o', str(RESTORE_FOLDER / 'restored.mp4'),
           '--overwrite', '--model', 'vidface', '--opt', TRAIN_OPTIONS,
           '--weights', 'experiments/demo_vidface/models/net_g_latest.pth', '--upscale', '4', '--min-face-size', '12',
           '--compare', '--no-progress']


def run(*args: str):
    subprocess.run([sys.executable, *args], cwd=ROOT, check=True)


def shortened_schedule(iters: int) -> list[str]:
    """``--force_yml`` entries for an ``iters``-long cosine, validated once at the end."""
    return ['--force_yml', f'train:total_iter={iters}', f'train:scheduler:periods=[{iters}]',
            f'val:val_freq={iters + 1}', f'logger:save_checkpoint_freq={iters}']


def remove_previous_run() -> None:
    """Remove the demo's own output folders of earlier runs, so that a rerun neither resumes nor piles up copies."""
    for parent, name in RUN_FOLDERS:
        for folder in [ROOT / parent / name, *(ROOT / parent).glob(f'{name}_archived_*')]:
            shutil.rmtree(folder, ignore_errors=True)


def drop_final_validation_copies(total_iter: int) -> None:
    """BasicSR validates once more after the last iteration (named ``total_iter`` + 1 or + 2) with the same weights:
    that copy is removed where it equals the last periodic one, else renamed to the iteration it shows."""
    for path in sorted(VISUALIZATION.glob('*/*.png')):
        match = re.fullmatch(rf'{re.escape(path.parent.name)}_(\d+)(_compare)?\.png', path.name)
        if match is None or int(match[1]) <= total_iter:
            continue
        last = path.with_name(f'{path.parent.name}_{total_iter}{match[2] or ""}.png')
        if not last.exists():
            path.rename(last)
        elif last.read_bytes() == path.read_bytes():
            path.unlink()


def write_evaluation_frames(total_iter: int) -> None:
    """Split each clip's last ``bicubic | VidFace | GT`` image into ``results/demo_frames/{bicubic,VidFace,GT}``:
    one folder per method holding one clip whose frames are the validation clips' reference snapshots."""
    for path in sorted(VISUALIZATION.glob(f'*/*_{total_iter}_compare.png')):
        image = cv2.imread(str(path))
        width = image.shape[1] // len(COLUMN_TITLES)
        for index, method in enumerate(('bicubic', 'VidFace', 'GT')):
            target = EVALUATION_FRAMES / method / 'demo_tufs_val' / f'{path.parent.name}.png'
            target.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(target), image[:, index * width:(index + 1) * width])


def title_strip(width: int, titles=COLUMN_TITLES, height: int = 16) -> np.ndarray:
    """A white strip of ``width`` naming equal-width panels, centred."""
    strip = np.full((height, width, 3), 255, np.uint8)
    panel = width // len(titles)
    for index, title in enumerate(titles):
        (text_width, _), _ = cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        origin = (index * panel + max(0, (panel - text_width) // 2), height - 4)
        cv2.putText(strip, title, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def label_visualization() -> list[Path]:
    """Burn the column titles into every ``*_compare.png`` that does not start with them yet; returns them all."""
    compares = sorted(VISUALIZATION.glob('*/*_compare.png'))
    for path in compares:
        image = cv2.imread(str(path))
        strip = title_strip(image.shape[1])
        if not np.array_equal(image[:len(strip)], strip):
            cv2.imwrite(str(path), np.concatenate([strip, image]))
    return compares


def write_overview(compares: list[Path], clips: int = 4) -> None:
    """The last validation image of the first ``clips`` clips, two by two."""
    last = {}
    for path in compares:  # sorted: per clip, the highest iteration wins below
        iteration = int(path.stem.split('_')[-2])
        if iteration >= last.get(path.parent, (-1, None))[0]:
            last[path.parent] = (iteration, path)
    images = [cv2.imread(str(path)) for _, path in [last[folder] for folder in sorted(last)][:clips]]
    if len(images) < 2:
        return
    images = images[:len(images) // 2 * 2]
    rows = [np.concatenate(images[index:index + 2], axis=1) for index in range(0, len(images), 2)]
    OVERVIEW.parent.mkdir(parents=True, exist_ok=True)
    overview = Image.fromarray(np.ascontiguousarray(np.concatenate(rows)[..., ::-1]))
    overview.quantize(colors=64).save(OVERVIEW, optimize=True)  # 64 colours: a few tens of KB, fit for a README


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
    run(str(ROOT / 'train.py'), '--opt', TRAIN_OPTIONS, *(shortened_schedule(args.iters) if args.iters else []))
    run(str(ROOT / 'test.py'), '--opt', BICUBIC_OPTIONS)
    total_iter = args.iters or yaml.safe_load((ROOT / TRAIN_OPTIONS).read_text())['train']['total_iter']
    drop_final_validation_copies(total_iter)
    write_evaluation_frames(total_iter)
    write_overview(label_visualization())
    run(*FACE_VIDEO)
    run(*RESTORE)

    vidface = json.loads(VIDFACE_METRICS.read_text())
    bicubic = json.loads(BICUBIC_METRICS.read_text())
    print(f'\nVidFace demo: {vidface["num_clips"]} validation clips, scored on their reference snapshot (im4)\n')
    print(comparison_table(bicubic['metrics'], vidface['metrics']))
    gain = vidface['metrics']['psnr_y'] - bicubic['metrics']['psnr_y']
    verdict = 'beats' if gain > 0 else 'does not beat yet (train longer)'
    print(f'\nVidFace {verdict} bicubic: {gain:+.2f} dB PSNR on Y.')
    beats = 'It beats bicubic on its own validation clips, but on' if gain > 0 else 'On'
    print(f"""
The demo wrote (paths relative to {ROOT}):
  {relative(VISUALIZATION)}/<clip>/<clip>_<iteration>_compare.png
      each validation clip's reference snapshot: bicubic | VidFace | GT, after {total_iter} iterations and before
  {relative(OVERVIEW)}            four of them together
  {relative(RESTORE_FOLDER)}/restored.mp4          the tiny-face clip restored 4x by the demo's VidFace
  {relative(RESTORE_FOLDER)}/restored_compare.mp4  open this one: input (pixels enlarged) | restored, side by side
  {relative(VIDFACE_METRICS)}, {relative(BICUBIC_METRICS)}  every clip's scores
  {relative(EVALUATION_FRAMES)}/{{GT,VidFace,bicubic}}/  the reference snapshots, for vfsr-evaluate (README: Evaluate)

The demo's VidFace has 0.26 M parameters and saw one photo for {total_iter} iterations: it shows the whole path
(data, training, validation, restoring a video), not the quality. {beats} the video its face is
blotchier than the input beside it; restoring real videos needs the official weights (README: Restore your
video).""")


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


if __name__ == '__main__':
    main()
