"""Clips as folders of frame images, frames paired across methods by the number in their names."""
import re
from pathlib import Path

import cv2
import numpy as np

from vfsr_data.clip_frames import IMAGE_EXTENSIONS


class EvaluationError(ValueError):
    """A problem with the command line or the data, reported in one line."""


FRAME_NUMBER = re.compile(r'\d+')


def clip_frames(folder: Path) -> dict[int, Path]:
    """The frame images of a clip folder by the number in their names (the first number: ``00000003_500000.png``,
    ``frame_3.png`` and ``3.jpg`` are frame 3), in number order."""
    frames = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        match = FRAME_NUMBER.search(path.stem)
        if match is None:
            raise EvaluationError(f'{folder}: frame {path.name} has no number in its name (frames are paired by it)')
        number = int(match.group())
        if number in frames:
            raise EvaluationError(f'{folder}: frames {frames[number].name} and {path.name} have the same number '
                                  f'{number}')
        frames[number] = path
    return dict(sorted(frames.items()))


def clip_folders(root: Path) -> dict[str, Path]:
    """Every sub-folder of ``root`` is a clip, empty ones included (they are reported, never dropped)."""
    if not root.is_dir():
        raise EvaluationError(f'{root}: not a folder')
    clips = {path.name: path for path in sorted(root.iterdir()) if path.is_dir() and not path.name.startswith('.')}
    if not clips:
        raise EvaluationError(f'{root}: no clip folders')
    return clips


def read_frames(folder: Path) -> list[np.ndarray]:
    """The frames of one clip folder (BGR uint8) in the order of their numbers."""
    return [read_image(path) for path in clip_frames(folder).values()]


def read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise EvaluationError(f'{path}: not a readable image')
    return image
