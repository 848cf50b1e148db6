"""What the page shows of a finished job besides the videos: a frame of input and result at the same size, one
thumbnail per face track, and the stability of input and result (vfsr_eval's reference-free flicker measures and
the flicker-slice picture)."""
import itertools
from pathlib import Path

import vfsr_compat  # noqa: F401  (before basicsr)

import cv2
import numpy as np

from vfsr_eval.clip_scoring import FrameError
from vfsr_eval.face_keypoints import clip_landmarks
from vfsr_eval.landmark_jitter_metric import landmark_jitter
from vfsr_eval.plots import plot_flicker, temporal_slice
from vfsr_eval.warping_error_metric import calculate_warping_error
from vfsr_restore.media import probe, read_frames

THUMBNAIL_FRAME = 12  # a track's thumbnail shows its 12th frame (past the fade-in), or its last when shorter
THUMBNAIL_HEIGHT = 160


def video_frames(path: Path, start: float | None = None, end: float | None = None, count: int | None = None):
    """The first ``count`` (all: None) upright RGB frames of ``path`` between ``start`` and ``end`` seconds."""
    return [frame.image for frame in itertools.islice(read_frames(probe(path), start, end), count)]


def frame_pair(input_path: Path, output_path: Path, index: int, start: float | None, end: float | None):
    """(input, restored) RGB frame ``index`` of the restored span, the input enlarged to the result's size."""
    restored = video_frames(output_path, count=index + 1)[-1]
    before = video_frames(input_path, start, end, count=index + 1)[-1]
    return to_size(before, restored.shape), restored


def to_size(image: np.ndarray, shape) -> np.ndarray:
    if image.shape[:2] == tuple(shape[:2]):
        return image
    return cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


class TrackThumbnails:
    """Wraps a vfsr_restore face restorer (same interface, same results) and keeps, for each track, the aligned
    crop before and after restoration of its :data:`THUMBNAIL_FRAME`-th frame."""

    def __init__(self, restorer):
        self.restorer = restorer
        self.seen: dict[int, int] = {}
        self.crops_in: dict[object, np.ndarray] = {}
        self.pictures: dict[int, np.ndarray] = {}

    def __getattr__(self, name):
        return getattr(self.restorer, name)

    def push(self, track_id, key, crop):
        self.seen[track_id] = self.seen.get(track_id, 0) + 1
        if self.seen[track_id] <= THUMBNAIL_FRAME:
            self.crops_in[key] = crop
        return self._kept(self.restorer.push(track_id, key, crop))

    def end_track(self, track_id):
        return self._kept(self.restorer.end_track(track_id))

    def _kept(self, results):
        for key, restored in results:
            crop = self.crops_in.pop(key, None)
            if crop is not None:
                before = to_size(crop, restored.shape)
                self.pictures[key[1]] = np.concatenate([before, restored], axis=1)
        return results

    def thumbnails(self) -> list[tuple[np.ndarray, str]]:
        """(RGB picture, caption) per track: the crop as cut from the input | as restored."""
        pictures = []
        for track, picture in sorted(self.pictures.items()):
            height = THUMBNAIL_HEIGHT
            width = round(picture.shape[1] * height / picture.shape[0])
            pictures.append((cv2.resize(picture, (width, height), interpolation=cv2.INTER_AREA),
                             f'track {track}: input | restored'))
        return pictures


def stability(input_path: Path, output_path: Path, start: float | None, end: float | None, frames: int,
              picture: Path, device: str | None) -> dict:
    """Landmark jitter and warping error of the first ``frames`` frames of input and result (the input enlarged
    to the result's size so that both are measured alike), and their flicker-slice picture written to
    ``picture`` through the face's centre. Returns {'input'/'restored': {measure: value or reason}, 'frames',
    'picture'}."""
    restored = video_frames(output_path, count=frames)
    before = [to_size(image, restored[0].shape) for image in video_frames(input_path, start, end, count=frames)]
    clips = {'input': [image[..., ::-1].copy() for image in before[:len(restored)]],
             'restored': [image[..., ::-1].copy() for image in restored]}
    measures, face_x = {}, None
    for name, clip in clips.items():
        row = {}
        try:
            landmarks = clip_landmarks(clip, role=name, device=device)
            row['landmark jitter'] = round(landmark_jitter(landmarks), 3) if len(clip) >= 3 else 'needs 3 frames'
            face_x = landmarks[:, :, 0].mean() if face_x is None else face_x
        except FrameError as error:
            row['landmark jitter'] = f'not measured: {error}'
        row['warping error'] = (round(calculate_warping_error(clip) * 1000, 4) if len(clip) >= 2
                                else 'needs 2 frames')
        measures[name] = row
    position = 0.5 if face_x is None else float(np.clip(face_x / (restored[0].shape[1] - 1), 0, 1))
    slices = {name: temporal_slice(clip, position) for name, clip in clips.items()}
    plot_flicker(picture, f'{len(restored)} frames', slices, position)
    return {**measures, 'frames': len(restored), 'picture': str(picture)}
