"""Whole pre-degraded clips for validation, testing and inference (e.g. VFHQ-Test ``BlindLR_128x128_easy_...`` LQ
clips against ``Interval1_512x512_LANCZOS4`` GT clips), in the shape BasicSR's video validation expects."""
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from vfsr_data.clip_frames import BadClipError, ClipFrames, bgr_to_rgb_float, frames_to_tensor
from vfsr_data.face_landmarks import align_clip, align_lq_clip
from vfsr_data.vfhq_dataset import AlignedFaceFrames


@DATASET_REGISTRY.register()
class VideoClipTestDataset(data.Dataset):
    """One item per clip, all of its frames (any length), like BasicSR's ``VideoRecurrentTestDataset``.

    Options:
        dataroot_lq (str): LQ clip folders (or LMDB). dataroot_gt (str | None): GT clips; None for inference.
        io_backend (dict): ``{type: disk}`` or ``{type: lmdb}`` (both roots).
        meta_info_file (str | None): clip names to use. max_frames (int | None): keep the first frames only.
        scale (int | None): when given, GT frames must be exactly ``scale`` times the LQ size.
        dataroot_landmarks (str | None): per-clip landmark files in GT pixels (the official test split's
            ``meta_info``): GT frames are then aligned to ``gt_size`` (default 512) and LQ frames, by the same
            landmarks moved into LQ pixels, to ``gt_size / scale`` (needs ``scale``). None: frames as stored.
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
        self.gt_size = opt.get('gt_size', 512)
        self.lq_faces = None
        if opt.get('dataroot_landmarks') is not None:
            if self.scale is None:
                raise ValueError('VideoClipTestDataset: aligning with dataroot_landmarks needs scale')
            self.lq_faces = AlignedFaceFrames(self.lq, opt['dataroot_landmarks'], self.gt_size)
        self.folders = sorted(self.lq.clips)
        for folder in self.folders:
            if not self.lq.clips[folder]:
                raise BadClipError(f'clip {folder!r} in {self.lq.root} has no frames')
            if self.lq_faces is not None:
                self.lq_faces.check_landmark_file(folder)
            if self.gt is not None and self.gt.clips.get(folder) != self.lq.clips[folder]:
                raise BadClipError(f'clip {folder!r}: GT frames in {self.gt.root} do not match the LQ frames in '
                                   f'{self.lq.root} ({len(self.gt.clips.get(folder, []))} vs '
                                   f'{len(self.lq.clips[folder])} frames)')
        self.data_info = {'folder': [folder for folder in self.folders for _ in self.frame_stems(folder)]}

    def frame_stems(self, folder: str) -> list[str]:
        return self.lq.clips[folder][:self.max_frames]

    def __len__(self) -> int:
        return len(self.folders)

    def __getitem__(self, index: int) -> dict:
        folder = self.folders[index]
        stems = self.frame_stems(folder)
        lq_frames, landmarks = (self.lq_faces.read_raw(folder, stems) if self.lq_faces
                                else (self.lq.read_clip(folder, stems), None))
        gt_frames = None if self.gt is None else self.gt.read_clip(folder, stems)
        if gt_frames is not None and self.scale is not None and \
                gt_frames.shape[1:3] != (lq_frames.shape[1] * self.scale, lq_frames.shape[2] * self.scale):
            raise BadClipError(f'clip {folder!r}: GT frames are {gt_frames.shape[2]}x{gt_frames.shape[1]}, LQ '
                               f'frames {lq_frames.shape[2]}x{lq_frames.shape[1]}; expected scale {self.scale}')
        if landmarks is None:
            lq = bgr_to_rgb_float(lq_frames)
        else:
            lq = align_lq_clip(lq_frames, landmarks, (1 / self.scale, 1 / self.scale), self.gt_size, self.scale)
        item = {'lq': frames_to_tensor(lq, self.normalize), 'folder': folder, 'key': folder}
        if gt_frames is not None:
            item['gt'] = frames_to_tensor(align_clip(gt_frames, landmarks, self.gt_size), self.normalize)
        return item
