"""``vfsr-evaluate``: score restored clips of one or more methods against the ground truth (or, for real videos,
with the reference-free metrics alone) and write a table per method and per clip.

Layout: one folder per method and one for the ground truth, each holding one sub-folder per clip of frame images
(what ``test.py`` with ``val.save_img`` or ``vfsr-restore`` writes). A method's frames are matched to the ground
truth's in sorted file-name order, so names may differ (``00000000_<run>.png`` vs ``00000000.png``); a clip with
fewer or more frames, or a frame of another size, is an error naming the clip and the frame. Examples::

    vfsr-evaluate --gt datasets/VFHQ-Test/gt --method KEEP=results/test_keep_vfhq/visualization/VFHQ-Test-easy \\
        --method EDVR=results/test_edvr_vfhq/visualization/VFHQ-Test-easy --metrics keep,temporal \\
        --dataset VFHQ-Test --output evaluation/VFHQ-Test --plot
    vfsr-evaluate --method KEEP=restored/real --metrics temporal --output evaluation/real   # no ground truth

Output folder (written whole or not at all): ``metrics_<method>.json`` (the format ``test.py`` writes, read by
``python -m vfsr_eval.tables``), ``table.md`` / ``table.csv`` / ``table.json`` (mean and standard deviation over
clips per method, then every clip), and with ``--plot`` PNGs in ``plots/``: per-frame curves of each frame metric,
one line per method, and the KEEP paper's flicker picture (a vertical line of pixels from every frame, side by side).
"""
import argparse
import csv
import inspect
import io
import json
import sys
from pathlib import Path

import vfsr_compat  # noqa: F401  (before basicsr)

import cv2
import numpy as np
import yaml
from basicsr.utils.registry import METRIC_REGISTRY
from tqdm import tqdm

import vfsr_eval  # noqa: F401  (registers the metrics)
from datasets_prep.atomic_output import atomic_directory
from vfsr_arch.checkpoint import CheckpointError
from vfsr_data.clip_frames import IMAGE_EXTENSIONS
from vfsr_eval.clip_scoring import ClipInputError, ClipScores, average_over_clips, score_clip
from vfsr_eval.metric_presets import METRIC_PRESETS
from vfsr_eval.metrics_file import metrics_record, write_json_atomically


class EvaluationError(ValueError):
    """A problem with the command line or the data, reported in one line."""


def frame_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_EXTENSIONS)


def clip_names(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise EvaluationError(f'{folder}: not a folder')
    names = sorted(path.name for path in folder.iterdir() if path.is_dir() and frame_files(path))
    if not names:
        raise EvaluationError(f'{folder}: no clip folders with frame images')
    return names


def read_frames(folder: Path, count: int | None = None, reference_names: list[str] | None = None) -> list[np.ndarray]:
    """The frames of one clip folder (BGR uint8). With ``count``, the clip must have exactly that many frames."""
    files = frame_files(folder)
    if count is not None and len(files) != count:
        missing = reference_names[len(files)] if len(files) < count else files[count].name
        what = 'missing from' if len(files) < count else 'has no ground truth in'
        raise EvaluationError(f'{folder}: {len(files)} frames for {count} ground-truth frames (frame {missing} '
                              f'{what} the restored clip)')
    frames = []
    for path in files:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise EvaluationError(f'{path}: not a readable image')
        frames.append(image)
    return frames


def parse_methods(entries: list[str]) -> dict[str, Path]:
    methods = {}
    for entry in entries:
        name, separator, folder = entry.partition('=')
        if not separator or not name or not folder:
            raise EvaluationError(f'--method {entry!r}: expected NAME=FOLDER')
        if name in methods:
            raise EvaluationError(f'--method {name!r} given twice')
        methods[name] = Path(folder)
    return methods


def parse_metrics(spec: str) -> dict:
    """Preset names separated by commas, or a YAML file with a ``metrics:`` mapping (``val.metrics`` form)."""
    path = Path(spec)
    if path.suffix in ('.yml', '.yaml'):
        if not path.is_file():
            raise EvaluationError(f'--metrics {spec}: no such file')
        metrics = (yaml.safe_load(path.read_text()) or {}).get('metrics')
        if not isinstance(metrics, dict) or not metrics:
            raise EvaluationError(f'--metrics {spec}: needs a "metrics:" mapping of name -> {{type: ..., ...}}')
    else:
        metrics = {}
        for name in spec.split(','):
            if name not in METRIC_PRESETS:
                raise EvaluationError(f'--metrics: unknown preset {name!r}; presets: {", ".join(METRIC_PRESETS)} '
                                      '(or a .yml file)')
            metrics.update(METRIC_PRESETS[name])
    for name, metric_opt in metrics.items():
        if not isinstance(metric_opt, dict) or metric_opt.get('type') not in METRIC_REGISTRY:
            raise EvaluationError(f'--metrics: {name}: unknown metric type {metric_opt!r}')
        for key, value in metric_opt.items():
            if key.endswith('_path') and value and not Path(value).is_file():
                raise EvaluationError(f'--metrics: {name}.{key}: weights file {value!r} does not exist (see '
                                      'docs/evaluate.md for where to get it)')
    return metrics


def evaluate(methods: dict[str, Path], gt_root: Path | None, metrics: dict, device: str | None = None,
             progress: bool = True) -> dict[str, list[ClipScores]]:
    """Score every clip of every method: {method: [ClipScores per clip]}."""
    if device:
        metrics = {name: dict(opt, device=device) if 'device' in signature_keys(opt['type']) else opt
                   for name, opt in metrics.items()}
    method_clips = {method: clip_names(folder) for method, folder in methods.items()}
    if gt_root is None:
        jobs = [(method, clip) for method, clips in method_clips.items() for clip in clips]
    else:
        reference_clips = clip_names(gt_root)
        for method, clips in method_clips.items():
            missing = sorted(set(reference_clips) - set(clips))
            if missing:
                raise EvaluationError(f'{method}: clip {missing[0]} of the ground truth is missing from '
                                      f'{methods[method]}')
        jobs = [(method, clip) for clip in reference_clips for method in methods]  # each GT clip is read once
    results: dict[str, list[ClipScores]] = {method: [] for method in methods}
    reference_clip, reference_names, references = None, None, None
    for method, clip in tqdm(jobs, desc='vfsr-evaluate', unit='clip', disable=not progress):
        if gt_root is not None and clip != reference_clip:
            reference_clip = clip
            reference_names = [path.name for path in frame_files(gt_root / clip)]
            references = read_frames(gt_root / clip)
        count = None if references is None else len(references)
        frames = read_frames(methods[method] / clip, count, reference_names)
        try:
            results[method].append(score_clip(frames, references, metrics, clip))
        except ClipInputError as error:  # it starts with the clip's name
            raise EvaluationError(f'{method}/{error}') from None
    return results


def signature_keys(metric_type: str) -> set[str]:
    return set(inspect.signature(METRIC_REGISTRY.get(metric_type)).parameters)


def summary_rows(results: dict[str, list[ClipScores]]) -> tuple[list[str], list[dict]]:
    """Metric names and table rows: per method the mean and std over clips, then each clip's values."""
    names = list(dict.fromkeys(name for scores in results.values() for clip in scores for name in clip.values))
    rows = []
    for method, scores in results.items():
        summary = average_over_clips(scores)
        rows.append({'method': method, 'clip': 'mean', **{n: summary[n]['mean'] for n in names if n in summary}})
        rows.append({'method': method, 'clip': 'std', **{n: summary[n]['std'] for n in names if n in summary}})
    for method, scores in results.items():
        rows.extend({'method': method, 'clip': clip.clip, **clip.values} for clip in scores)
    return names, rows


def markdown_table(names: list[str], rows: list[dict]) -> str:
    lines = ['| method | clip | ' + ' | '.join(names) + ' |', '|---|---|' + '---|' * len(names)]
    for row in rows:
        cells = [f'{row[name]:.4f}' if name in row else '' for name in names]
        clip = f'**{row["clip"]}**' if row['clip'] in ('mean', 'std') else row['clip']
        lines.append(f'| {row["method"]} | {clip} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def csv_table(names: list[str], rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=['method', 'clip', *names], lineterminator='\n')
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_outputs(output: Path, results: dict[str, list[ClipScores]], dataset: str, methods: dict[str, Path],
                  gt_root: Path | None, plot: bool, slice_position: float, overwrite: bool) -> str:
    """Write every output into ``output`` atomically; returns the Markdown table."""
    names, rows = summary_rows(results)
    table = markdown_table(names, rows)
    with atomic_directory(output, overwrite=overwrite) as partial:
        partial.mkdir()
        for method, scores in results.items():
            record = dict(metrics_record(dataset, None, scores), method=method)
            write_json_atomically(partial / f'metrics_{method}.json', record)
        (partial / 'table.md').write_text(table)
        (partial / 'table.csv').write_text(csv_table(names, rows))
        (partial / 'table.json').write_text(json.dumps({'dataset': dataset, 'metrics': names, 'rows': rows},
                                                       indent=2) + '\n')
        if plot:
            from vfsr_eval.plots import write_plots

            write_plots(partial / 'plots', results, methods, gt_root, slice_position)
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='vfsr-evaluate', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--method', action='append', required=True, metavar='NAME=FOLDER',
                        help='a method name and its folder of restored clips (repeat for several methods)')
    parser.add_argument('--gt', help='folder of ground-truth clips; without it only reference-free metrics run')
    parser.add_argument('--metrics', default='psnr_ssim',
                        help=f'comma-separated presets ({", ".join(METRIC_PRESETS)}) or a YAML file with a '
                        '"metrics:" mapping as in val.metrics (default: psnr_ssim)')
    parser.add_argument('--output', required=True, help='output folder (must not exist unless --overwrite)')
    parser.add_argument('--dataset', default='test', help='test-set name written into the metrics JSON files')
    parser.add_argument('--device', help='device of the metric networks (default: CUDA when available)')
    parser.add_argument('--plot', action='store_true', help='also write PNG curves and flicker pictures')
    parser.add_argument('--slice-position', type=float, default=0.5,
                        help='x of the flicker picture\'s pixel column, as a fraction of the width (default 0.5)')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing output folder when done')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        methods = parse_methods(args.method)
        metrics = parse_metrics(args.metrics)
        gt_root = Path(args.gt) if args.gt else None
        output = Path(args.output)
        if output.exists() and not args.overwrite:
            raise EvaluationError(f'{output} already exists; remove it or pass --overwrite')
        if not 0 <= args.slice_position <= 1:
            raise EvaluationError('--slice-position must be between 0 and 1')
        results = evaluate(methods, gt_root, metrics, args.device, progress=not args.no_progress)
        if not any(clip.values for scores in results.values() for clip in scores):
            raise EvaluationError('no metric could be computed (reference metrics need --gt)')
        table = write_outputs(output, results, args.dataset, methods, gt_root, args.plot, args.slice_position,
                              args.overwrite)
    except (EvaluationError, CheckpointError, FileNotFoundError) as error:
        print(f'vfsr-evaluate: error: {error}', file=sys.stderr)
        return 2
    print(table, end='')
    return 0


def console_main() -> None:
    raise SystemExit(main())


if __name__ == '__main__':
    console_main()
