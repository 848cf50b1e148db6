"""The metrics JSON that validation, ``test.py`` and ``vfsr-evaluate`` write, and that the tables command reads.

``metrics_<dataset>.json``::

    {"dataset": "VFHQ-Test", "iter": 500000, "num_clips": 50,
     "metrics": {"psnr": 27.99, "ids": 0.796, ...},            # mean over clips
     "std": {"psnr": 1.2, ...},                                # standard deviation over clips
     "clips": {"Clip+abc+P0+C0+F1-100": {"psnr": 28.1, ...}, ...}}

Written atomically: a reader never sees half a file.
"""
import json
from collections.abc import Sequence
from pathlib import Path

from datasets_prep.atomic_output import write_text_atomically
from vfsr_eval.clip_scoring import ClipScores, average_over_clips


def metrics_record(dataset: str, current_iter, clip_scores: Sequence[ClipScores]) -> dict:
    summary = average_over_clips(clip_scores)
    return {'dataset': dataset, 'iter': current_iter, 'num_clips': len(clip_scores),
            'metrics': {name: value['mean'] for name, value in summary.items()},
            'std': {name: value['std'] for name, value in summary.items()},
            'clips': {scores.clip: scores.values for scores in clip_scores}}


def write_json_atomically(path: str | Path, data) -> None:
    """Write ``data`` as JSON to ``path``, whole or not at all."""
    write_text_atomically(path, json.dumps(data, indent=2) + '\n')


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
