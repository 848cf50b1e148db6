"""Clips of frames on disk or in LMDB: listing them and reading frames with errors that name the clip and frame.

Layouts (``root`` is ``dataroot_gt`` / ``dataroot_lq`` of the options):

- disk: ``root/<clip>/<frame>.png`` (any image extension, frames in sorted name order); a flat folder of images
  (``root/<frame>.png``) is one clip named ``''``;
- lmdb: ``root`` is an LMDB folder written by ``datasets_prep/make_clip_lmdb.py`` (BasicSR's layout): keys
  ``<clip>/<frame stem>`` holding PNG bytes, listed in ``root/meta_info.txt`` as ``<key>.png (h,w,c) <level>``.

Frames are identified by their file stem (``00000000``), so landmark files and LMDB keys agree.
"""
import os
from pathlib import Path

import cv2
import numpy as np
import torch
from basicsr.utils import FileClient

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.webp', '.tif', '.tiff')


class BadClipError(ValueError):
    """A clip that cannot give a correct sample; the message names the clip (and frame)."""


class ClipFrames:
    """The clips under one root: ``clips`` maps clip name -> sorted frame stems; :meth:`read` decodes a frame."""

    def __init__(self, root: str | Path, io_backend: dict | None = None, meta_info_file: str | Path | None = None):
        self.root = Path(root)
        self.io_backend = dict(io_backend or {'type': 'disk'})
        self.backend = self.io_backend.pop('type')
        if self.backend == 'disk':
            self.clips, self._file_names = self._list_disk()
        elif self.backend == 'lmdb':
            self.clips, self._file_names = self._list_lmdb(), None
        else:
            raise ValueError(f'io_backend type {self.backend!r} is not supported; use disk or lmdb')
        if meta_info_file is not None:
            wanted = [line.split()[0] for line in Path(meta_info_file).read_text().splitlines() if line.strip()]
            missing = [clip for clip in wanted if clip not in self.clips]
            if missing:
                raise BadClipError(f'clips listed in {meta_info_file} are not in {self.root}: {missing[:5]}')
            self.clips = {clip: self.clips[clip] for clip in wanted}
        self._client, self._client_pid = None, None  # opened per process: LMDB handles must not cross a fork

    def _list_disk(self) -> tuple[dict[str, list[str]], dict[tuple[str, str], str]]:
        if not self.root.is_dir():
            raise FileNotFoundError(f'clip root {self.root} is not a folder')
        folders = sorted(path for path in self.root.iterdir() if path.is_dir() and not path.name.startswith('.'))
        clips, file_names = {}, {}
        for folder in folders or [self.root]:
            clip = '' if folder == self.root else folder.name
            images = sorted(path.name for path in folder.iterdir() if path.suffix.lower() in IMAGE_EXTENSIONS)
            stems = [Path(name).stem for name in images]
            if len(set(stems)) != len(stems):
                raise BadClipError(f'clip {clip!r} in {self.root} has two frames with the same name stem')
            clips[clip] = stems
            file_names.update({(clip, Path(name).stem): name for name in images})
        return clips, file_names

    def _list_lmdb(self) -> dict[str, list[str]]:
        meta_info = self.root / 'meta_info.txt'
        if not meta_info.is_file():
            raise FileNotFoundError(f'{meta_info} is missing: {self.root} is not an LMDB written by make_clip_lmdb')
        clips = {}
        for line in meta_info.read_text().splitlines():
            if line.strip():
                key = line.split()[0].removesuffix('.png')
                clip, _, stem = key.rpartition('/')
                clips.setdefault(clip, []).append(stem)
        return {clip: sorted(stems) for clip, stems in sorted(clips.items())}

    def describe(self, clip: str, stem: str) -> str:
        return f'frame {stem!r} of clip {clip!r} in {self.root}'

    def read(self, clip: str, stem: str) -> np.ndarray:
        """Decode one frame: (H, W, 3) BGR uint8. Missing or undecodable frames raise :class:`BadClipError`."""
        if self._client_pid != os.getpid():
            if self.backend == 'lmdb':
                if self._client is not None:  # inherited through fork: lmdb refuses a second open in one process
                    for environment in self._client.client._client.values():
                        environment.close()
                self._client = FileClient('lmdb', db_paths=[str(self.root)], client_keys=['frames'], **self.io_backend)
            else:
                self._client = FileClient('disk')
            self._client_pid = os.getpid()
        try:
            if self.backend == 'lmdb':
                data = self._client.get(f'{clip}/{stem}' if clip else stem, 'frames')
            else:
                data = self._client.get(str(self.root / clip / self._file_names[(clip, stem)]))
        except (OSError, KeyError) as error:
            raise BadClipError(f'cannot read {self.describe(clip, stem)}: {error}') from None
        if data is None:
            raise BadClipError(f'{self.describe(clip, stem)} is missing from the LMDB')
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise BadClipError(f'cannot decode {self.describe(clip, stem)}: the image data is corrupt')
        return image

    def read_clip(self, clip: str, stems: list[str]) -> np.ndarray:
        """Decode the frames ``stems`` of ``clip``: (T, H, W, 3) BGR uint8; frames of another size than the first
        raise :class:`BadClipError`."""
        images = []
        for stem in stems:
            image = self.read(clip, stem)
            if images and image.shape != images[0].shape:
                raise BadClipError(f'{self.describe(clip, stem)} is {image.shape[1]}x{image.shape[0]}, other frames '
                                   f'of the clip are {images[0].shape[1]}x{images[0].shape[0]}')
            images.append(image)
        return np.stack(images)


def frames_to_tensor(frames: np.ndarray, normalize: bool) -> torch.Tensor:
    """(T, H, W, 3) RGB float in [0, 1] -> (T, 3, H, W) float32, in [-1, 1] when ``normalize``."""
    tensor = torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2), dtype=np.float32))
    return tensor * 2 - 1 if normalize else tensor


def bgr_to_rgb_float(images: np.ndarray) -> np.ndarray:
    """BGR frames (..., 3), uint8 or float in [0, 1] -> RGB float32 in [0, 1]."""
    rgb = images[..., ::-1].astype(np.float32)
    return rgb / 255 if images.dtype == np.uint8 else rgb
