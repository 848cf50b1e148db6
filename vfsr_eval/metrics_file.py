"""The metrics JSON that validation, ``test.py`` and ``vfsr-evaluate`` write, and that the tables command reads.

``metrics_<dataset>.json``::

    {"dataset": "VFHQ-Test", "iter": 500000, "num_clips": 50,
     "metrics": {"psnr": 27.99, "ids": 0.796, ...},            # mean over clips
     "std": {"psnr": 1.2, ...},                                # standard deviation over clips
     "clips": {"Clip+abc+P0+C0+F1-100": {"psnr": 28.1, ...}, ...},
     "undefined": {"clips": {"Clip+...": {"psnr": "PSNR is infinite: restored frame 3 equals the ground truth"}},
                   "metrics": {"psnr": "..."}, "std": {"psnr": "..."}}}   # only when a value is not finite

Strict JSON that any parser reads: a value that is not a finite number (PSNR of identical frames is infinite, a
standard deviation over an infinite value is NaN) is written as null, with why under ``undefined`` at the same place.
Written atomically: a reader never sees half a file.
"""
import json
import math
from collections.abc import Sequence
from pathlib import Path

from vfsr_eval.clip_scoring import ClipScores, average_over_clips
from vfsr_io.atomic_output import write_text_atomically


def metrics_record(dataset: str, current_iter, clip_scores: Sequence[ClipScores]) -> dict:
    summary = average_over_clips(clip_scores)
    undefined = {'clips': {}, 'metrics': {}, 'std': {}}

    def finite(value: float, place: dict, name: str, why: str):
        if math.isfinite(value):
            return value
        place[name] = why
        return None

    clips = {}
    for scores in clip_scores:
        place = undefined['clips'].setdefault(scores.clip, {})
        clips[scores.clip] = {name: finite(value, place, name, scores.undefined.get(name, f'{value}'))
                              for name, value in scores.values.items()}
    means, stds = {}, {}
    for name, value in summary.items():
        bad = [scores for scores in clip_scores if name in scores.values and not math.isfinite(scores.values[name])]
        why = f'{value["mean"]}'
        if bad:
            why = (f'{len(bad)} of {len(clip_scores)} clips have no finite value ({bad[0].clip}: '
                   f'{bad[0].undefined.get(name, bad[0].values[name])})')
        means[name] = finite(value['mean'], undefined['metrics'], name, why)
        stds[name] = finite(value['std'], undefined['std'], name, why)
    record = {'dataset': dataset, 'iter': current_iter, 'num_clips': len(clip_scores), 'metrics': means,
              'std': stds, 'clips': clips}
    undefined['clips'] = {clip: reasons for clip, reasons in undefined['clips'].items() if reasons}
    undefined = {key: reasons for key, reasons in undefined.items() if reasons}
    if undefined:
        record['undefined'] = undefined
    return record


def format_number(value: float | None, decimals: int = 4) -> str:
    """``decimals`` places, or 3 significant figures where those would show fewer (4.7e-05, never 0.0000);
    ``undefined`` for None (a value that is not finite)."""
    if value is None:
        return 'undefined'
    if value == 0:
        return '0'
    if abs(value) < 10 ** (2 - decimals):
        return f'{value:#.3g}'
    return f'{value:.{decimals}f}'


def strict_json(data) -> str:
    """``data`` as standard JSON (no Infinity or NaN: a ValueError if one slipped through), indented."""
    return json.dumps(data, indent=2, allow_nan=False) + '\n'


def write_json_atomically(path: str | Path, data) -> None:
    """Write ``data`` as JSON to ``path``, whole or not at all."""
    write_text_atomically(path, strict_json(data))


def write_metrics_file(folder: str | Path, dataset: str, current_iter, clip_scores: Sequence[ClipScores]) -> Path:
    """Write ``<folder>/metrics_<dataset>.json``; returns its path."""
    path = Path(folder) / f'metrics_{dataset}.json'
    write_json_atomically(path, metrics_record(dataset, current_iter, clip_scores))
    return path


def read_metrics_file(path: str | Path) -> dict:
    """A metrics JSON, or a one-line error naming the file."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f'{path}: not a readable metrics JSON ({error})') from None
    if not isinstance(record, dict) or not isinstance(record.get('metrics'), dict):
        raise ValueError(f'{path}: not a metrics JSON (no "metrics" object)')
    return record
