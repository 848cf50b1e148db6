"""``vfsr-evaluate``: score restored clips of one or more methods against the ground truth (or, for real videos,
with the reference-free metrics alone) and write a table per method and per clip.

Layout: one folder per method and one for the ground truth, each holding one sub-folder per clip of frame images
(what ``test.py`` with ``val.save_img`` or ``vfsr-restore`` writes). A method's frames are paired with the ground
truth's by the first number in their names, so names may differ (``00000003_<run>.png``, ``3.png`` and
``00000003.png`` are all frame 3). Whatever does not pair is an error naming the method, the clip and the frames: a
frame on one side only, an empty clip folder on either side, a clip on one side only; ``--allow-missing`` scores
what both sides have instead and lists what was left out under the table. A frame of another size is an error too.
Examples::

    vfsr-evaluate --gt datasets/VFHQ-Test/gt --method KEEP=results/test_keep_vfhq/visualization/VFHQ-Test-easy \\
        --method EDVR=results/test_edvr_vfhq/visualization/VFHQ-Test-easy --metrics keep,temporal \\
        --dataset VFHQ-Test --output evaluation/VFHQ-Test --plot
    vfsr-evaluate --method KEEP=restored/real --metrics temporal --output evaluation/real   # no ground truth

Output folder (written whole or not at all): ``metrics_<method>.json`` (the format ``test.py`` writes, read by
``python -m vfsr_eval.tables``), ``table.md`` / ``table.csv`` / ``table.json`` (mean and standard deviation over
clips per method, then every clip), and with ``--plot`` PNGs in ``plots/``: per-frame curves of each frame metric,
one line per method, and the KEEP paper's flicker picture (a vertical line of pixels from every frame, side by side).
The JSON files are standard JSON: a value that is not a finite number (PSNR of identical frames) is null, with why
under ``undefined`` (metrics files) or in the row's ``note`` (tables; an empty cell in the CSV). Ctrl-C (exit code
130) and SIGTERM (143) stop it with one line, and nothing is written.
"""
import argparse
import csv
import inspect
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path

import vfsr_compat  # noqa: F401  (before basicsr)

import yaml
from basicsr.utils.registry import METRIC_REGISTRY
from tqdm import tqdm

import vfsr_eval  # noqa: F401  (registers the metrics)
from vfsr_eval.clip_folders import EvaluationError, clip_folders, clip_frames, read_image
from vfsr_eval.clip_scoring import ClipInputError, ClipScores, score_clip
from vfsr_eval.metric_presets import METRIC_PRESETS
from vfsr_eval.metrics_file import format_number, metrics_record, strict_json, write_json_atomically
from vfsr_io.atomic_output import atomic_directory
from vfsr_io.checkpoint import CheckpointError
from vfsr_io.stopping import TERMINATED, Terminated, stop_exit_code, stop_signals


def frame_list(files: dict[int, Path], numbers) -> str:
    """Names of the frames ``numbers`` (the first five, then how many in all)."""
    names = [files[number].name for number in sorted(numbers)]
    return ', '.join(names[:5]) + (f' ... ({len(names)} frames)' if len(names) > 5 else '')


@dataclass
class ClipJob:
    """One clip of one method to score: its frames and the ground truth's, paired by number."""

    method: str
    clip: str
    frames: dict[int, Path]
    references: dict[int, Path] | None
    note: str = ''  # what --allow-missing left out of this clip


def pair_clip(method: str, clip: str, folder: Path, gt_folder: Path | None) -> tuple[ClipJob | None, str]:
    """The frames of ``clip`` both sides have, and what does not pair (empty when everything does)."""
    frames = clip_frames(folder)
    if gt_folder is None:
        return (ClipJob(method, clip, frames, None), '') if frames else (None, f'{folder} has no frame images')
    references = clip_frames(gt_folder)
    if not references:
        return None, f'the ground-truth clip folder {gt_folder} has no frame images'
    if not frames:
        return None, f'{folder} has no frame images for the {len(references)} ground-truth frames'
    missing, extra = references.keys() - frames.keys(), frames.keys() - references.keys()
    problems = []
    if missing:
        problems.append(f'ground-truth frame {frame_list(references, missing)} missing from {folder}')
    if extra:
        problems.append(f'frame {frame_list(frames, extra)} of {folder} has no ground truth')
    common = sorted(references.keys() & frames.keys())
    if not common:
        return None, '; '.join(problems + ['no frame number in common'])
    job = ClipJob(method, clip, {n: frames[n] for n in common}, {n: references[n] for n in common})
    if problems:
        job.note = f'{len(common)} of {len(references)} ground-truth frames scored'
    return job, '; '.join(problems)


def plan(methods: dict[str, Path], gt_root: Path | None, allow_missing: bool) -> tuple[list[ClipJob], dict]:
    """The clip jobs, and per method what does not pair ({method: [line]}). Without ``allow_missing`` the first
    thing that does not pair is an error naming the method, the clip and the frames."""
    jobs, gaps = [], {method: [] for method in methods}
    reference_clips = None if gt_root is None else clip_folders(gt_root)
    for method, root in methods.items():
        clips = clip_folders(root)
        names = list(clips) if reference_clips is None else list(dict.fromkeys([*reference_clips, *clips]))
        for clip in names:
            if clip not in clips:
                problem = f'missing from {root} (the ground truth has it)'
                job = None
            elif reference_clips is not None and clip not in reference_clips:
                problem = f'no ground truth in {gt_root}'
                job = None
            else:
                job, problem = pair_clip(method, clip, clips[clip],
                                         None if reference_clips is None else reference_clips[clip])
            if problem:
                if not allow_missing:
                    raise EvaluationError(f'{method}: clip {clip}: {problem} (--allow-missing scores what both sides '
                                          'have)')
                gaps[method].append(f'{clip}: {problem}' + ('' if job else ' (not scored)'))
            if job:
                jobs.append(job)
        if not any(job.method == method for job in jobs):
            raise EvaluationError(f'{method}: no clip of {root} could be scored')
    jobs.sort(key=lambda job: job.clip)  # each ground-truth clip is read once
    return jobs, gaps


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


@dataclass
class Evaluation:
    """Every method's clip scores, and what --allow-missing left out: per method one line per clip that did not
    pair, and per scored clip a note when only part of it was scored."""

    results: dict[str, list[ClipScores]]
    gaps: dict[str, list[str]] = field(default_factory=dict)
    notes: dict[tuple[str, str], str] = field(default_factory=dict)


def evaluate(methods: dict[str, Path], gt_root: Path | None, metrics: dict, device: str | None = None,
             progress: bool = True, allow_missing: bool = False) -> Evaluation:
    """Score every clip of every method, frames paired with the ground truth's by the number in their names."""
    if device:
        metrics = {name: dict(opt, device=device) if 'device' in signature_keys(opt['type']) else opt
                   for name, opt in metrics.items()}
    jobs, gaps = plan(methods, gt_root, allow_missing)
    evaluation = Evaluation({method: [] for method in methods}, gaps)
    reference_clip, references = None, {}
    for job in tqdm(jobs, desc='vfsr-evaluate', unit='clip', disable=not progress):
        if job.references is not None and job.clip != reference_clip:
            reference_clip, references = job.clip, {}
        if job.references is not None:
            references.update({n: read_image(path) for n, path in job.references.items() if n not in references})
        numbers = list(job.frames)
        frames = [read_image(job.frames[n]) for n in numbers]
        clip_references = None if job.references is None else [references[n] for n in numbers]
        try:
            evaluation.results[job.method].append(score_clip(frames, clip_references, metrics, job.clip, numbers))
        except ClipInputError as error:  # it starts with the clip's name
            raise EvaluationError(f'{job.method}/{error}') from None
        if job.note:
            evaluation.notes[(job.method, job.clip)] = job.note
    return evaluation


def signature_keys(metric_type: str) -> set[str]:
    return set(inspect.signature(METRIC_REGISTRY.get(metric_type)).parameters)


def summary_rows(evaluation: Evaluation, records: dict[str, dict]) -> tuple[list[str], list[dict]]:
    """Metric names and table rows from the methods' metrics records: per method the mean and std over clips, then
    each clip's values. A value that is not finite is None; the row's ``note`` says why, and what --allow-missing
    left out."""
    names = list(dict.fromkeys(name for record in records.values() for name in record['metrics']))
    rows = []
    for method, record in records.items():
        undefined = record.get('undefined', {})
        skipped = len(evaluation.gaps.get(method, ())) - sum(key[0] == method for key in evaluation.notes)
        coverage = f'scored {record["num_clips"]} clips, {skipped} not scored' if skipped > 0 else ''
        for kind in ('metrics', 'std'):
            reasons = [f'{name}: {why}' for name, why in undefined.get(kind, {}).items()]
            if kind == 'metrics' and coverage:
                reasons.insert(0, coverage)
            rows.append({'method': method, 'clip': 'mean' if kind == 'metrics' else 'std',
                         **{name: record[kind].get(name) for name in names if name in record[kind]},
                         'note': '; '.join(reasons)})
    for method, record in records.items():
        undefined = record.get('undefined', {}).get('clips', {})
        for clip, values in record['clips'].items():
            reasons = [f'{name}: {why}' for name, why in undefined.get(clip, {}).items()]
            if (method, clip) in evaluation.notes:
                reasons.insert(0, evaluation.notes[(method, clip)])
            rows.append({'method': method, 'clip': clip, **values, 'note': '; '.join(reasons)})
    return names, rows


def markdown_table(names: list[str], rows: list[dict], gaps: dict[str, list[str]]) -> str:
    lines = ['| method | clip | ' + ' | '.join(names) + ' | note |', '|---|---|' + '---|' * len(names) + '---|']
    for row in rows:
        cells = [format_number(row[name]) if name in row else '' for name in names]
        clip = f'**{row["clip"]}**' if row['clip'] in ('mean', 'std') else row['clip']
        lines.append(f'| {row["method"]} | {clip} | ' + ' | '.join(cells) + f' | {row["note"]} |')
    missing = [f'- {method} / {gap}' for method, method_gaps in gaps.items() for gap in method_gaps]
    if missing:
        lines += ['', '--allow-missing: only what both sides have was scored; left out:', *missing]
    return '\n'.join(lines) + '\n'


def csv_table(names: list[str], rows: list[dict]) -> str:
    """Empty cells where a value is not finite (the ``note`` column says why)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=['method', 'clip', *names, 'note'], lineterminator='\n')
    writer.writeheader()
    writer.writerows({key: '' if value is None else value for key, value in row.items()} for row in rows)
    return buffer.getvalue()


def write_outputs(output: Path, evaluation: Evaluation, dataset: str, methods: dict[str, Path],
                  gt_root: Path | None, plot: bool, slice_position: float, overwrite: bool) -> str:
    """Write every output into ``output`` atomically; returns the Markdown table."""
    records = {}
    for method, scores in evaluation.results.items():
        records[method] = dict(metrics_record(dataset, None, scores), method=method)
        if evaluation.gaps.get(method):
            records[method]['not_scored'] = evaluation.gaps[method]
    names, rows = summary_rows(evaluation, records)
    table = markdown_table(names, rows, evaluation.gaps)
    with atomic_directory(output, overwrite=overwrite) as partial:
        partial.mkdir()
        for method, record in records.items():
            write_json_atomically(partial / f'metrics_{method}.json', record)
        (partial / 'table.md').write_text(table)
        (partial / 'table.csv').write_text(csv_table(names, rows))
        gaps = {method: lines for method, lines in evaluation.gaps.items() if lines}
        (partial / 'table.json').write_text(strict_json({'dataset': dataset, 'metrics': names, 'rows': rows,
                                                         'not_scored': gaps}))
        if plot:
            from vfsr_eval.plots import write_plots

            write_plots(partial / 'plots', evaluation.results, methods, gt_root, slice_position)
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
    parser.add_argument('--allow-missing', action='store_true',
                        help='score the clips and frames both sides have instead of stopping at the first that '
                        'does not pair; the tables list what was left out')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing output folder when done')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with stop_signals():
        try:
            table = run(args)
        except (EvaluationError, CheckpointError, FileNotFoundError) as error:
            print(f'vfsr-evaluate: error: {error}', file=sys.stderr)
            return 2
        except (KeyboardInterrupt, Terminated) as stop:  # the output folder is not written (atomic_directory)
            code = stop_exit_code(stop)
            print(f'\nvfsr-evaluate: {"terminated" if code == TERMINATED else "interrupted"}; nothing written',
                  file=sys.stderr)
            return code
    print(table, end='')
    return 0


def run(args: argparse.Namespace) -> str:
    """Score the methods of ``args`` and write the output folder; returns the table printed."""
    methods = parse_methods(args.method)
    metrics = parse_metrics(args.metrics)
    gt_root = Path(args.gt) if args.gt else None
    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise EvaluationError(f'{output} already exists; remove it or pass --overwrite')
    if not 0 <= args.slice_position <= 1:
        raise EvaluationError('--slice-position must be between 0 and 1')
    evaluation = evaluate(methods, gt_root, metrics, args.device, progress=not args.no_progress,
                          allow_missing=args.allow_missing)
    if not any(clip.values for scores in evaluation.results.values() for clip in scores):
        raise EvaluationError('no metric could be computed (reference metrics need --gt)')
    return write_outputs(output, evaluation, args.dataset, methods, gt_root, args.plot, args.slice_position,
                         args.overwrite)


def console_main() -> None:
    raise SystemExit(main())


if __name__ == '__main__':
    console_main()
