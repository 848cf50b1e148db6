"""Synthetic face videos from the astronaut photograph, with exactly known landmarks (tests, benchmarks, demos).

Every face is the astronaut's head (``skimage.data.astronaut()``) cut with a soft elliptical edge, scaled to a
given face width and moved along a straight path; the background is a smooth colour gradient with texture. Options
give a variable frame rate, a scene cut (the background and the face positions change), frames without a face,
rotation metadata and a sine-tone AAC audio track. The landmarks of every face in every frame are returned, so
tests can check geometry. ``python -m datasets_prep.make_face_video`` writes one from the command line.
"""
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from vfsr_face.astronaut import ASTRONAUT_FACE_CENTRE, ASTRONAUT_FACE_WIDTH, ASTRONAUT_LANDMARKS, astronaut_bgr


@dataclass
class FacePath:
    """A face of ``width`` pixels (the astronaut's face width) moving from ``start`` to ``end`` (its centre, in
    fractions of the frame size), visible in frames [first, last] (last None: to the end)."""
    width: float
    start: tuple[float, float] = (0.4, 0.5)
    end: tuple[float, float] = (0.6, 0.5)
    first: int = 0
    last: int | None = None


@dataclass
class VideoSpec:
    """What to generate. ``pts``: explicit timestamps in ``time_base`` units (variable frame rate); else regular at
    ``fps``. ``scene_cut``: index of the first frame of the second scene (faces restart elsewhere)."""
    width: int = 160
    height: int = 120
    frames: int = 24
    fps: int = 25
    faces: list[FacePath] = field(default_factory=lambda: [FacePath(40)])
    pts: list[int] | None = None
    time_base: Fraction = Fraction(1, 12800)
    scene_cut: int | None = None
    rotation: int = 0
    audio_rate: int | None = 16000
    crf: int = 12


def background(width: int, height: int, seed: int) -> np.ndarray:
    """A smooth textured colour background, BGR uint8 (height, width, 3)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    colour_a, colour_b = rng.uniform(30, 220, 3), rng.uniform(30, 220, 3)
    mix = (xs / max(width - 1, 1) + ys / max(height - 1, 1))[..., None] / 2
    texture = cv2.GaussianBlur(rng.normal(0, 25, (height, width, 1)).astype(np.float32), (0, 0), 3)[..., None]
    return np.clip(colour_a * (1 - mix) + colour_b * mix + texture, 0, 255).astype(np.uint8)


def face_transform(width: float, centre: tuple[float, float]) -> np.ndarray:
    """The 2x3 matrix taking astronaut-photo pixels to a face of ``width`` pixels centred at ``centre``."""
    scale = width / ASTRONAUT_FACE_WIDTH
    return np.array([[scale, 0, centre[0] - scale * ASTRONAUT_FACE_CENTRE[0]],
                     [0, scale, centre[1] - scale * ASTRONAUT_FACE_CENTRE[1]]], dtype=np.float64)


def paste_face(frame: np.ndarray, width: float, centre: tuple[float, float]) -> np.ndarray:
    """Paste the astronaut's head into ``frame`` (BGR, in place); returns its 5 landmarks (5, 2) in frame pixels."""
    matrix = face_transform(width, centre)
    size = (frame.shape[1], frame.shape[0])
    face = cv2.warpAffine(astronaut_bgr(), matrix, size, flags=cv2.INTER_AREA if width < 135 else cv2.INTER_CUBIC)
    mask = np.zeros(astronaut_bgr().shape[:2], np.float32)
    cv2.ellipse(mask, (int(ASTRONAUT_FACE_CENTRE[0]), int(ASTRONAUT_FACE_CENTRE[1]) - 10), (80, 105), 0, 0, 360, 1, -1)
    mask = cv2.warpAffine(cv2.GaussianBlur(mask, (0, 0), 8), matrix, size)[..., None]
    frame[:] = (face * mask + frame * (1 - mask)).round().astype(np.uint8)
    return (ASTRONAUT_LANDMARKS @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def render_frames(spec: VideoSpec):
    """Yield (BGR frame, {face index: landmarks (5, 2)}) for every frame of ``spec``."""
    for index in range(spec.frames):
        scene = int(spec.scene_cut is not None and index >= spec.scene_cut)
        frame = background(spec.width, spec.height, seed=scene)
        landmarks = {}
        for face_index, path in enumerate(spec.faces):
            if index < path.first or (path.last is not None and index > path.last):
                continue
            progress = index / max(spec.frames - 1, 1)
            start, end = (path.start, path.end) if not scene else (path.end, path.start)
            centre = ((start[0] + (end[0] - start[0]) * progress) * spec.width,
                      (start[1] + (end[1] - start[1]) * progress + 0.15 * scene) * spec.height)
            landmarks[face_index] = paste_face(frame, path.width, centre)
        yield frame, landmarks


def write_video(path: str | Path, spec: VideoSpec) -> list[dict[int, np.ndarray]]:
    """Encode ``spec`` to ``path`` (H.264, AAC tone if ``audio_rate``); returns each frame's face landmarks in
    the upright (displayed) frame."""
    path = Path(path)
    pts = spec.pts or [round(index / (spec.fps * spec.time_base)) for index in range(spec.frames)]
    turns = (spec.rotation // 90) % 4
    all_landmarks = []
    with av.open(str(path), 'w') as container:
        stream = container.add_stream('libx264', rate=spec.fps)
        stream.width, stream.height = (spec.height, spec.width) if turns % 2 else (spec.width, spec.height)
        stream.pix_fmt = 'yuv420p' if spec.width % 2 == 0 and spec.height % 2 == 0 else 'yuv444p'
        stream.time_base = stream.codec_context.time_base = spec.time_base
        stream.options = {'crf': str(spec.crf), 'preset': 'veryfast'}
        if spec.rotation:
            stream.set_display_rotation(spec.rotation)
        audio = container.add_stream('aac', rate=spec.audio_rate, layout='mono') if spec.audio_rate else None
        frame_duration = round(1 / (spec.fps * spec.time_base))
        for index, (image, landmarks) in enumerate(render_frames(spec)):
            all_landmarks.append(landmarks)
            stored = np.ascontiguousarray(np.rot90(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), -turns))
            frame = av.VideoFrame.from_ndarray(stored, format='rgb24')
            frame.pts, frame.time_base = pts[index], spec.time_base
            frame.duration = pts[index + 1] - pts[index] if index + 1 < len(pts) else frame_duration
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        if audio is not None:
            duration = float((pts[-1] + frame_duration) * spec.time_base)
            times = np.arange(int(duration * spec.audio_rate)) / spec.audio_rate
            tone = (0.2 * np.sin(2 * np.pi * 440 * times) * (1 + 0.5 * np.sin(2 * np.pi * 2 * times)))
            tone = tone.astype(np.float32)[None]
            for offset in range(0, tone.shape[1], 1024):
                chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, offset:offset + 1024]),
                                                   format='fltp', layout='mono')
                chunk.sample_rate, chunk.pts = spec.audio_rate, offset
                container.mux(audio.encode(chunk))
            container.mux(audio.encode())
    return all_landmarks
