"""The noise floor of the landmark jitter metric: what it reads on clips whose true jitter is known.

Clips of 12 frames made from one real face photograph (the astronaut scikit-image ships, aligned to the FFHQ
template at 256x256 as KEEP's test faces are): a still face with independent sensor noise on every frame, steady
motion (true jitter 0), brightness flicker (true jitter 0), and horizontal shakes of known amplitude (the face moves
+a, -a, +a, ... pixels: true jitter 4a divided by the inter-ocular distance). Each is scored by
``calculate_landmark_jitter`` (MTCNN, CPU) as vfsr-evaluate scores it. Prints a table and, last, one JSON line.

    python benchmarks/bench_landmark_jitter_floor.py
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import vfsr_compat  # noqa: E402, F401  (before basicsr)

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from basicsr.metrics import calculate_metric  # noqa: E402

import vfsr_eval  # noqa: E402, F401  (registers the metrics)
from vfsr_data.face_landmarks import align_face  # noqa: E402
from vfsr_eval.face_keypoints import clip_landmarks  # noqa: E402
from vfsr_face.astronaut import ASTRONAUT_LANDMARKS, astronaut_bgr  # noqa: E402

FRAMES = 12
SIZE = 256


def moved(image: np.ndarray, dx: float) -> np.ndarray:
    """``image`` moved ``dx`` pixels to the right (bilinear for fractions, edges reflected)."""
    return cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, 0]]), image.shape[1::-1], flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)


def clips(face: np.ndarray) -> dict[str, tuple[list[np.ndarray], float]]:
    """{name: (frames, true horizontal amplitude of the shake in pixels, 0 when the true jitter is 0)}."""
    rng = np.random.default_rng(0)
    noise = [np.clip(face + rng.normal(0, 2, face.shape), 0, 255).astype(np.uint8) for _ in range(FRAMES)]
    made = {
        'still, identical frames': ([face] * FRAMES, 0),
        'still, sensor noise sigma 2': (noise, 0),
        'steady motion 0.5 px/frame': ([moved(face, 0.5 * t) for t in range(FRAMES)], 0),
        'steady motion 1 px/frame': ([moved(face, t) for t in range(FRAMES)], 0),
        'steady motion 2 px/frame': ([moved(face, 2 * t) for t in range(FRAMES)], 0),
    }
    for gain in (0.05, 0.10):
        flicker = [np.clip(face * (1 + gain * (t % 2)), 0, 255).astype(np.uint8) for t in range(FRAMES)]
        made[f'brightness flicker +{gain:.0%} every other frame'] = (flicker, 0)
    for amplitude in (0.5, 1, 2, 4):
        made[f'shake +-{amplitude} px'] = ([moved(face, amplitude * (-1) ** t) for t in range(FRAMES)], amplitude)
    return made


def main() -> None:
    face = align_face(astronaut_bgr(), ASTRONAUT_LANDMARKS, SIZE)
    landmarks = clip_landmarks([face], detector='mtcnn', device='cpu')[0]
    interocular = float(np.linalg.norm(landmarks[1] - landmarks[0]))
    results = {}
    print(f'{SIZE}x{SIZE} aligned face, inter-ocular distance {interocular:.1f} px, {FRAMES} frames, MTCNN on the CPU')
    print('| clip | true jitter % | measured % |\n|---|---|---|')
    for name, (frames, amplitude) in clips(face).items():
        measured = float(calculate_metric({'img': frames, 'img2': None},
                                          {'type': 'calculate_landmark_jitter', 'device': 'cpu'}))
        true = 100 * 4 * amplitude / interocular
        results[name] = {'true': round(true, 3), 'measured': round(measured, 3)}
        print(f'| {name} | {true:.2f} | {measured:.2f} |')
    print(json.dumps({'interocular_px': round(interocular, 1), 'jitter_percent': results}))


if __name__ == '__main__':
    main()
