"""TUFs-145K: clips of tiny, unaligned face snapshots for VidFace (8x: LR 16x12 -> GT 128x96).

Layout (the official TUFs-145K layout, also used for the IJB-C test set and the demo)::

    <dataroot_gt>/<clip>/<seq>/im1.png ... im7.png      GT, 128x96 (HxW), RGB PNG
    <dataroot_lq>/<clip>/<seq>/im1.png ... im7.png      LR, 16x12, optional: without it LR is made online
    meta_info_file: one clip a line, ``<clip>/<seq> [frame_count] [(h,w,c)]``; only the first token is needed

LMDB (``io_backend: {type: lmdb}``, roots ending in ``.lmdb``, built by ``datasets_prep/make_tufs_lmdb.py``) stores
frame ``<clip>/<seq>/imN.png`` under the key ``<clip>/<seq>/imN``; without a meta_info_file the clips are read from
the LMDB's own ``meta_info.txt`` (disk: from the folder tree).

LR made online: MATLAB bicubic x1/8 with anti-aliasing (BasicSR's ``imresize``, applied as matrices by
:mod:`vfsr_data.matlab_resize`), rounded to 8 bits as if it had been saved as PNG, so online LR equals LR prepared on
disk with the same resize.

Landmarks (optional, ``landmark_file``): five points per frame, left eye, right eye, nose, left mouth corner, right
mouth corner ("left" = the image's left), as 10 numbers ``x1, y1, ..., x5, y5`` normalised to [0, 1] by the image
width and height (continuous coordinates: the left border is x = 0, the right border x = 1), keyed by
``'<clip>/<seq>/imN.png'``. Two safe formats:

* ``.json``: ``{"<clip>/<seq>/imN.png": [10 numbers], ...}``;
* ``.npz``: arrays ``keys`` (N,) str and ``landmarks`` (N, 10) float, read with ``allow_pickle=False``.

The official release ships a pickle (``tufs145k_lmk_norm.pickle``); unpickling runs arbitrary code, so the dataset
never opens pickles: ``datasets_prep/convert_tufs_landmarks.py`` converts a pickle *that you trust* to npz once.
Frames without landmarks get zeros and flag 0 (the landmark loss skips them).

Samples (``__getitem__``)::

    lq              (7, 3, 16, 12)  RGB in [-1, 1]
    gt              (7, 3, 128, 96) RGB in [-1, 1]
    landmarks       (7, 10)         in [-0.5, 0.5] (normalised coordinates - 0.5), zeros where missing
    landmark_flags  (7,)            1.0 where the frame has landmarks, else 0.0
    key             '<clip>/<seq>'

Training (:class:`TUFS145KDataset`) shuffles the snapshot order of every sample (VidFace treats the snapshots as an
unordered set) and flips horizontally with ``use_flip``. The flip mirrors the landmarks too (x -> -x in centred
coordinates, and the left/right eyes and mouth corners swap names); the official dataset flips the images only,
which teaches the landmark head wrong targets on half of the samples. Test (:class:`TUFS145KTestDataset`) keeps the
frames in order; the model scores the reference snapshot, index 3 (``im4``).
"""
import json
import random
from pathlib import Path

import numpy as np
import torch
from basicsr.utils import FileClient, imfrombytes, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from vfsr_data.matlab_resize import matlab_resize

NUM_LANDMARKS = 5
# Index pairs of the points that trade names under a horizontal flip: (left eye, right eye), (mouth left, right).
MIRRORED_LANDMARK_PAIRS = ((0, 1), (3, 4))


def load_landmark_file(path: str | Path) -> dict[str, np.ndarray]:
    """Read a JSON or npz landmark file into ``{'<clip>/<seq>/imN.png': (10,) float32 in [0, 1]}``."""
    path = Path(path)
    if path.suffix == '.json':
        entries = json.loads(path.read_text())
        if not isinstance(entries, dict):
            raise ValueError(f'landmark file {path}: expected a JSON object keyed by frame, '
                             f'got {type(entries).__name__}')
        items = entries.items()
    elif path.suffix == '.npz':
        with np.load(path, allow_pickle=False) as arrays:
            keys, values = arrays['keys'], arrays['landmarks']
        if values.ndim != 2 or len(keys) != len(values):
            raise ValueError(f'landmark file {path}: expected keys (N,) and landmarks (N, {2 * NUM_LANDMARKS}), '
                             f'got {keys.shape} and {values.shape}')
        items = zip(keys.tolist(), values)
    else:
        raise ValueError(f'landmark file {path}: unsupported format {path.suffix!r} (use .json or .npz; convert '
                         'official pickles with datasets_prep/convert_tufs_landmarks.py)')
    landmarks = {}
    for key, value in items:
        value = np.asarray(value, dtype=np.float32)
        if value.shape != (2 * NUM_LANDMARKS, ):
            raise ValueError(f'landmark file {path}: entry {key!r} has shape {value.shape}, '
                             f'expected ({2 * NUM_LANDMARKS},) = {NUM_LANDMARKS} interleaved (x, y) points')
        if not np.isfinite(value).all():
            raise ValueError(f'landmark file {path}: entry {key!r} is not finite: {value.tolist()}')
        landmarks[key] = value
    return landmarks


def flip_landmarks(landmarks: torch.Tensor) -> torch.Tensor:
    """Mirror centred landmarks (..., 10) in [-0.5, 0.5] horizontally: negate x and swap the left/right points."""
    points = landmarks.reshape(*landmarks.shape[:-1], NUM_LANDMARKS, 2).clone()
    points[..., 0] = -points[..., 0]
    for left, right in MIRRORED_LANDMARK_PAIRS:
        points[..., [left, right], :] = points[..., [right, left], :]
    return points.reshape(landmarks.shape)


def read_clip_list(meta_info_file: str | None, gt_root: Path, is_lmdb: bool) -> dict[str, int | None]:
    """``{clip: frame count or None}`` from the meta_info file, else from the LMDB's meta_info.txt or the folders."""
    clips = {}
    if meta_info_file is not None:
        for line in Path(meta_info_file).read_text().splitlines():
            fields = line.split()
            if fields:
                clips[fields[0]] = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None
    elif is_lmdb:
        # basicsr's LMDB meta_info.txt: one frame a line, '<clip>/<seq>/imN.png (h,w,c) compression'
        for line in (gt_root / 'meta_info.txt').read_text().splitlines():
            if line.strip():
                clip = line.split()[0].rsplit('/', 1)[0]
                clips[clip] = clips.get(clip, 0) + 1
    else:
        for frame in sorted(gt_root.glob('*/*/im1.png')):
            clip_dir = frame.parent
            clips[clip_dir.relative_to(gt_root).as_posix()] = len(list(clip_dir.glob('im*.png')))
    if not clips:
        raise ValueError(f'no clips found (meta_info_file={meta_info_file}, dataroot_gt={gt_root})')
    return clips


class TUFSClips(data.Dataset):
    """Reads whole TUFs clips (all snapshots in order); the registered train/test datasets add their sampling.

    Options: ``dataroot_gt``, optional ``dataroot_lq``, optional ``meta_info_file``, optional ``landmark_file``,
    ``io_backend`` (``disk`` or ``lmdb``), ``num_frame`` (7), ``gt_size`` ([128, 96]), ``scale`` (8).
    """

    def __init__(self, opt: dict):
        super().__init__()
        self.opt = opt
        self.num_frame = opt.get('num_frame', 7)
        self.scale = opt.get('scale', 8)
        self.gt_size = tuple(opt.get('gt_size', (128, 96)))
        if self.gt_size[0] % self.scale or self.gt_size[1] % self.scale:
            raise ValueError(f'gt_size {self.gt_size} is not divisible by scale {self.scale}')
        self.lq_size = (self.gt_size[0] // self.scale, self.gt_size[1] // self.scale)
        self.gt_root = Path(opt['dataroot_gt'])
        self.lq_root = Path(opt['dataroot_lq']) if opt.get('dataroot_lq') else None

        self.io_backend_opt = dict(opt['io_backend'])
        self.is_lmdb = self.io_backend_opt['type'] == 'lmdb'
        if self.is_lmdb:
            roots = [self.gt_root] + ([self.lq_root] if self.lq_root else [])
            self.io_backend_opt['db_paths'] = [str(root) for root in roots]
            self.io_backend_opt['client_keys'] = ['gt', 'lq'][:len(roots)]
        self.file_client = None  # opened lazily: LMDB handles must not cross DataLoader worker forks

        clips = read_clip_list(opt.get('meta_info_file'), self.gt_root, self.is_lmdb)
        wrong = {clip: count for clip, count in clips.items() if count is not None and count != self.num_frame}
        if wrong:
            clip, count = next(iter(wrong.items()))
            raise ValueError(f'clip {clip!r} has {count} snapshots, expected num_frame={self.num_frame} '
                             f'({len(wrong)} clip(s) affected)')
        self.keys = list(clips)
        self.landmarks = load_landmark_file(opt['landmark_file']) if opt.get('landmark_file') else {}

    def __len__(self) -> int:
        return len(self.keys)

    def _read_frame(self, root: Path, client_key: str, clip: str, index: int, size: tuple[int, int]) -> np.ndarray:
        """Frame ``im<index+1>`` of ``clip`` as BGR float32 (h, w, 3) in [0, 1]; errors name the clip and frame."""
        frame = f'{clip}/im{index + 1}'
        location = frame if self.is_lmdb else root / f'{frame}.png'
        try:
            content = self.file_client.get(location, client_key)
        except FileNotFoundError:
            content = None
        if content is None:
            raise FileNotFoundError(f'clip {clip!r}: frame im{index + 1}.png is missing from {root}')
        image = imfrombytes(content, float32=True)
        if image is None or image.shape != (*size, 3):
            shape = None if image is None else image.shape
            raise ValueError(f'clip {clip!r}: frame im{index + 1}.png in {root} has shape {shape}, '
                             f'expected {(*size, 3)}')
        return image

    def read_clip(self, index: int) -> dict:
        """All snapshots of clip ``index`` in order (see the module docstring for the returned tensors)."""
        if self.file_client is None:
            backend = dict(self.io_backend_opt)
            self.file_client = FileClient(backend.pop('type'), **backend)
        clip = self.keys[index]
        gt_frames = [self._read_frame(self.gt_root, 'gt', clip, i, self.gt_size) for i in range(self.num_frame)]
        gt = torch.stack(img2tensor(gt_frames, bgr2rgb=True, float32=True))  # (t, 3, H, W) RGB in [0, 1]
        if self.lq_root is not None:
            lq_frames = [self._read_frame(self.lq_root, 'lq', clip, i, self.lq_size) for i in range(self.num_frame)]
            lq = torch.stack(img2tensor(lq_frames, bgr2rgb=True, float32=True))
        else:  # MATLAB bicubic, rounded to 8 bits like an LR frame saved as PNG
            lq = torch.round(matlab_resize(gt, 1 / self.scale).clamp(0, 1) * 255) / 255

        landmarks = torch.zeros(self.num_frame, 2 * NUM_LANDMARKS)
        flags = torch.zeros(self.num_frame)
        for i in range(self.num_frame):
            value = self.landmarks.get(f'{clip}/im{i + 1}.png')
            if value is not None:
                landmarks[i] = torch.from_numpy(value) - 0.5
                flags[i] = 1
        # [-1, 1], as the official data pipeline
        return {'lq': lq * 2 - 1, 'gt': gt * 2 - 1, 'landmarks': landmarks, 'landmark_flags': flags, 'key': clip}


@DATASET_REGISTRY.register()
class TUFS145KDataset(TUFSClips):
    """TUFs-145K training clips: snapshot order shuffled per sample (``shuffle_snapshots``, default True) and
    horizontal flip with mirrored landmarks (``use_flip``)."""

    def __getitem__(self, index: int) -> dict:
        sample = self.read_clip(index)
        if self.opt.get('shuffle_snapshots', True):
            order = torch.from_numpy(np.random.permutation(self.num_frame))
            for name in ('lq', 'gt', 'landmarks', 'landmark_flags'):
                sample[name] = sample[name][order]
        if self.opt.get('use_flip', False) and random.random() < 0.5:
            sample['lq'] = sample['lq'].flip(-1)
            sample['gt'] = sample['gt'].flip(-1)
            sample['landmarks'] = flip_landmarks(sample['landmarks'])
        return sample


@DATASET_REGISTRY.register()
class TUFS145KTestDataset(TUFSClips):
    """TUFs-145K (or IJB-C in the same layout) test/validation clips: snapshots in order, no augmentation."""

    def __getitem__(self, index: int) -> dict:
        return self.read_clip(index)
