"""Whole pre-degraded clips for validation, testing and inference (e.g. VFHQ-Test ``BlindLR_128x128_easy_...`` LQ
clips against ``Interval1_512x512_LANCZOS4`` GT clips), in the shape BasicSR's video validation expects."""
import numpy as np
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from vfsr_data.clip_frames import BadClipError, ClipFrames, frames_to_tensor


@DATASET_REGISTRY.register()
class VideoClipTestDataset(data.Dataset):
    """One item per clip, all of its frames (any length), like BasicSR's ``VideoRecurrentTestDataset``.

    Options:
        dataroot_lq (str): LQ clip folders (or LMDB). dataroot_gt (str | None): GT clips; None for inference.
        io_backend (dict): ``{type: disk}`` or ``{type: lmdb}`` (both roots).
        meta_info_file (str | None): clip names to use. max_frames (int | None): keep the first frames only.
        scale (int | None): when given, GT frames must be exactly ``scale`` times the LQ size.
        normalize (bool): [-1, 1] tensors instead of [0, 1], default false.

    Returns ``{'lq': (T, 3, h, w), 'gt': (T, 3, H, W) when GT exists, 'folder': clip, 'key': clip}``; the attribute
    ``data_info`` has ``folder`` (one entry per frame), as BasicSR's validation loops count frames from it.
    GT clips must hold the same frame names as their LQ clips; any mismatch is an error naming the clip.
    """

    def __init__(self, opt: dict):
        self.opt = opt
        self.normalize = opt.get('normalize', False)
        self.max_frames = opt.get('max_frames')
        self.scale = opt.get('scale')
        self.lq = ClipFrames(opt['dataroot_lq'], opt.get('io_backend'), opt.get('meta_info_file'))
        self.gt = None
        if opt.get('dataroot_gt') is not None:
            self.gt = ClipFrames(opt['dataroot_gt'], opt.get('io_backend'), opt.get('meta_info_file'))
        self.folders = sorted(self.lq.clips)
        for folder in self.folders:
            if not self.lq.clips[folder]:
                raise BadClipError(f'clip {folder!r} in {self.lq.root} has no frames')
            if self.gt is not None and self.gt.clips.get(folder) != self.lq.clips[folder]:
                raise BadClipError(f'clip {folder!r}: GT frames in {self.gt.root} do not match the LQ frames in '
                                   f'{self.lq.root} ({len(self.gt.clips.get(folder, []))} vs '
                                   f'{len(self.lq.clips[folder])} frames)')
        self.data_info = {'folder': [folder for folder in self.folders for _ in self.frame_stems(folder)]}

    def frame_stems(self, folder: str) -> list[str]:
        return self.lq.clips[folder][:self.max_frames]

    def __len__(self) -> int:
        return len(self.folders)

    def read_clip(self, frames: ClipFrames, folder: str) -> np.ndarray:
        images = []
        for stem in self.frame_stems(folder):
            image = frames.read(folder, stem)
            if images and image.shape != images[0].shape:
                raise BadClipError(f'{frames.describe(folder, stem)} is {image.shape[1]}x{image.shape[0]}, other '
                                   f'frames of the clip are {images[0].shape[1]}x{images[0].shape[0]}')
            images.append(image[:, :, ::-1])  # BGR -> RGB
        return np.stack(images).astype(np.float32) / 255.0

    def __getitem__(self, index: int) -> dict:
        folder = self.folders[index]
        lq = self.read_clip(self.lq, folder)
        item = {'lq': frames_to_tensor(lq, self.normalize), 'folder': folder, 'key': folder}
        if self.gt is not None:
            gt = self.read_clip(self.gt, folder)
            if self.scale is not None and gt.shape[1:3] != (lq.shape[1] * self.scale, lq.shape[2] * self.scale):
                raise BadClipError(f'clip {folder!r}: GT frames are {gt.shape[2]}x{gt.shape[1]}, LQ frames '
                                   f'{lq.shape[2]}x{lq.shape[1]}; expected scale {self.scale}')
            item['gt'] = frames_to_tensor(gt, self.normalize)
        return item
