"""Write a tiny Vimeo90K-layout video dataset (``<clip>/<seq>/im1..im7.png``) cut from scikit-image's astronaut.

Each sequence is 7 crops of the photograph drifting by a few pixels, so a video network has real motion and real
texture to learn from. Used by the CPU trainer tests and as a smoke-test dataset for BasicSR's Vimeo90K datasets::

    python -m datasets_prep.make_tiny_vimeo --out datasets/tiny_vimeo
"""
import argparse
from pathlib import Path

import cv2
import numpy as np

from datasets_prep.astronaut import astronaut_bgr


def make_tiny_vimeo(out_dir, num_clips=4, gt_size=64, scale=4, num_frames=7, seed=0) -> Path:
    """Write ``gt/`` and ``lq/`` (area-downscaled by ``scale``) trees plus ``meta_info.txt``; return ``out_dir``."""
    out_dir = Path(out_dir)
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
    return out_dir


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='datasets/tiny_vimeo')
    parser.add_argument('--num_clips', type=int, default=4)
    parser.add_argument('--gt_size', type=int, default=64)
    parser.add_argument('--scale', type=int, default=4)
    args = parser.parse_args()
    print(make_tiny_vimeo(args.out, args.num_clips, args.gt_size, args.scale))


if __name__ == '__main__':
    main()
