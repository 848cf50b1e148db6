"""Pack clip folders (``<input>/<clip>/<frame>.png``, or a flat image folder) into one LMDB for fast training reads.

Keys are ``<clip>/<frame stem>`` (just ``<frame stem>`` for a flat folder), values PNG bytes, and ``meta_info.txt``
lists them, BasicSR's LMDB layout (written with ``basicsr.utils.lmdb_util.LmdbMaker``), so ``io_backend:
{type: lmdb}`` with ``dataroot_gt: <output>`` reads it. Every frame is decoded before it is stored: a corrupt frame
stops the run with an error naming the clip and frame. The LMDB is built under a hidden partial name and renamed
when complete, so an interrupted run never leaves a half-written LMDB at ``<output>`` and simply starts again; an
existing LMDB is kept unless ``--overwrite`` (then replaced once the new one is complete).

Example (the aligned VFHQ frames that options/train_keep_vfhq_stage*.yml read, see docs/data.md)::

    python -m datasets_prep.make_clip_lmdb --input datasets/VFHQ/frames --output datasets/VFHQ/frames.lmdb
"""
from pathlib import Path

import vfsr_compat  # noqa: F401  (must run before basicsr is imported)

# isort: split
import cv2
from basicsr.utils.lmdb_util import LmdbMaker
from tqdm import tqdm

from datasets_prep.cli import ScriptParser, run_script
from vfsr_data.clip_frames import ClipFrames
from vfsr_io.atomic_output import atomic_directory


def make_clip_lmdb(input_root: str | Path, output: str | Path, compress_level: int = 1, overwrite: bool = False,
                   commit_every: int = 5000) -> Path:
    """Write the LMDB at ``output`` (which must end with ``.lmdb``) from the clip folders under ``input_root``."""
    output = Path(output)
    if output.suffix != '.lmdb':
        raise ValueError(f'the LMDB path must end with .lmdb, got {output}')
    frames = ClipFrames(input_root)
    items = [(clip, stem) for clip, stems in frames.clips.items() for stem in stems]
    if not items:
        raise ValueError(f'no frames found under {input_root}')
    with atomic_directory(output, overwrite) as partial:
        maker = LmdbMaker(str(partial), batch=commit_every, compress_level=compress_level)
        try:
            for clip, stem in tqdm(items, desc=f'LMDB {output.name}', unit='frame'):
                image = frames.read(clip, stem)
                encoded = cv2.imencode('.png', image, [cv2.IMWRITE_PNG_COMPRESSION, compress_level])[1]
                maker.put(encoded.tobytes(), f'{clip}/{stem}' if clip else stem, image.shape)
        finally:
            maker.close()
    return output


def main():
    parser = ScriptParser(__file__, __doc__)
    parser.add_flag('--input', required=True, help='folder of clip folders (or of images)')
    parser.add_flag('--output', required=True, help='the LMDB folder to write; its name must end with .lmdb')
    parser.add_flag('--compress-level', type=int, default=1, old=('--compress_level', ),
                    help='PNG compression level 0-9 (default 1)')
    parser.add_flag('--overwrite', action='store_true', help='replace an existing LMDB once the new one is complete')
    run_script(parser, lambda args: print(make_clip_lmdb(args.input, args.output, args.compress_level,
                                                         args.overwrite)))


if __name__ == '__main__':
    main()
