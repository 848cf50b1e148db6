"""Scores of whole clips: frame metrics averaged over a clip's frames, clip metrics computed on the clip at once.

This is the one place where training validation, ``test.py`` and ``vfsr-evaluate`` turn restored frames into
figures, so that a clip counts once whatever its length (the papers average per video, then over videos).

BasicSR's metric functions score one image pair, ``calculate_metric({'img': output, 'img2': gt}, opt)``, both
(H, W, 3) BGR uint8 as ``tensor2img`` gives them. A *clip metric* (``sigma_IDS``, ``sigma_AKD``, warping error,
landmark jitter) is registered in ``METRIC_REGISTRY`` the same way and marked with :func:`clip_metric`: it receives
``img`` and ``img2`` as lists of frames. A metric marked :func:`reference_free` needs no ground truth (its ``img2``
is None), so it also scores real videos.
"""
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from basicsr.metrics import calculate_metric
from basicsr.utils.registry import METRIC_REGISTRY


class FrameError(ValueError):
    """A frame cannot be scored (no face found, ...). Metrics raise it with a short reason; :func:`score_clip` adds
    the clip, the frame and the metric."""

    def __init__(self, reason: str, frame_index: int | None = None):
        super().__init__(reason if frame_index is None else f'frame {frame_index}: {reason}')
        self.reason = reason
        self.frame_index = frame_index


class ClipInputError(ValueError):
    """Frames that cannot be scored, in one line naming the clip, the frame and the problem."""


def clip_metric(function):
    """Mark a registered metric as taking whole clips: ``img`` / ``img2`` are lists of (H, W, 3) BGR uint8 frames."""
    function.per_clip = True
    return function


def reference_free(function):
    """Mark a registered metric as needing no ground truth (it is called with ``img2=None``)."""
    function.needs_reference = False
    return function


def is_clip_metric(metric_opt: dict) -> bool:
    return getattr(METRIC_REGISTRY.get(metric_opt['type']), 'per_clip', False)


def needs_reference(metric_opt: dict) -> bool:
    return getattr(METRIC_REGISTRY.get(metric_opt['type']), 'needs_reference', True)


def require_clip(frames, metric: str, min_frames: int = 1) -> None:
    """Clip metrics refuse a single image (BasicSR's own video validation calls metrics frame by frame)."""
    if isinstance(frames, np.ndarray) and frames.ndim == 3:
        raise ClipInputError(f'{metric} scores whole clips; it was given one image (use a vfsr model, test.py with a '
                             'vfsr model, or vfsr-evaluate)')
    if len(frames) < min_frames:
        raise ClipInputError(f'{metric} needs at least {min_frames} frames, the clip has {len(frames)}')


@dataclass
class ClipScores:
    """A clip's value of each metric, for frame metrics the value of each frame (for curves), the numbers of the
    frames scored, and for a value that is not a finite number (PSNR of identical frames) why it is not."""

    clip: str
    values: dict[str, float] = field(default_factory=dict)
    per_frame: dict[str, list[float]] = field(default_factory=dict)
    frames: list[int] = field(default_factory=list)
    undefined: dict[str, str] = field(default_factory=dict)


def why_not_finite(metric_opt: dict, values: Sequence[float], frames: Sequence[int]) -> str:
    """Why a metric's value is infinite or not a number, naming the frames that made it so."""
    bad = [(frame, value) for frame, value in zip(frames, values) if not math.isfinite(value)]
    listed = ', '.join(str(frame) for frame, _ in bad[:5]) + (f' ... ({len(bad)} frames)' if len(bad) > 5 else '')
    if metric_opt['type'] == 'calculate_psnr' and all(value == math.inf for _, value in bad):
        return f'PSNR is infinite: restored frame {listed} equals the ground truth'
    return f'{metric_opt["type"]} gave {bad[0][1]} (frame {listed})'


def check_frames(frames: Sequence[np.ndarray], references: Sequence[np.ndarray] | None, clip: str,
                 frame_numbers: Sequence[int] | None = None) -> None:
    """Same number of frames and the same size, frame by frame, or one line naming the clip and the frame."""
    if not len(frames):
        raise ClipInputError(f'{clip}: no restored frames')
    if references is None:
        return
    if len(frames) != len(references):
        raise ClipInputError(f'{clip}: {len(frames)} restored frames but {len(references)} ground-truth frames')
    for index, (frame, reference) in enumerate(zip(frames, references)):
        if frame.shape != reference.shape:
            number = index if frame_numbers is None else frame_numbers[index]
            raise ClipInputError(f'{clip}: frame {number}: restored size {frame.shape[1]}x{frame.shape[0]} differs '
                                 f'from ground truth {reference.shape[1]}x{reference.shape[0]}')


def score_clip(frames: Sequence[np.ndarray], references: Sequence[np.ndarray] | None, metric_opts: dict,
               clip: str, frame_numbers: Sequence[int] | None = None) -> ClipScores:
    """Every metric of ``metric_opts`` (``val.metrics``: name -> ``{type, ...}``) on one clip.

    ``frames`` / ``references``: lists of (H, W, 3) BGR uint8 frames (``references`` None for real videos: only
    reference-free metrics are computed); ``frame_numbers`` name them in messages (default 0, 1, ...). Frame metrics
    give the mean over the frames; clip metrics their value.
    """
    check_frames(frames, references, clip, frame_numbers)
    scores = ClipScores(clip, frames=list(range(len(frames)) if frame_numbers is None else frame_numbers))
    for name, metric_opt in metric_opts.items():
        if references is None and needs_reference(metric_opt):
            continue
        try:
            if is_clip_metric(metric_opt):
                value = float(calculate_metric({'img': list(frames), 'img2': references}, metric_opt))
                scores.values[name] = value
                if not math.isfinite(value):
                    scores.undefined[name] = f'{metric_opt["type"]} gave {value} on the clip'
                continue
            series = []
            for index, frame in enumerate(frames):
                reference = None if references is None else references[index]
                try:
                    series.append(float(calculate_metric({'img': frame, 'img2': reference}, metric_opt)))
                except FrameError as error:  # the metric saw one frame: it is frame ``index`` of the clip
                    raise FrameError(error.reason, index) from None
            scores.per_frame[name] = series
            scores.values[name] = float(np.mean(series))
            if not all(math.isfinite(value) for value in series):
                scores.undefined[name] = why_not_finite(metric_opt, series, scores.frames)
        except FrameError as error:  # named by the frame's number, not its position in the clip
            where = '' if error.frame_index is None else f'frame {scores.frames[error.frame_index]}: '
            raise ClipInputError(f'{clip}: {name}: {where}{error.reason}') from None
        except ClipInputError as error:
            raise ClipInputError(f'{clip}: {name}: {error}') from None
    return scores


def average_over_clips(clip_scores: Sequence[ClipScores]) -> dict[str, dict[str, float]]:
    """{metric: {'mean', 'std'}} over clips (population std; clips lacking a metric do not count for it)."""
    names = list(dict.fromkeys(name for scores in clip_scores for name in scores.values))
    summary = {}
    for name in names:
        values = [scores.values[name] for scores in clip_scores if name in scores.values]
        with np.errstate(invalid='ignore'):  # std over an infinite value is NaN: the metrics file says why
            summary[name] = {'mean': float(np.mean(values)), 'std': float(np.std(values))}
    return summary

