"""vfsr-restore's encoder gives the same bytes for the same frames in any process: x264's and x265's thread layouts
are pinned, so neither the machine's cores, the CPU affinity, nor an earlier ``import torch`` changes the file."""
import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from vfsr_face.synthetic_video import FacePath, VideoSpec, write_video

# Encode every frame of an input through SegmentEncoder in a process limited to the given CPUs; print the file's hash.
ENCODE = '''
import hashlib, os, sys
cpus, with_torch, codec, crf, preset, source, target = sys.argv[1:]
os.sched_setaffinity(0, {int(cpu) for cpu in cpus.split(',')})
if with_torch == 'torch':
    import torch  # noqa: F401
from vfsr_restore.media import EncoderSettings, SegmentEncoder, probe, read_frames
info = probe(source)
with SegmentEncoder(target, info, info.width, info.height, EncoderSettings(codec, int(crf), preset)) as encoder:
    for frame in read_frames(info):
        encoder.write(frame.image, frame.pts, frame.duration)
print(hashlib.sha256(open(target, 'rb').read()).hexdigest())
'''

CPUS = sorted(os.sched_getaffinity(0))


@pytest.fixture(scope='module')
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp('encoding') / 'face.mp4'
    write_video(path, VideoSpec(320, 240, 12, faces=[FacePath(80)], audio_rate=None))
    return path


def encoded_hash(source, target, cpus, with_torch, codec, crf, preset, threads):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS=str(threads))
    result = subprocess.run([sys.executable, '-c', ENCODE, ','.join(map(str, cpus)), with_torch, codec, str(crf),
                             preset, str(source), str(target)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split()[-1]


@pytest.mark.skipif(len(CPUS) < 2, reason='needs two CPUs to vary the affinity')
@pytest.mark.parametrize('codec, crf, preset', [('libx264', 17, 'medium'), ('libx264', 0, 'ultrafast'),
                                                ('libx264', 30, 'slow'), ('libx265', 28, 'fast')])
def test_same_frames_give_the_same_bytes_in_any_process(source, tmp_path, codec, crf, preset):
    hashes = {encoded_hash(source, tmp_path / f'{index}.mp4', cpus, with_torch, codec, crf, preset, threads)
              for index, (cpus, with_torch, threads) in enumerate([(CPUS[:1], 'plain', 1), (CPUS[:2], 'torch', 2),
                                                                    (CPUS[:2], 'plain', 1), (CPUS[:1], 'torch', 2)])}
    assert len(hashes) == 1
