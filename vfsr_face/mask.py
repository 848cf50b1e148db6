"""Paste-back masks: where, in a restored face crop, the restored pixels replace the frame's (1) or keep it (0).

- ``template`` (:class:`TemplateMask`, the default): a square inset from the crop's border and feathered with a
  Gaussian. It needs no weights and follows the smoothed landmarks, so its boundary moves as smoothly as they do.
- ``parsing`` (:class:`ParsingMask`): facexlib's ParseNet (``parsing_parsenet.pth``, 19 face-parsing classes) labels
  the restored face; the face classes facexlib's paste-back keeps (all but background, neck, cloth, hair and hat)
  make the mask, blurred as facexlib does (twice a Gaussian of 11 px at 512 px, borders cleared) and multiplied by
  the template mask so that the crop's edge never shows. Per track, the mask is an exponential moving average over
  the track's frames (weight ``ema`` on the new frame): labels that flip from one frame to the next would make the
  boundary flicker. The average lives in the aligned crop, which follows the smoothed landmarks.

Masks are computed in frame order per track; :meth:`TemplateMask.keep_tracks` forgets ended tracks, and
:meth:`state_dict`/:meth:`load_state_dict` carry the averages over a resume.
"""
import functools
from pathlib import Path

import vfsr_compat  # noqa: F401  (before facexlib)

import cv2
import numpy as np
import torch

from vfsr_io.checkpoint import load_network_weights

PARSING_WEIGHTS = 'parsing_parsenet.pth'
PARSING_RELEASE = 'https://github.com/xinntao/facexlib/releases/download/v0.2.2/parsing_parsenet.pth'
PARSING_SIZE = 512
NOT_FACE_CLASSES = (0, 14, 16, 17, 18)  # background, neck, cloth, hair, hat (facexlib's paste-back colour map)


@functools.lru_cache(maxsize=8)
def soft_mask(width: int, height: int, inset: float = 0.04, feather: float = 0.04) -> np.ndarray:
    """A (height, width) float32 mask: 1 inside a square inset by ``inset`` of the size, 0 at the border, edges
    feathered by a Gaussian of ``feather`` of the size."""
    mask = np.zeros((height, width), np.float32)
    margin_x, margin_y = max(1, round(inset * width)), max(1, round(inset * height))
    mask[margin_y:height - margin_y, margin_x:width - margin_x] = 1
    sigma = max(feather * min(width, height), 0.5)
    return cv2.GaussianBlur(mask, (0, 0), sigma)


class TemplateMask:
    """The feathered square of :func:`soft_mask`; no state."""

    def __call__(self, track_id: int, restored: np.ndarray) -> np.ndarray:
        """The mask (h, w) float32 in [0, 1] of ``restored`` (h, w, 3) RGB uint8, a face of track ``track_id``."""
        return soft_mask(restored.shape[1], restored.shape[0])

    def keep_tracks(self, track_ids) -> None:
        """Forget every track but ``track_ids`` (those of the frame just composited)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict`."""


class ParsingMask(TemplateMask):
    """facexlib's ParseNet face mask, averaged over each track's frames (see the module docstring)."""

    def __init__(self, weights: str | Path, device='cpu', ema: float = 0.5):
        from facexlib.parsing.parsenet import ParseNet

        if not 0 < ema <= 1:
            raise ValueError(f'--mask-ema must be in (0, 1], got {ema}')
        net = ParseNet(in_size=PARSING_SIZE, out_size=PARSING_SIZE, parsing_ch=19)
        load_network_weights(net, weights, published_at=f'{PARSING_RELEASE} (put it in --weights-dir/facexlib/)',
                             what='face-parsing weights')
        self.device = torch.device(device)
        self.net, self.ema = net.eval().to(self.device), ema
        self.average: dict[int, np.ndarray] = {}  # track -> mask (PARSING_SIZE, PARSING_SIZE) float32

    @torch.no_grad()
    def __call__(self, track_id, restored):
        height, width = restored.shape[:2]
        face = cv2.resize(restored, (PARSING_SIZE, PARSING_SIZE), interpolation=cv2.INTER_LINEAR)
        face = torch.from_numpy(face).to(self.device).permute(2, 0, 1)[None].float().div(127.5).sub(1)
        labels = self.net(face)[0].argmax(dim=1)[0].cpu().numpy()
        mask = (~np.isin(labels, NOT_FACE_CLASSES)).astype(np.float32)
        for _ in range(2):
            mask = cv2.GaussianBlur(mask, (101, 101), 11)
        border = PARSING_SIZE // 50
        mask[:border], mask[-border:], mask[:, :border], mask[:, -border:] = 0, 0, 0, 0
        previous = self.average.get(track_id)
        if previous is not None:
            mask = self.ema * mask + (1 - self.ema) * previous
        self.average[track_id] = mask
        return cv2.resize(mask, (width, height), interpolation=cv2.INTER_LINEAR) * soft_mask(width, height)

    def keep_tracks(self, track_ids):
        self.average = {track: mask for track, mask in self.average.items() if track in track_ids}

    def state_dict(self):
        return {'average': {track: torch.from_numpy(mask) for track, mask in self.average.items()}}

    def load_state_dict(self, state):
        self.average = {track: mask.numpy() for track, mask in state['average'].items()}


def build_face_mask(kind: str = 'template', weights: str | Path | None = None, weights_dir: str | Path = 'weights',
                    device='cpu', ema: float = 0.5) -> TemplateMask:
    """The mask for ``--mask`` ``kind``; ``parsing`` reads ``weights`` (default ``parsing_parsenet.pth`` in
    ``weights_dir``/facexlib or ``weights_dir``)."""
    if kind == 'template':
        return TemplateMask()
    if kind != 'parsing':
        raise ValueError(f'--mask {kind!r}: choose template or parsing')
    return ParsingMask(mask_weights(kind, weights, weights_dir), device, ema)


def mask_weights(kind: str, weights: str | Path | None = None, weights_dir: str | Path = 'weights') -> Path | None:
    """The weights file mask ``kind`` reads: ``weights``, else ``parsing_parsenet.pth`` in ``weights_dir``/facexlib
    (or ``weights_dir``); None for the template."""
    if kind != 'parsing':
        return None
    if weights is not None:
        return Path(weights)
    folder = Path(weights_dir)
    nested = folder / 'facexlib' / PARSING_WEIGHTS
    return nested if nested.is_file() or not (folder / PARSING_WEIGHTS).is_file() else folder / PARSING_WEIGHTS
