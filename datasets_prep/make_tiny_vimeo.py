"""Write a tiny Vimeo90K-layout video dataset (``<clip>/<seq>/im1..im7.png``) cut from scikit-image's astronaut.

Each sequence is 7 crops of the photograph drifting by a few pixels, so a video network has real motion and real
texture to learn from. Used by the CPU trainer tests and as a smoke-test dataset for BasicSR's Vimeo90K datasets.
Layout: ``<output>/gt/<clip>/<seq>/im1..im7.png``, ``<output>/lq/...`` (area-downscaled by ``--scale``) and
``<output>/meta_info.txt``. The output is written whole or not at all; an existing one is kept unless
``--overwrite``.

Example (what the README's one-minute check, tests/options/edvr_tiny_cpu.yml, reads)::

    python -m datasets_prep.make_tiny_vimeo --output datasets/tiny_vimeo
"""
from pathlib import Path

import cv2
import numpy as np

from datasets_prep.cli import ScriptParser, run_script
from vfsr_face.astronaut import astronaut_bgr
from vfsr_io.atomic_output import atomic_directory


def make_tiny_vimeo(output, num_clips=4, gt_size=64, scale=4, num_frames=7, seed=0, overwrite=False) -> Path:
    """Write ``gt/`` and ``lq/`` (area-downscaled by ``scale``) trees plus ``meta_info.txt`` at ``output``
    (atomically; an existing output is replaced only with ``overwrite``); return ``output``."""
    with atomic_directory(output, overwrite) as partial:
        write_tiny_vimeo(partial, num_clips, gt_size, scale, num_frames, seed)
    return Path(output)


def write_tiny_vimeo(out_dir: Path, num_clips: int, gt_size: int, scale: int, num_frames: int, seed: int) -> None:
    """The files of :func:`make_tiny_vimeo`, written under ``out_dir``."""
    rng = np.random.default_rng(seed)
    photo = astronaut_bgr()
    keys = []
    for clip in range(num_clips):
        key = f'{clip + 1:05d}/0001'
        top, left = rng.integers(0, photo.shape[0] - gt_size - 4 * num_frames, size=2)
        step = rng.integers(-2, 3, size=2)
        for frame in range(num_frames):
            y, x = top + 2 * num_frames + frame * step[0], left + 2 * num_frames + frame * step[1]
            gt = photo[y:y + gt_size, x:x + gt_size]
            lq = cv2.resize(gt, (gt_size // scale, gt_size // scale), interpolation=cv2.INTER_AREA)
            for root, image in (('gt', gt), ('lq', lq)):
                (out_dir / root / key).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(out_dir / root / key / f'im{frame + 1}.png'), image)
        keys.append(key)
    (out_dir / 'meta_info.txt').write_text(''.join(f'{key} {num_frames} ({gt_size},{gt_size},3)\n' for key in keys))


def main():
    parser = ScriptParser(__file__, __doc__)
    parser.add_flag('--output', default='datasets/tiny_vimeo', old=('--out', ),
                    help='the dataset folder to write (default datasets/tiny_vimeo)')
    parser.add_flag('--num-clips', type=int, default=4, old=('--num_clips', ), help='number of clips (default 4)')
    parser.add_flag('--gt-size', type=int, default=64, old=('--gt_size', ),
                    help='GT crop width and height in pixels (default 64)')
    parser.add_flag('--scale', type=int, default=4, help='LQ down-scaling factor (default 4)')
    parser.add_flag('--seed', type=int, default=0, help='random seed of the crops and their drift (default 0)')
    parser.add_flag('--overwrite', action='store_true', help='replace an existing output once the new one is done')
    run_script(parser, lambda args: print(make_tiny_vimeo(args.output, args.num_clips, args.gt_size, args.scale,
                                                          seed=args.seed, overwrite=args.overwrite)))


if __name__ == '__main__':
    main()
