"""Pack a TUFs-format clip folder (``<root>/<clip>/<seq>/imN.png``) into an LMDB that ``TUFS145KDataset`` reads.

Keys are ``<clip>/<seq>/imN`` (basicsr's Vimeo90K convention); the LMDB's ``meta_info.txt`` lists every frame, so
the datasets can take their clip list from it. The LMDB is built under a hidden partial name and renamed when complete
(``vfsr_io.atomic_output``), so an interrupted run never leaves a half-written LMDB and simply starts again.
An existing LMDB is kept unless ``--overwrite`` (then replaced once the new one is complete). Train on it with
``io_backend: {type: lmdb}`` and ``dataroot_gt: <output>``.

Example::

    python -m datasets_prep.make_tufs_lmdb --input datasets/TUFS145K/train --output datasets/TUFS145K/train.lmdb
"""
from pathlib import Path

import vfsr_compat  # noqa: F401  (must run before basicsr is imported)

# isort: split
from basicsr.utils.lmdb_util import make_lmdb_from_imgs

from datasets_prep.cli import ScriptParser, run_script
from vfsr_io.atomic_output import atomic_directory


def make_tufs_lmdb(clip_root: str | Path, lmdb_path: str | Path, overwrite: bool = False) -> int:
    """Write every ``imN.png`` under ``clip_root/<clip>/<seq>/`` into ``lmdb_path``; returns the frame count."""
    clip_root, lmdb_path = Path(clip_root), Path(lmdb_path)
    if lmdb_path.suffix != '.lmdb':
        raise ValueError(f'the LMDB path must end with .lmdb, got {lmdb_path}')
    if not clip_root.is_dir():
        raise FileNotFoundError(f'{clip_root} is not a folder (expected <clip>/<seq>/im1.png ... im7.png under it)')
    frames = sorted(path.relative_to(clip_root).as_posix() for path in clip_root.glob('*/*/im*.png'))
    if not frames:
        raise FileNotFoundError(f'no <clip>/<seq>/imN.png frames under {clip_root}')
    keys = [frame.removesuffix('.png') for frame in frames]
    with atomic_directory(lmdb_path, overwrite) as partial:
        make_lmdb_from_imgs(str(clip_root), str(partial), frames, keys)
    return len(frames)


def main():
    parser = ScriptParser(__file__, __doc__)
    parser.add_flag('--input', required=True, help='folder with <clip>/<seq>/imN.png (e.g. datasets/TUFS145K/train)')
    parser.add_flag('--output', required=True, help='the LMDB folder to write; its name must end with .lmdb')
    parser.add_flag('--overwrite', action='store_true', help='replace an existing LMDB once the new one is complete')
    parser.add_old_positionals('--input', '--output')
    run_script(parser, lambda args: print(f'{make_tufs_lmdb(args.input, args.output, args.overwrite)} frames written '
                                          f'to {args.output}'))


if __name__ == '__main__':
    main()
