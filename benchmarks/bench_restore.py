"""Benchmark ``vfsr-restore`` end to end: frames per second on a generated 720p clip with one face, the seconds of
each stage, what the pipeline adds around the network, and peak memory for a short clip and one 4x longer.

Each run is a fresh ``python -m vfsr_restore.cli`` process (its peak resident set is its own); the numbers come from
the JSON report every run writes. The clip is the astronaut's face (``datasets_prep.make_face_video``) moving over
a textured background, with audio. Networks have random weights (``--random-weights``): the speed does not depend
on the values. ``pipeline share`` is the part of the wall time not spent in the network (decode, detect, track,
crop, paste, encode, mux, waiting); the target is under 15% with the real networks. Memory should not grow with the
clip's length.

Usage::

    python benchmarks/bench_restore.py                          # KEEP, CPU, 20 and 80 frames
    python benchmarks/bench_restore.py --model codeformer --frames 10 --device cuda --precision bf16
    python benchmarks/bench_restore.py --model identity --frames 40   # the pipeline alone
    python benchmarks/bench_restore.py --detection --frames 40      # identity fps and detection share, 1 and 3 faces

``--detection`` runs the identity model (so the pipeline and the detector are all there is) on a 384x512 portrait
clip and a 1280x720 one, each with one face and with three, and prints frames per second and the share of the wall
time spent detecting.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.harness import machine_description  # noqa: E402
from vfsr_face.synthetic_video import FacePath, VideoSpec, write_video  # noqa: E402


def measure(source: Path, output: Path, args) -> dict:
    command = ['-m', 'vfsr_restore.cli', str(source), '-o', str(output), '--model', args.model, '--no-progress',
               '--device', args.device, '--precision', args.precision, '--upscale', str(args.upscale),
               '--overwrite', '--detector', args.detector]
    if args.model != 'identity':
        command.append('--random-weights')
    # the repository first, then what the caller's PYTHONPATH already holds (benchmarks/gpu_checks.sh's packages)
    python_path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get('PYTHONPATH')]))
    env = dict(os.environ, PYTHONPATH=python_path, OMP_NUM_THREADS=str(args.threads))
    completed = subprocess.run([sys.executable, *command], env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    report_path = output.with_name(output.name + '.json')
    if completed.returncode or not report_path.is_file():
        raise SystemExit(f'the restore run failed:\n{completed.stderr[-2000:]}')
    return json.loads(report_path.read_text())


# Three faces side by side, moving a little; one face in the middle.
FACE_LAYOUTS = {1: [((0.4, 0.5), (0.6, 0.5))],
                3: [((0.2, 0.5), (0.25, 0.5)), ((0.5, 0.45), (0.5, 0.55)), ((0.8, 0.5), (0.75, 0.5))]}


def detection_table(args, folder: Path) -> None:
    """Identity model: frames per second and detection share per clip size and number of faces."""
    print(f'vfsr-restore --model identity --detector {args.detector}, {args.frames} frames, {args.device}, '
          f'{args.threads} threads; {machine_description(args.device)}')
    print('| clip | faces | fps | seconds | detect seconds | detection share |')
    print('|---|---|---|---|---|---|')
    for width, height in ((384, 512), (1280, 720)):
        face_width = min(width, height) / 5
        for count, paths in FACE_LAYOUTS.items():
            source = folder / f'clip_{width}x{height}_{count}.mp4'
            faces = [FacePath(face_width, start, end) for start, end in paths]
            write_video(source, VideoSpec(width, height, args.frames, faces=faces, crf=18))
            report = measure(source, folder / f'restored_{width}x{height}_{count}.mp4', args)
            detect = report['stage_seconds']['detect']
            print(f'| {width}x{height} | {count} | {report["processing_fps"]:.1f} | {report["seconds"]:.1f} | '
                  f'{detect:.1f} | {detect / report["seconds"]:.0%} |')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', default='keep', help='keep, keep-asian, codeformer, vidface or identity')
    parser.add_argument('--frames', type=int, default=20, help='frames of the short clip (the long one has 4x)')
    parser.add_argument('--size', default='1280x720', help='clip size WIDTHxHEIGHT (default 720p)')
    parser.add_argument('--face-width', type=float, default=180, help='face width in pixels')
    parser.add_argument('--upscale', type=int, default=1, help='--upscale of the restore runs')
    parser.add_argument('--device', default='cpu', help='cpu or cuda')
    parser.add_argument('--precision', default='fp32', help='fp32, bf16, bf16-fast or fp16')
    parser.add_argument('--threads', type=int, default=2, help='CPU threads (OMP_NUM_THREADS)')
    parser.add_argument('--detector', default='mtcnn', help='mtcnn or retinaface (needs its weights in weights/)')
    parser.add_argument('--detection', action='store_true', help='the detection table (identity model) instead')
    args = parser.parse_args()
    if args.detection:
        args.model = 'identity'
        with tempfile.TemporaryDirectory() as folder:
            detection_table(args, Path(folder))
        return
    width, height = (int(value) for value in args.size.split('x'))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for frames in (args.frames, 4 * args.frames):
            source = Path(folder) / f'clip_{frames}.mp4'
            write_video(source, VideoSpec(width, height, frames, faces=[FacePath(args.face_width)], crf=18))
            report = measure(source, Path(folder) / f'restored_{frames}.mp4', args)
            stages = report['stage_seconds']
            rows.append((frames, report['processing_fps'], report['seconds'], stages,
                         1 - stages['restore'] / report['seconds'], report['peak_memory']))
    print(f'vfsr-restore --model {args.model} on {width}x{height}, {args.device} {args.precision}, '
          f'{args.threads} threads; {machine_description(args.device)}')
    print('| frames | fps | seconds | ' + ' | '.join(rows[0][3]) + ' | pipeline share | peak memory |')
    print('|' + '---|' * (6 + len(rows[0][3])))
    for frames, fps, seconds, stages, share, memory in rows:
        print(f'| {frames} | {fps:.2f} | {seconds:.1f} | ' + ' | '.join(f'{value:.2f}' for value in stages.values())
              + f' | {share:.0%} | {", ".join(f"{key} {value:.0f}" for key, value in memory.items())} |')
    print(json.dumps({'rows': rows}))


if __name__ == '__main__':
    main()
