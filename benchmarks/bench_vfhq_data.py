"""KEEP training data throughput: time to build one VFHQClipDataset sample at the official size, per stage.

Synthetic astronaut clips (``datasets_prep/make_synthetic_vfhq.py``) of raw ``--frame-size`` frames are written to a
temporary folder (disk and LMDB); each configuration then builds ``--samples`` samples (8 frames, GT 512, LQ 128,
official degradation) and prints the median seconds per sample, and separately the median time of reading +
aligning the 8 frames and of the degradation alone (with the H.264 round trip on its own). One process, ``--threads``
OpenCV/torch threads; a DataLoader with N workers divides the per-sample time by about N.

    python benchmarks/bench_vfhq_data.py                      # 2 threads, 640x640 raw frames, 8 samples
    python benchmarks/bench_vfhq_data.py --frame-size 720 --samples 16 --threads 1
"""
import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import vfsr_data  # noqa: E402, F401  (registers the datasets; vfsr_compat before basicsr)

# isort: split
from basicsr.utils.registry import DATASET_REGISTRY  # noqa: E402

from benchmarks.harness import timed_runs  # noqa: E402
from datasets_prep.make_clip_lmdb import make_clip_lmdb  # noqa: E402
from datasets_prep.make_synthetic_vfhq import make_synthetic_vfhq  # noqa: E402
from vfsr_data.video_degradation import h264_round_trip, to_uint8  # noqa: E402


def median_seconds(function, repeats: int) -> float:
    """Median wall seconds of ``function(index)`` over ``repeats`` calls after one that warms caches up."""
    return statistics.median(timed_runs(function, repeats)[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frame-size', type=int, default=640, help='raw synthetic frame size (pixels)')
    parser.add_argument('--gt-size', type=int, default=512)
    parser.add_argument('--num-frame', type=int, default=8)
    parser.add_argument('--samples', type=int, default=8)
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)

    with tempfile.TemporaryDirectory() as folder:
        root = make_synthetic_vfhq(Path(folder) / 'vfhq', num_clips=2, num_frames=2 * args.num_frame,
                                   frame_size=args.frame_size)
        make_clip_lmdb(root / 'frames', Path(folder) / 'frames.lmdb')
        common = dict(dataroot_landmarks=str(root / 'landmarks'), gt_size=args.gt_size, scale=4,
                      num_frame=args.num_frame, interval_list=[1, 2], random_reverse=True, seed=0)
        configurations = {
            'disk, align then degrade': dict(dataroot_gt=str(root / 'frames'), io_backend={'type': 'disk'}),
            'lmdb, align then degrade': dict(dataroot_gt=str(Path(folder) / 'frames.lmdb'),
                                             io_backend={'type': 'lmdb'}),
            'disk, degrade then align (official order)': dict(dataroot_gt=str(root / 'frames'),
                                                              io_backend={'type': 'disk'}, degrade_before_align=True),
        }
        print(f'VFHQClipDataset, {args.num_frame} frames, raw {args.frame_size}px -> GT {args.gt_size} / LQ '
              f'{args.gt_size // 4}, {args.threads} threads, median of {args.samples} samples')
        for name, options in configurations.items():
            dataset = DATASET_REGISTRY.get('VFHQClipDataset')({**common, **options})
            seconds = median_seconds(lambda index, dataset=dataset: dataset[index % len(dataset)], args.samples)
            print(f'  {name:45s} {seconds:7.3f} s / sample')

        dataset = DATASET_REGISTRY.get('VFHQClipDataset')({**common, **configurations['disk, align then degrade']})
        stems = dataset.faces.frames.clips['clip000'][:args.num_frame]
        read_align = median_seconds(lambda index: dataset.faces.read('clip000', stems), args.samples)
        gt = dataset.faces.read('clip000', stems)
        degrade = median_seconds(lambda index: dataset.degradation(gt, index), args.samples)
        small = to_uint8(np.stack([cv2.resize(frame, (args.gt_size // 4,) * 2) for frame in gt]))
        codec = median_seconds(lambda index: h264_round_trip(small, 35), args.samples)
        print(f'  read + align {args.num_frame} frames: {read_align:.3f} s; degradation: {degrade:.3f} s '
              f'(of which H.264 round trip {codec:.3f} s)')


if __name__ == '__main__':
    main()
