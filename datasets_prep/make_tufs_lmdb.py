"""Pack a TUFs-format clip folder (``<root>/<clip>/<seq>/imN.png``) into an LMDB that ``TUFS145KDataset`` reads.

Keys are ``<clip>/<seq>/imN`` (basicsr's Vimeo90K convention); the LMDB's ``meta_info.txt`` lists every frame, so
the datasets can take their clip list from it. The LMDB is built under a hidden partial name and renamed when complete
(``datasets_prep.atomic_output``), so an interrupted run never leaves a half-written LMDB. Usage::

    python -m datasets_prep.make_tufs_lmdb datasets/TUFS145K/GT datasets/TUFS145K/GT.lmdb
"""
import argparse
from pathlib import Path

import vfsr_compat  # noqa: F401  (must run before basicsr is imported)

# isort: split
from basicsr.utils.lmdb_util import make_lmdb_from_imgs

from datasets_prep.atomic_output import atomic_directory


def make_tufs_lmdb(clip_root: str | Path, lmdb_path: str | Path) -> int:
    """Write every ``imN.png`` under ``clip_root/<clip>/<seq>/`` into ``lmdb_path``; returns the frame count."""
    clip_root = Path(clip_root)
    frames = sorted(path.relative_to(clip_root).as_posix() for path in clip_root.glob('*/*/im*.png'))
    if not frames:
        raise FileNotFoundError(f'no <clip>/<seq>/imN.png frames under {clip_root}')
    keys = [frame.removesuffix('.png') for frame in frames]
    with atomic_directory(lmdb_path) as partial:
        make_lmdb_from_imgs(str(clip_root), str(partial), frames, keys)
    return len(frames)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('clip_root', help='folder with <clip>/<seq>/imN.png')
    parser.add_argument('lmdb_path', help='output folder, must end with .lmdb and not exist yet')
    args = parser.parse_args()
    make_tufs_lmdb(args.clip_root, args.lmdb_path)


if __name__ == '__main__':
    main()
