"""``vfsr-evaluate --plot``: pictures a person reads faster than numbers.

* ``curves_<clip>.png``: every frame metric of the clip frame by frame, one line per method (a dip shows where a
  method loses the face; a saw-tooth shows flicker).
* ``flicker_<clip>.png``: the KEEP paper's temporal picture: the same vertical line of pixels (at
  ``slice_position`` of the width) taken from every frame and laid side by side, so time runs left to right. A
  temporally stable video gives smooth horizontal streaks; flicker shows as vertical stripes. One panel per method,
  and the ground truth first when there is one.
"""
from pathlib import Path

import matplotlib

matplotlib.use('Agg')  # files only, no display needed

import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402

from vfsr_eval.clip_folders import read_frames  # noqa: E402
from vfsr_eval.clip_scoring import ClipScores  # noqa: E402


def temporal_slice(frames: list[np.ndarray], slice_position: float) -> np.ndarray:
    """(H, T, 3) RGB: column ``slice_position * (W - 1)`` of each (H, W, 3) BGR frame, frames side by side."""
    column = round(slice_position * (frames[0].shape[1] - 1))
    return np.stack([frame[:, column, ::-1] for frame in frames], axis=1)


def plot_curves(path: Path, clip: str, method_scores: dict[str, ClipScores]) -> None:
    names = list(dict.fromkeys(name for scores in method_scores.values() for name in scores.per_frame))
    if not names:
        return
    figure, axes = plt.subplots(len(names), 1, figsize=(8, 2.2 * len(names)), squeeze=False, sharex=True)
    for axis, name in zip(axes[:, 0], names):
        for method, scores in method_scores.items():
            if name in scores.per_frame:
                axis.plot(scores.frames, scores.per_frame[name], marker='.', label=method)
        axis.set_ylabel(name)
        axis.grid(alpha=0.3)
    axes[0, 0].set_title(f'{clip}: per-frame metrics')
    axes[0, 0].legend(fontsize='small')
    axes[-1, 0].set_xlabel('frame')
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_flicker(path: Path, clip: str, slices: dict[str, np.ndarray], slice_position: float) -> None:
    figure, axes = plt.subplots(1, len(slices), figsize=(2.5 * len(slices), 4), squeeze=False)
    for axis, (method, picture) in zip(axes[0], slices.items()):
        axis.imshow(picture, aspect='auto', interpolation='nearest')
        axis.set_title(method, fontsize='small')
        axis.set_xlabel('frame')
        axis.set_yticks([])
    figure.suptitle(f'{clip}: pixel column at {slice_position:.2f} of the width over time')
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_plots(folder: Path, results: dict[str, list[ClipScores]], methods: dict[str, Path], gt_root: Path | None,
                slice_position: float) -> None:
    """Curves and flicker pictures of every clip; ``results`` as :func:`vfsr_eval.evaluate.evaluate` returns,
    ``methods`` the folders of the methods' clips (frames in the order of their numbers)."""
    folder.mkdir(parents=True)
    clips = list(dict.fromkeys(scores.clip for all_scores in results.values() for scores in all_scores))
    for clip in clips:
        method_scores = {method: scores for method, all_scores in results.items() for scores in all_scores
                         if scores.clip == clip}
        plot_curves(folder / f'curves_{clip}.png', clip, method_scores)
        slices = {}
        if gt_root is not None:
            slices['ground truth'] = temporal_slice(read_frames(gt_root / clip), slice_position)
        for method in method_scores:
            slices[method] = temporal_slice(read_frames(methods[method] / clip), slice_position)
        plot_flicker(folder / f'flicker_{clip}.png', clip, slices, slice_position)

