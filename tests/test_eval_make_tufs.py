"""``datasets_prep.make_tufs`` on a generated video with a moving face (the astronaut's, landmarks known exactly):
a TUFs-layout sequence that ``TUFS145KTestDataset`` reads, with landmarks on the face; resumable; one-line errors."""
import json

import vfsr_compat  # noqa: F401  (before basicsr)

import cv2
import numpy as np
import pytest
from basicsr.utils.registry import DATASET_REGISTRY

import vfsr_data  # noqa: F401
from datasets_prep.make_face_video import FacePath, VideoSpec, write_video
from datasets_prep.make_tufs import GT_HEIGHT, GT_WIDTH, main, make_tufs

FRAMES = 10


@pytest.fixture(scope='module')
def tufs(tmp_path_factory):
    root = tmp_path_factory.mktemp('make_tufs')
    video = root / 'videos' / 'id001' / 'clipA' / '00001.mp4'
    video.parent.mkdir(parents=True)
    true_landmarks = write_video(video, VideoSpec(width=160, height=128, frames=FRAMES, audio_rate=None,
                                                  faces=[FacePath(60, (0.35, 0.5), (0.65, 0.45))]))
    (root / 'videos' / 'notes.txt').write_text('not a video')
    result = make_tufs(root / 'videos', root / 'tufs', progress=False)
    return root, true_landmarks, result


def test_make_tufs_writes_a_sequence_the_tufs_dataset_reads(tufs):
    root, _, result = tufs
    assert result == {'sequences': 1, 'skipped': {}}
    output = root / 'tufs'
    assert (output / 'meta_info.txt').read_text() == 'id001_clipA/00001\n'
    assert sorted((output / 'meta_info_train.txt').read_text().split() +
                  (output / 'meta_info_test.txt').read_text().split()) == ['id001_clipA/00001']
    dataset = DATASET_REGISTRY.get('TUFS145KTestDataset')(dict(
        dataroot_gt=str(output), meta_info_file=str(output / 'meta_info.txt'),
        landmark_file=str(output / 'landmarks.json'), io_backend={'type': 'disk'}))
    sample = dataset[0]
    assert sample['gt'].shape == (7, 3, GT_HEIGHT, GT_WIDTH) and sample['lq'].shape == (7, 3, 16, 12)
    assert sample['landmark_flags'].tolist() == [1.0] * 7


def test_snapshots_are_distinct_frames_with_landmarks_on_the_face(tufs):
    root, true_landmarks, _ = tufs
    output = root / 'tufs'
    snapshots = json.loads((output / 'snapshots.json').read_text())
    landmarks = json.loads((output / 'landmarks.json').read_text())
    frames = [snapshots[f'id001_clipA/00001/im{i}.png']['frame'] for i in range(1, 8)]
    assert frames == sorted(set(frames)) and len(frames) == 7, 'seven different frames, in time order'
    for index, frame in enumerate(frames, start=1):
        x0, y0, x1, y1 = snapshots[f'id001_clipA/00001/im{index}.png']['crop']
        normalised = np.array(landmarks[f'id001_clipA/00001/im{index}.png']).reshape(5, 2)
        # back to frame pixels: continuous [0, 1] crop coordinates -> pixel centres of the video frame
        in_frame = normalised * [x1 - x0, y1 - y0] + [x0, y0] - 0.5
        error = np.linalg.norm(in_frame - true_landmarks[frame][0], axis=1)
        assert error.max() < 4, (frame, error)  # pixels, for a 60-pixel-wide face
        assert ((normalised > 0.1) & (normalised < 0.9)).all(), 'the face is inside the crop'


def test_rerun_resumes_and_bad_input_is_one_line(tufs, tmp_path, monkeypatch, capsys):
    root, _, _ = tufs
    image = root / 'tufs' / 'id001_clipA' / '00001' / 'im1.png'
    before = image.stat().st_mtime_ns
    assert make_tufs(root / 'videos', root / 'tufs', progress=False)['sequences'] == 1
    assert image.stat().st_mtime_ns == before, 'a finished sequence is not redone'
    monkeypatch.setattr('sys.argv', ['make_tufs', '--videos', str(tmp_path / 'absent'), '--output',
                                     str(tmp_path / 'out')])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2 and capsys.readouterr().err.strip().splitlines() == [
        f'python -m datasets_prep.make_tufs: error: {tmp_path / "absent"}: no such folder']
    assert not (tmp_path / 'out').exists()


def test_make_ijbc_builds_the_test_layout_from_frame_folders(tmp_path, monkeypatch, capsys):
    from datasets_prep import make_ijbc
    from datasets_prep.make_face_video import render_frames

    folder = tmp_path / 'frames' / 'subject7' / 'video3'
    folder.mkdir(parents=True)
    spec = VideoSpec(width=160, height=128, frames=FRAMES, audio_rate=None,
                     faces=[FacePath(60, (0.6, 0.45), (0.4, 0.5))])
    for index, (image, _) in enumerate(render_frames(spec)):
        cv2.imwrite(str(folder / f'{index:05d}.png'), image)
    monkeypatch.setattr('sys.argv', ['make_ijbc', '--frames', str(tmp_path / 'frames'), '--output',
                                     str(tmp_path / 'ijbc')])
    make_ijbc.main()
    assert capsys.readouterr().out.strip().endswith('1 sequences in ' + str(tmp_path / 'ijbc'))
    assert (tmp_path / 'ijbc' / 'meta_info_test.txt').read_text() == 'subject7/video3\n'
    assert sorted(path.name for path in (tmp_path / 'ijbc' / 'subject7' / 'video3').glob('im*.png')) == [
        f'im{i}.png' for i in range(1, 8)]
