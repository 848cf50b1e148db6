"""Build a tiny VFHQ-format dataset from a real face that ships with scikit-image (``skimage.data.astronaut()``).

Each clip is a short "video" of the astronaut's face: a random starting framing (similarity transform: rotation,
scale, shift) that drifts a little from frame to frame, like a talking head, with a slow brightness drift. The five
landmarks of every frame go through the same transform, so the clip aligns exactly like a VFHQ clip with its
annotation. For tests and demos (no download needed). Layout (see ``vfsr_data/clip_frames.py`` and
``vfsr_data/face_landmarks.py``)::

    <output>/frames/clip000/00000000.png ...   raw, unaligned frames (frame_size x frame_size)
    <output>/landmarks/clip000.txt              per-frame 5-point landmarks

The output is written whole or not at all; an existing one is kept unless ``--overwrite``.

Example (the KEEP CPU demos, options/demo_keep_stage*.yml; their next commands are in docs/data.md)::

    python -m datasets_prep.make_synthetic_vfhq --output datasets/synthetic_vfhq --clips 4 --frames 16
"""
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from datasets_prep.cli import ScriptParser, run_script
from vfsr_data.face_landmarks import transform_points, write_landmark_file
from vfsr_face.astronaut import ASTRONAUT_FACE_CENTRE, ASTRONAUT_FACE_WIDTH, ASTRONAUT_LANDMARKS, astronaut_bgr
from vfsr_io.atomic_output import atomic_directory

FACE_FRACTION = 0.6  # face width / frame width: leaves background around the face, as in raw VFHQ frames
START_ROTATION_DEG, START_SCALE, START_SHIFT = 10.0, (0.9, 1.1), 0.06  # shift as a fraction of the frame size
STEP_ROTATION_DEG, STEP_SCALE, STEP_SHIFT = 1.0, 0.01, 0.01  # per-frame random walk
STEP_BRIGHTNESS = 0.01


def frame_transform(frame_size: int, rotation_deg: float, scale: float, shift: np.ndarray) -> np.ndarray:
    """2x3 similarity matrix from the photo to a frame: face centre to frame centre (plus shift), face width scaled."""
    zoom = scale * FACE_FRACTION * frame_size / ASTRONAUT_FACE_WIDTH
    matrix = cv2.getRotationMatrix2D(ASTRONAUT_FACE_CENTRE, rotation_deg, zoom)
    matrix[:, 2] += np.array([frame_size / 2, frame_size / 2]) + shift - np.array(ASTRONAUT_FACE_CENTRE)
    return matrix


def make_clip(photo: np.ndarray, num_frames: int, frame_size: int, rng: np.random.Generator):
    """Frames (T, S, S, 3) BGR uint8 and landmarks (T, 5, 2) of one synthetic clip."""
    rotation = rng.uniform(-START_ROTATION_DEG, START_ROTATION_DEG)
    scale = rng.uniform(*START_SCALE)
    shift = rng.uniform(-START_SHIFT, START_SHIFT, size=2) * frame_size
    brightness = 0.0
    frames, landmarks = [], []
    for _ in range(num_frames):
        matrix = frame_transform(frame_size, rotation, scale, shift)
        frame = cv2.warpAffine(photo, matrix, (frame_size, frame_size), flags=cv2.INTER_AREA,
                               borderMode=cv2.BORDER_REFLECT_101)
        frames.append(np.clip(frame.astype(np.float32) + 255 * brightness, 0, 255).astype(np.uint8))
        landmarks.append(transform_points(ASTRONAUT_LANDMARKS, matrix))
        rotation += rng.uniform(-STEP_ROTATION_DEG, STEP_ROTATION_DEG)
        scale *= 1 + rng.uniform(-STEP_SCALE, STEP_SCALE)
        shift = shift + rng.uniform(-STEP_SHIFT, STEP_SHIFT, size=2) * frame_size
        brightness += rng.uniform(-STEP_BRIGHTNESS, STEP_BRIGHTNESS)
    return np.stack(frames), np.stack(landmarks)


def make_synthetic_vfhq(out_root: str | Path = 'datasets/synthetic_vfhq', num_clips: int = 4, num_frames: int = 16,
                        frame_size: int = 128, seed: int = 0, overwrite: bool = False) -> Path:
    """Write ``num_clips`` clips of ``num_frames`` frames; returns ``out_root`` (written atomically)."""
    photo = astronaut_bgr()
    rng = np.random.default_rng(seed)
    out_root = Path(out_root)
    with atomic_directory(out_root, overwrite) as partial:
        (partial / 'landmarks').mkdir(parents=True)
        for clip_index in tqdm(range(num_clips), desc='synthetic VFHQ clips', unit='clip'):
            clip = f'clip{clip_index:03d}'
            frames, landmarks = make_clip(photo, num_frames, frame_size, rng)
            (partial / 'frames' / clip).mkdir(parents=True)
            names = [f'{index:08d}.png' for index in range(num_frames)]
            for name, frame in zip(names, frames):
                cv2.imwrite(str(partial / 'frames' / clip / name), frame)
            write_landmark_file(partial / 'landmarks' / f'{clip}.txt', dict(zip(names, landmarks)))
    return out_root


def main():
    parser = ScriptParser(__file__, __doc__)
    parser.add_flag('--output', default='datasets/synthetic_vfhq', old=('--out', ),
                    help='the dataset folder to write (default datasets/synthetic_vfhq)')
    parser.add_flag('--clips', type=int, default=4, help='number of clips (default 4)')
    parser.add_flag('--frames', type=int, default=16, help='frames per clip (default 16)')
    parser.add_flag('--frame-size', type=int, default=128, old=('--frame_size', ),
                    help='raw frame width and height in pixels (default 128)')
    parser.add_flag('--seed', type=int, default=0, help='random seed of the motion (default 0)')
    parser.add_flag('--overwrite', action='store_true', help='replace an existing output once the new one is done')
    run_script(parser, lambda args: print(make_synthetic_vfhq(args.output, args.clips, args.frames, args.frame_size,
                                                              args.seed, args.overwrite)))


if __name__ == '__main__':
    main()
