"""VFHQ training data for KEEP: degraded clips (stages 2 and 3) and single aligned frames (stage 1 VQGAN).

Data layout and landmark files: see ``clip_frames.py`` and ``face_landmarks.py``; ``datasets_prep/`` writes both.
Tensors are RGB float32 in [0, 1] (BasicSR's habit; the model maps them to the networks' [-1, 1]); the option
``normalize: true`` returns [-1, 1] instead, like the official KEEP datasets.

Randomness: every random choice of a sample (interval, window, reversal, flip, degradation) comes from one
``numpy.random.Generator`` per sample. With ``seed: <int>`` it is seeded by (seed, index), so a given index always
gives the same sample (tests, fixed validation); without it, the seed is drawn from torch's generator, which
BasicSR's ``manual_seed`` and the DataLoader's per-worker seeding make reproducible and different per worker.
"""
import bisect
from pathlib import Path

import numpy as np
import torch
from basicsr.utils import get_root_logger
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from vfsr_data.clip_frames import BadClipError, ClipFrames, bgr_to_rgb_float, frames_to_tensor
from vfsr_data.face_landmarks import align_clip, align_lq_clip, read_landmark_file
from vfsr_data.video_degradation import VideoDegradation

MAX_SKIPS = 100  # consecutive bad clips tolerated with skip_bad_clips before giving up


def sample_generator(seed: int | None, index: int) -> np.random.Generator:
    if seed is None:
        return np.random.default_rng(int(torch.randint(2**62, ()).item()))
    return np.random.default_rng((seed, index))


class AlignedFaceFrames:
    """Reads frames of a clip as aligned ``gt_size`` faces: warped onto the FFHQ template by the clip's landmark
    file when ``landmark_root`` is given, otherwise frames must already be ``gt_size`` x ``gt_size``."""

    def __init__(self, frames: ClipFrames, landmark_root: str | None, gt_size: int):
        self.frames = frames
        self.landmark_root = None if landmark_root is None else Path(landmark_root)
        self.gt_size = gt_size

    def landmark_path(self, clip: str) -> Path:
        # A flat folder of images is one clip named '': its landmark file is named after the folder.
        return self.landmark_root / f'{clip or Path(self.frames.root).name}.txt'

    def check_landmark_file(self, clip: str) -> None:
        if self.landmark_root is not None and not self.landmark_path(clip).is_file():
            raise BadClipError(f'clip {clip!r}: landmark file {self.landmark_path(clip)} is missing')

    def read_raw(self, clip: str, stems: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """The frames as stored, (T, H, W, 3) BGR uint8, and their landmarks (T, 5, 2) (None without a landmark
        root, in which case the frames must already be aligned ``gt_size`` faces)."""
        landmarks = None
        if self.landmark_root is not None:
            self.check_landmark_file(clip)
            try:
                by_stem = {Path(name).stem: points
                           for name, points in read_landmark_file(self.landmark_path(clip)).items()}
            except ValueError as error:
                raise BadClipError(f'clip {clip!r}: {error}') from None
            for stem in stems:
                if stem not in by_stem:
                    raise BadClipError(f'{self.frames.describe(clip, stem)} has no landmarks in '
                                       f'{self.landmark_path(clip)}')
            landmarks = np.stack([by_stem[stem] for stem in stems])
        images = self.frames.read_clip(clip, stems)
        if landmarks is None and images.shape[1:3] != (self.gt_size, self.gt_size):
            raise BadClipError(f'{self.frames.describe(clip, stems[0])} is {images.shape[2]}x{images.shape[1]}, '
                               f'expected aligned {self.gt_size}x{self.gt_size} faces (or give '
                               f'dataroot_landmarks to align)')
        return images, landmarks

    def read(self, clip: str, stems: list[str]) -> np.ndarray:
        """(T, gt_size, gt_size, 3) RGB float32 in [0, 1]: the frames ``stems`` of ``clip``, aligned."""
        images, landmarks = self.read_raw(clip, stems)
        return align_clip(images, landmarks, self.gt_size)


class ClipFramesDataset(data.Dataset):
    """Shared by the training datasets: one item per frame of every usable clip (from ``dataroot_gt``,
    ``io_backend``, ``meta_info_file``, ``dataroot_landmarks``, ``gt_size``). A bad clip raises an error naming it,
    or with ``skip_bad_clips`` is logged once and replaced by a random other one."""

    def __init__(self, opt: dict, min_frames: int = 1):
        self.opt = opt
        self.skip_bad_clips = opt.get('skip_bad_clips', False)
        self.seed = opt.get('seed')
        self.normalize = opt.get('normalize', False)
        self.bad_clips = set()
        self.gt_size = opt.get('gt_size', 512)
        frames = ClipFrames(opt['dataroot_gt'], opt.get('io_backend'), opt.get('meta_info_file'))
        self.faces = AlignedFaceFrames(frames, opt.get('dataroot_landmarks'), self.gt_size)
        self.clips = []
        for clip, stems in frames.clips.items():
            try:
                if len(stems) < min_frames:
                    raise BadClipError(f'clip {clip!r} in {frames.root} has {len(stems)} frames, fewer than '
                                       f'num_frame {min_frames}')
                self.faces.check_landmark_file(clip)
                self.clips.append(clip)
            except BadClipError as error:
                self.report_bad_clip(clip, error)
        # Item i is frame i - frame_offsets[k] of clip k: no per-frame list (VFHQ has millions of frames).
        self.frame_offsets = np.cumsum([0] + [len(frames.clips[clip]) for clip in self.clips]).tolist()
        if len(self) == 0:
            raise BadClipError(f'no usable clips in {frames.root}')

    def __len__(self) -> int:
        return self.frame_offsets[-1]

    def locate(self, index: int) -> tuple[str, int]:
        """(clip, frame position in the clip) of item ``index``."""
        clip_index = bisect.bisect_right(self.frame_offsets, index) - 1
        return self.clips[clip_index], index - self.frame_offsets[clip_index]

    def report_bad_clip(self, clip: str, error: BadClipError) -> None:
        if not self.skip_bad_clips:
            raise error
        if clip not in self.bad_clips:
            get_root_logger().warning(f'{type(self).__name__}: skipping bad clip: {error}')
        self.bad_clips.add(clip)

    def __getitem__(self, index: int) -> dict:
        rng = sample_generator(self.seed, index)
        for _ in range(MAX_SKIPS):
            clip, position = self.locate(index)
            if clip not in self.bad_clips:
                try:
                    return self.load(clip, position, rng)
                except BadClipError as error:
                    self.report_bad_clip(clip, error)
            index = int(rng.integers(len(self)))
        raise BadClipError(f'{type(self).__name__}: {MAX_SKIPS} bad clips in a row, last {clip!r}')

    def load(self, clip: str, position: int, rng: np.random.Generator) -> dict:
        raise NotImplementedError


@DATASET_REGISTRY.register()
class VFHQClipDataset(ClipFramesDataset):
    """Training clips for KEEP: ``num_frame`` aligned GT frames and their online-degraded LQ frames.

    One sample per frame of every clip (like the official data): sample ``index`` centres a window of
    ``num_frame`` frames, ``interval`` apart (drawn from ``interval_list`` among those that fit the clip), on that
    frame; a window that would leave the clip is placed at random inside it.

    Options (YAML ``datasets.train``; defaults are the official KEEP settings):
        dataroot_gt (str): clip frames, disk or LMDB (see ``clip_frames.py``).
        io_backend (dict): ``{type: disk}`` or ``{type: lmdb}``.
        dataroot_landmarks (str | None): folder of per-clip landmark files; None when frames are already aligned.
        meta_info_file (str | None): text file of clip names to use (first field of each line); default all.
        gt_size (int): aligned face size, 512. scale (int): LQ downscale, 4 (BasicSR copies the top-level scale).
        num_frame (int): 8. interval_list (list[int]): [1, 2, 3, 4, 5, 6]. random_reverse (bool): true.
        use_flip (bool): horizontal flip of the whole clip with p 0.5, default false (official).
        degrade_before_align (bool): default false: align the GT, then degrade it (LQ is exactly the degraded GT
            face). True: the official order, degrade the frames as stored, then align GT and LQ by the landmarks
            (the codec's blocks and the blur follow the video frame, not the face). Needs dataroot_landmarks.
        degradation (dict): overrides of :class:`VideoDegradationOptions` (blur, noise, resize, CRF ranges).
        normalize (bool): [-1, 1] tensors instead of [0, 1], default false.
        seed (int | None): fixed per-index sampling (see module doc). skip_bad_clips (bool): default false.

    Returns ``{'lq': (T, 3, gt_size/scale, gt_size/scale), 'gt': (T, 3, gt_size, gt_size), 'key': '<clip>/<first
    frame>'}``.
    """

    def __init__(self, opt: dict):
        self.num_frame = opt.get('num_frame', 8)
        super().__init__(opt, min_frames=self.num_frame)
        self.interval_list = list(opt.get('interval_list', [1, 2, 3, 4, 5, 6]))
        self.random_reverse = opt.get('random_reverse', True)
        self.use_flip = opt.get('use_flip', False)
        self.scale = opt.get('scale', 4)
        if self.gt_size % self.scale:
            raise ValueError(f'gt_size {self.gt_size} is not a multiple of scale {self.scale}')
        degradation = dict(opt.get('degradation') or {})
        if degradation.setdefault('scale', self.scale) != self.scale:
            raise ValueError(f'degradation scale {degradation["scale"]} differs from the dataset scale {self.scale}')
        self.degradation = VideoDegradation(degradation)
        self.degrade_before_align = opt.get('degrade_before_align', False)
        if self.degrade_before_align and opt.get('dataroot_landmarks') is None:
            raise ValueError('degrade_before_align needs dataroot_landmarks (raw frames and their landmarks)')
        get_root_logger().info(f'VFHQClipDataset: {len(self.clips)} clips, {len(self)} windows, interval list '
                               f'{self.interval_list}, random reverse {self.random_reverse}')

    def load(self, clip: str, centre: int, rng: np.random.Generator) -> dict:
        stems = self.faces.frames.clips[clip]
        window = self.window(clip, len(stems), centre, rng)
        images, landmarks = self.faces.read_raw(clip, [stems[i] for i in window])
        gt = align_clip(images, landmarks, self.gt_size)
        lq = self.degrade_then_align(images, landmarks, rng) if self.degrade_before_align else None
        if self.use_flip and rng.random() < 0.5:
            gt = np.ascontiguousarray(gt[:, :, ::-1])
            lq = None if lq is None else np.ascontiguousarray(lq[:, :, ::-1])
        if lq is None:
            lq = self.degradation(gt, rng)
        return {'lq': frames_to_tensor(lq, self.normalize), 'gt': frames_to_tensor(gt, self.normalize),
                'key': f'{clip}/{stems[window[0]]}'}

    def degrade_then_align(self, images: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The official order: degrade the frames as stored, then align the LQ frames by the same landmarks."""
        lq = self.degradation(bgr_to_rgb_float(images), rng)
        ratio = (lq.shape[2] / images.shape[2], lq.shape[1] / images.shape[1])
        return align_lq_clip(lq[..., ::-1], landmarks, ratio, self.gt_size, self.scale)

    def window(self, clip: str, length: int, centre: int, rng: np.random.Generator) -> list[int]:
        """Frame indices of one training window of ``clip`` (``length`` frames) around ``centre``."""
        fitting = [interval for interval in self.interval_list if (self.num_frame - 1) * interval < length]
        if not fitting:
            raise BadClipError(f'clip {clip!r} has {length} frames: too short for num_frame {self.num_frame} at '
                               f'any interval of {self.interval_list}')
        interval = int(rng.choice(fitting))
        last_start = length - ((self.num_frame - 1) * interval + 1)
        start = centre - self.num_frame // 2 * interval
        if not 0 <= start <= last_start:
            start = int(rng.integers(0, last_start + 1))
        window = list(range(start, start + self.num_frame * interval, interval))
        if self.random_reverse and rng.random() < 0.5:
            window.reverse()
        return window


@DATASET_REGISTRY.register()
class VFHQImageDataset(ClipFramesDataset):
    """Single aligned HQ faces for stage 1 (the VQGAN autoencoder), from clip folders or a flat image folder.

    Options: dataroot_gt, io_backend, dataroot_landmarks, meta_info_file, gt_size, normalize, seed,
    skip_bad_clips (as :class:`VFHQClipDataset`); use_flip (bool): random horizontal flip, default true.

    Returns ``{'gt': (3, gt_size, gt_size), 'lq': the same tensor (an autoencoder reconstructs its input), 'key'}``.
    """

    def __init__(self, opt: dict):
        super().__init__(opt)
        self.use_flip = opt.get('use_flip', True)

    def load(self, clip: str, position: int, rng: np.random.Generator) -> dict:
        stem = self.faces.frames.clips[clip][position]
        face = self.faces.read(clip, [stem])
        if self.use_flip and rng.random() < 0.5:
            face = np.ascontiguousarray(face[:, :, ::-1])
        gt = frames_to_tensor(face, self.normalize)[0]
        return {'gt': gt, 'lq': gt, 'key': f'{clip}/{stem}' if clip else stem}
