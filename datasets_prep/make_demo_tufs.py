"""Build a small TUFs-format dataset from a real face that ships with scikit-image (``skimage.data.astronaut()``).

Every snapshot is the astronaut's face seen through its own random similarity transform (rotation, scale, shift:
the unaligned, differently framed snapshots VidFace is made for) and a mild brightness/contrast change, cropped to
GT 128x96; its five landmarks go through the same transform. Train and val clips draw from different random
streams, so validation sees framings the network never trained on. Layout (see ``vfsr_data/tufs_dataset.py``)::

    <output>/train/train000/0001/im1.png ... im7.png    <output>/meta_info_train.txt
    <output>/val/val000/0001/im1.png ... im7.png        <output>/meta_info_val.txt
    <output>/landmarks.json                             both splits, keys 'train000/0001/im1.png', 'val000/...'

The output is written whole or not at all; an existing one is kept unless ``--overwrite`` (the same seed gives the
same dataset). ``make demo`` (``python demo.py``) runs it for you.

Example (what options/demo_vidface.yml reads)::

    python -m datasets_prep.make_demo_tufs --output datasets/demo_tufs
"""
import json
from pathlib import Path

import cv2
import numpy as np
import skimage.data

from datasets_prep.cli import ScriptParser, run_script
from vfsr_face.astronaut import ASTRONAUT_FACE_CENTRE, ASTRONAUT_FACE_WIDTH, ASTRONAUT_LANDMARKS
from vfsr_io.atomic_output import atomic_directory

GT_HEIGHT, GT_WIDTH = 128, 96
NUM_SNAPSHOTS = 7
# Ranges of the per-snapshot random changes.
MAX_ROTATION_DEG = 12.0
SCALE_RANGE = (0.88, 1.12)
MAX_SHIFT_PX = 6.0  # in GT pixels
MAX_BRIGHTNESS = 0.06  # added, in [0, 1] units
CONTRAST_RANGE = (0.9, 1.1)


def snapshot_transform(rng: np.random.Generator) -> np.ndarray:
    """A random 2x3 similarity matrix from the photo to a GT-sized crop around the face."""
    angle = np.deg2rad(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    scale = GT_WIDTH / ASTRONAUT_FACE_WIDTH * rng.uniform(*SCALE_RANGE)
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    crop_centre = np.array([(GT_WIDTH - 1) / 2, (GT_HEIGHT - 1) / 2]) + rng.uniform(-MAX_SHIFT_PX, MAX_SHIFT_PX, 2)
    translation = crop_centre - rotation @ np.array(ASTRONAUT_FACE_CENTRE)
    return np.hstack([rotation, translation[:, None]])


def render_snapshot(photo: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[float]]:
    """One GT snapshot (128, 96, 3) uint8 RGB and its 10 landmark values normalised to [0, 1]."""
    matrix = snapshot_transform(rng)
    snapshot = cv2.warpAffine(photo, matrix, (GT_WIDTH, GT_HEIGHT), flags=cv2.INTER_CUBIC,
                              borderMode=cv2.BORDER_REFLECT101).astype(np.float32) / 255
    mean = snapshot.mean()
    snapshot = (snapshot - mean) * rng.uniform(*CONTRAST_RANGE) + mean + rng.uniform(-MAX_BRIGHTNESS, MAX_BRIGHTNESS)
    snapshot = np.round(np.clip(snapshot, 0, 1) * 255).astype(np.uint8)
    points = ASTRONAUT_LANDMARKS @ matrix[:, :2].T + matrix[:, 2]
    # OpenCV puts pixel centres on integers; TUFs landmarks are continuous coordinates over the image size
    normalised = (points + 0.5) / np.array([GT_WIDTH, GT_HEIGHT])
    return snapshot, [round(float(value), 6) for value in normalised.reshape(-1)]


def write_split(out_root: Path, split: str, num_clips: int, rng: np.random.Generator, landmarks: dict):
    """Write ``num_clips`` clips of 7 snapshots under ``out_root/split`` plus its meta_info file."""
    photo = skimage.data.astronaut()
    clips = []
    for clip_index in range(num_clips):
        clip = f'{split}{clip_index:03d}/0001'
        clip_dir = out_root / split / clip
        clip_dir.mkdir(parents=True, exist_ok=True)
        for frame in range(1, NUM_SNAPSHOTS + 1):
            snapshot, values = render_snapshot(photo, rng)
            cv2.imwrite(str(clip_dir / f'im{frame}.png'), cv2.cvtColor(snapshot, cv2.COLOR_RGB2BGR))
            landmarks[f'{clip}/im{frame}.png'] = values
        clips.append(f'{clip} {NUM_SNAPSHOTS} ({GT_HEIGHT},{GT_WIDTH},3)')
    (out_root / f'meta_info_{split}.txt').write_text('\n'.join(clips) + '\n')


def make_demo_tufs(out_root: str | Path = 'datasets/demo_tufs', num_train: int = 48, num_val: int = 8,
                   seed: int = 0, overwrite: bool = False) -> Path:
    """Build the demo dataset at ``out_root`` (written atomically; an existing one is replaced only with
    ``overwrite``) and return ``out_root``."""
    out_root = Path(out_root)
    train_rng, val_rng = (np.random.default_rng(stream) for stream in np.random.SeedSequence(seed).spawn(2))
    landmarks = {}
    with atomic_directory(out_root, overwrite) as partial:
        write_split(partial, 'train', num_train, train_rng, landmarks)
        write_split(partial, 'val', num_val, val_rng, landmarks)
        (partial / 'landmarks.json').write_text(json.dumps(landmarks, indent=0))
    return out_root


def main():
    parser = ScriptParser(__file__, __doc__)
    parser.add_flag('--output', default='datasets/demo_tufs', old=('--out', ),
                    help='the dataset folder to write (default datasets/demo_tufs)')
    parser.add_flag('--num-train', type=int, default=48, old=('--num_train', ), help='training clips (default 48)')
    parser.add_flag('--num-val', type=int, default=8, old=('--num_val', ), help='validation clips (default 8)')
    parser.add_flag('--seed', type=int, default=0, help='random seed of the framings (default 0)')
    parser.add_flag('--overwrite', action='store_true', help='replace an existing output once the new one is done')

    def make(args):
        out_root = make_demo_tufs(args.output, args.num_train, args.num_val, args.seed, args.overwrite)
        print(f'demo TUFs dataset: {args.num_train} train and {args.num_val} val clips of {NUM_SNAPSHOTS} snapshots '
              f'in {out_root}')

    run_script(parser, make)


if __name__ == '__main__':
    main()
