"""Align VFHQ clips to the FFHQ 5-point template: raw clip frames + landmarks -> ``size`` x ``size`` face clips.

Input: ``--frames <root>/<clip>/<frame>.png`` and ``--annotations <dir>/<clip>.txt``, either VFHQ annotation files
(recognised by their ``FRAME INDEX`` header; landmarks in source-video pixels, ``--subtract-crop`` shifts them by
the ``CROP`` origin for frames stored as crops) or vfsr landmark files (``vfsr_data/face_landmarks.py``). Frames
are matched to annotation lines by name stem, or by number when both are numbers (``00000012`` and ``12``).

Output: ``--output <root>/<clip>/<frame stem>.png`` aligned faces and, with ``--landmarks-out``, each clip's
landmarks moved into the aligned frames (``<clip>.txt``). Each clip is written atomically and clips already present
are skipped: rerun the same command to resume an interrupted run (delete a clip's folder to redo it).

Example (what options/train_keep_vfhq_stage*.yml read: datasets/VFHQ/frames + datasets/VFHQ/landmarks; see
docs/data.md)::

    python -m datasets_prep.align_vfhq_clips --frames datasets/VFHQ/raw --annotations datasets/VFHQ/annotations \
        --subtract-crop --output datasets/VFHQ/frames --landmarks-out datasets/VFHQ/landmarks
"""
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from datasets_prep.cli import ScriptParser, run_script
from vfsr_data.clip_frames import BadClipError, ClipFrames
from vfsr_data.face_landmarks import (
    align_face,
    read_landmark_file,
    read_vfhq_annotation,
    similarity_to_template,
    transform_points,
    write_landmark_file,
)
from vfsr_io.atomic_output import atomic_directory


def read_clip_landmarks(path: Path, subtract_crop: bool) -> dict[str, np.ndarray]:
    """Landmarks of one clip from a VFHQ annotation or a vfsr landmark file, keyed by frame name stem."""
    if 'FRAME INDEX' in path.read_text():
        landmarks, crop = read_vfhq_annotation(path)
        if subtract_crop:
            if crop is None:
                raise ValueError(f'{path} has no CROP line to subtract')
            landmarks = {name: points - np.array(crop[:2], dtype=np.float32) for name, points in landmarks.items()}
    else:
        landmarks = read_landmark_file(path)
    return {Path(name).stem: points for name, points in landmarks.items()}


def find_landmarks(landmarks: dict[str, np.ndarray], stem: str) -> np.ndarray | None:
    if stem in landmarks:
        return landmarks[stem]
    if stem.isdigit():
        by_number = {int(key): value for key, value in landmarks.items() if key.isdigit()}
        return by_number.get(int(stem))
    return None


def align_clips(frames_root: str | Path, annotations: str | Path, output: str | Path, size: int = 512,
                landmarks_out: str | Path | None = None, subtract_crop: bool = False,
                skip_missing: bool = False) -> list[str]:
    """Align every clip under ``frames_root``; returns the clips written (already aligned ones are skipped)."""
    frames = ClipFrames(frames_root)
    output, annotations = Path(output), Path(annotations)
    if not annotations.is_dir():
        raise FileNotFoundError(f'annotation folder {annotations} is not a folder (expected <clip>.txt files)')
    output.mkdir(parents=True, exist_ok=True)
    if landmarks_out is not None:
        Path(landmarks_out).mkdir(parents=True, exist_ok=True)
    written = []
    for clip, stems in tqdm(frames.clips.items(), desc='aligning clips', unit='clip'):
        if (output / clip).exists():
            continue
        annotation = annotations / f'{clip}.txt'
        if not annotation.is_file():
            raise BadClipError(f'clip {clip!r}: annotation {annotation} is missing')
        landmarks = read_clip_landmarks(annotation, subtract_crop)
        aligned_landmarks = {}
        with atomic_directory(output / clip) as partial:
            partial.mkdir()
            for stem in stems:
                points = find_landmarks(landmarks, stem)
                if points is None:
                    if skip_missing:
                        continue
                    raise BadClipError(f'{frames.describe(clip, stem)} has no landmarks in {annotation}')
                cv2.imwrite(str(partial / f'{stem}.png'), align_face(frames.read(clip, stem), points, size))
                aligned_landmarks[f'{stem}.png'] = transform_points(points, similarity_to_template(points, size))
            if landmarks_out is not None:  # before the clip folder appears, so a present clip has its landmarks
                write_landmark_file(Path(landmarks_out) / f'{clip}.txt', aligned_landmarks)
        written.append(clip)
    return written


def main():
    parser = ScriptParser(__file__, __doc__)
    parser.add_flag('--frames', required=True, help='root of the raw clip folders (<root>/<clip>/<frame>.png)')
    parser.add_flag('--annotations', required=True,
                    help='folder of <clip>.txt: VFHQ annotation files or vfsr landmark files')
    parser.add_flag('--output', required=True, help='root for the aligned clip folders')
    parser.add_flag('--size', type=int, default=512, help='aligned face size in pixels (default 512)')
    parser.add_flag('--landmarks-out', old=('--landmarks_out', ),
                    help='folder for the landmarks of the aligned frames (what dataroot_landmarks reads)')
    parser.add_flag('--subtract-crop', action='store_true', old=('--subtract_crop', ),
                    help='VFHQ annotations: shift the landmarks by the CROP origin (frames stored as crops)')
    parser.add_flag('--skip-missing', action='store_true', old=('--skip_missing', ),
                    help='drop frames without landmarks instead of stopping')

    def align(args):
        written = align_clips(args.frames, args.annotations, args.output, args.size, args.landmarks_out,
                              args.subtract_crop, args.skip_missing)
        print(f'aligned {len(written)} clips into {args.output}')

    run_script(parser, align)


if __name__ == '__main__':
    main()
