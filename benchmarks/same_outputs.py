"""Fingerprint what vfsr's users get, to show that a change of structure changes none of it: the bytes of
``vfsr-restore``'s outputs (identity, CodeFormer and KEEP with seeded random weights of tiny configurations, each
with ``--compare --debug``) and of ``vfsr-evaluate``'s tables, on generated clips.

Record before the change, check after it (the same machine and library versions: CPU kernels and encoders are
pinned to one thread layout, so the bytes are the same in any process there)::

    python -m benchmarks.same_outputs --write results/outputs_before.json
    python -m benchmarks.same_outputs --check results/outputs_before.json

``--check`` prints every file whose bytes differ and exits with 1 if there is one.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import yaml

from vfsr_face.synthetic_video import FacePath, VideoSpec, write_video

REPO_ROOT = Path(__file__).resolve().parents[1]
# Tiny networks: the released configurations would take seconds to minutes per frame on a CPU.
TINY_NETWORKS = {
    'codeformer': dict(type='CodeFormer', img_size=32, nf=32, ch_mult=[1, 1, 1], res_blocks=2, attn_resolutions=[8],
                       emb_dim=32, codebook_size=64, latent_size=64, dim_embd=32, n_head=2, n_layers=2,
                       connect_list=['16', '32']),
    'keep': dict(type='KEEP', img_size=32, nf=32, ch_mult=[1, 1, 1], res_blocks=2, attn_resolutions=[8],
                 codebook_size=64, emb_dim=32, dim_embd=32, n_head=2, n_layers=2, latent_size=64,
                 cft_list=['8', '16', '32'], cfa_list=['8', '16'], cfa_nhead=2, cfa_dim=8, kalman_attn_head_dim=8,
                 num_uncertainty_layers=1, cond=1,
                 flownet_kwargs=dict(feature_channels=32, num_transformer_layers=1, ffn_dim_expansion=2)),
}


def run(*command: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS='1')
    completed = subprocess.run([sys.executable, '-m', *command], env=env, cwd=REPO_ROOT, capture_output=True,
                               text=True)
    if completed.returncode:
        raise SystemExit(f'{" ".join(command[:2])} failed:\n{completed.stderr[-2000:]}')


def restore_outputs(folder: Path) -> list[Path]:
    source = folder / 'two_faces.mp4'
    write_video(source, VideoSpec(192, 120, 12, faces=[FacePath(44, (0.25, 0.5), (0.3, 0.5)),
                                                      FacePath(44, (0.75, 0.5), (0.7, 0.45))]))
    outputs = []
    for model in ('identity', 'codeformer', 'keep'):
        output = folder / f'restored_{model}.mp4'
        network = []
        if model in TINY_NETWORKS:
            options = folder / f'{model}.yml'
            options.write_text(yaml.safe_dump({'network_g': TINY_NETWORKS[model]}))
            network = ['--opt', str(options), '--random-weights', '--seed', '0']
        run('vfsr_restore.cli', str(source), '-o', str(output), '--model', model, *network, '--compare', '--debug',
            '--no-progress', '--min-face-size', '24', '--segment-frames', '5')
        outputs += [output, output.with_name(f'{output.stem}_compare.mp4'),
                    output.with_name(f'{output.stem}_debug.mp4')]
    return outputs


def evaluation_outputs(folder: Path, restored: Path) -> list[Path]:
    """The identity and KEEP outputs scored as a method against the input's frames."""
    import av

    clips = {}
    for name, video in (('gt', folder / 'two_faces.mp4'), ('keep', restored)):
        clip = folder / 'evaluate' / name / 'clip0'
        clip.mkdir(parents=True)
        with av.open(str(video)) as container:
            for index, frame in enumerate(container.decode(video=0)):
                cv2.imwrite(str(clip / f'{index:08d}.png'), frame.to_ndarray(format='bgr24'))
        clips[name] = clip.parent
    output = folder / 'evaluation'
    run('vfsr_eval.evaluate', '--gt', str(clips['gt']), '--method', f'keep={clips["keep"]}', '--metrics',
        'psnr_ssim', '--output', str(output), '--no-progress')
    return sorted(path for path in output.rglob('*') if path.is_file() and path.suffix in ('.md', '.csv', '.json'))


def fingerprints() -> dict[str, str]:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        files = restore_outputs(folder)
        files += evaluation_outputs(folder, folder / 'restored_keep.mp4')
        return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest() for path in files}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument('--write', type=Path, help='record the fingerprints into this JSON file')
    action.add_argument('--check', type=Path, help='compare with the fingerprints of this JSON file')
    args = parser.parse_args()
    current = fingerprints()
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(json.dumps(current, indent=1, sort_keys=True) + '\n')
        print(f'recorded {len(current)} files into {args.write}')
        return 0
    recorded = json.loads(args.check.read_text())
    differing = sorted(name for name in recorded.keys() | current.keys() if recorded.get(name) != current.get(name))
    for name in differing:
        print(f'differs: {name} (recorded {recorded.get(name, "absent")[:12]}, now {current.get(name, "absent")[:12]})')
    print(f'{len(recorded) - len(differing)} of {len(recorded)} files have the same bytes')
    return 1 if differing else 0


if __name__ == '__main__':
    sys.exit(main())
