"""Convert the official TUFs-145K landmark pickle (``tufs145k_lmk_norm.pickle``) to the safe npz format.

Loading a pickle can run arbitrary code: run this only on a file you trust (e.g. the one from the official
release). The result, ``keys`` (N,) str and ``landmarks`` (N, 10) float32, is read by the datasets with
``allow_pickle=False``. Usage::

    python -m datasets_prep.convert_tufs_landmarks tufs145k_lmk_norm.pickle datasets/TUFS145K/landmarks.npz
"""
import argparse
import pickle
from pathlib import Path

import numpy as np

from vfsr_data.tufs_dataset import NUM_LANDMARKS


def convert_landmark_pickle(pickle_path: str | Path, npz_path: str | Path) -> int:
    """Unpickle ``pickle_path`` (trusted input only) and save it as npz; returns the number of entries."""
    with open(pickle_path, 'rb') as file:
        entries = pickle.load(file)  # noqa: S301 - trusted official file, see the module docstring
    keys = sorted(entries)
    landmarks = np.zeros((len(keys), 2 * NUM_LANDMARKS), dtype=np.float32)
    for row, key in enumerate(keys):
        value = np.asarray(entries[key], dtype=np.float32).reshape(-1)
        if value.shape != (2 * NUM_LANDMARKS, ):
            raise ValueError(f'{pickle_path}: entry {key!r} has {value.size} values, expected {2 * NUM_LANDMARKS}')
        landmarks[row] = value
    np.savez(npz_path, keys=np.array(keys, dtype=str), landmarks=landmarks)
    return len(keys)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('pickle_path', help='official landmark pickle (trusted)')
    parser.add_argument('npz_path', help='output .npz')
    args = parser.parse_args()
    print(f'{convert_landmark_pickle(args.pickle_path, args.npz_path)} landmark entries written to {args.npz_path}')


if __name__ == '__main__':
    main()
