"""Convert the official TUFs-145K landmark pickle (``tufs145k_lmk_norm.pickle``) to the safe npz format.

Loading a pickle can run arbitrary code: run this only on a file you trust (e.g. the one from the official
release). The result, ``keys`` (N,) str and ``landmarks`` (N, 10) float32, is read by the datasets with
``allow_pickle=False``. The npz is written whole or not at all; an existing one is kept unless ``--overwrite``.

Example::

    python -m datasets_prep.convert_tufs_landmarks --input tufs145k_lmk_norm.pickle \
        --output datasets/TUFS145K/landmarks.npz
"""
import pickle
from pathlib import Path

import numpy as np

from datasets_prep.cli import ScriptParser, run_script
from vfsr_data.tufs_dataset import NUM_LANDMARKS
from vfsr_io.atomic_output import atomic_directory


def convert_landmark_pickle(pickle_path: str | Path, npz_path: str | Path, overwrite: bool = False) -> int:
    """Unpickle ``pickle_path`` (trusted input only) and save it as npz; returns the number of entries."""
    if Path(npz_path).suffix != '.npz':
        raise ValueError(f'the output must end with .npz, got {npz_path}')
    with open(pickle_path, 'rb') as file:
        try:
            entries = pickle.load(file)  # noqa: S301 - trusted official file, see the module docstring
        except (pickle.UnpicklingError, EOFError) as error:
            raise ValueError(f'{pickle_path} is not a readable pickle ({error or "truncated"})') from None
    if not isinstance(entries, dict):
        raise ValueError(f'{pickle_path} holds a {type(entries).__name__}, not the official {{key: landmarks}} dict')
    return save_landmarks_npz(entries, npz_path, overwrite, source=pickle_path)


def save_landmarks_npz(entries: dict, npz_path: str | Path, overwrite: bool = False, source=None) -> int:
    """Save ``{'<clip>/<seq>/imN.png': 10 numbers}`` as the npz the datasets read (``keys`` (N,) str sorted,
    ``landmarks`` (N, 10) float32), whole or not at all; returns the number of entries. ``source`` names the
    input in errors (default: the output)."""
    keys = sorted(entries)
    landmarks = np.zeros((len(keys), 2 * NUM_LANDMARKS), dtype=np.float32)
    for row, key in enumerate(keys):
        value = np.asarray(entries[key], dtype=np.float32).reshape(-1)
        if value.shape != (2 * NUM_LANDMARKS, ):
            raise ValueError(f'{source or npz_path}: entry {key!r} has {value.size} values, '
                             f'expected {2 * NUM_LANDMARKS}')
        landmarks[row] = value
    with atomic_directory(npz_path, overwrite) as partial:
        np.savez(partial, keys=np.array(keys, dtype=str), landmarks=landmarks)
    return len(keys)


def main():
    parser = ScriptParser(__file__, __doc__)
    parser.add_flag('--input', required=True, help='the official landmark pickle (only a file you trust)')
    parser.add_flag('--output', required=True, help='the .npz file to write (e.g. datasets/TUFS145K/landmarks.npz)')
    parser.add_flag('--overwrite', action='store_true', help='replace an existing output')
    parser.add_old_positionals('--input', '--output')
    run_script(parser, lambda args: print(f'{convert_landmark_pickle(args.input, args.output, args.overwrite)} '
                                          f'landmark entries written to {args.output}'))


if __name__ == '__main__':
    main()
