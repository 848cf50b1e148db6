"""``datasets_prep.make_tufs`` on generated videos with a moving face (the astronaut's, landmarks known exactly):
the TUFs-145K release layout, which the shipped option files' datasets read as they are (no --force_yml), with
landmarks on the face; resumable; one-line errors. ``make_ijbc``: the layout the IJB-C option files read."""
import json

import vfsr_compat  # noqa: F401  (before basicsr)

import cv2
import numpy as np
import pytest
from basicsr.data import build_dataset
from conftest import REPO_ROOT

import vfsr_cli
import vfsr_data  # noqa: F401
from datasets_prep.make_tufs import GT_HEIGHT, GT_WIDTH, main, make_tufs
from vfsr_data.tufs_dataset import load_landmark_file
from vfsr_face.synthetic_video import FacePath, VideoSpec, write_video

FRAMES = 10
# Identities whose CRC32 puts them on either side of test_fraction 0.5: one sequence in each split.
TEST_CLIP, TRAIN_CLIP = 'id001_clipA/00001', 'id002_clipB/00001'


@pytest.fixture(scope='module')
def tufs(tmp_path_factory):
    """Two videos (identities id001 and id002) made into ``<root>/datasets/TUFS145K``, where the options read."""
    root = tmp_path_factory.mktemp('make_tufs')
    true_landmarks = {}
    for clip, path in ((TEST_CLIP, FacePath(60, (0.35, 0.5), (0.65, 0.45))),
                       (TRAIN_CLIP, FacePath(60, (0.35, 0.5), (0.65, 0.45)))):
        video = root / 'videos' / f'{clip.replace("_", "/", 1)}.mp4'  # VoxCeleb2: <id>/<video>/<seq>.mp4
        video.parent.mkdir(parents=True)
        true_landmarks[clip] = write_video(video, VideoSpec(width=160, height=128, frames=FRAMES, audio_rate=None,
                                                            faces=[path]))
    (root / 'videos' / 'notes.txt').write_text('not a video')
    result = make_tufs(root / 'videos', root / 'datasets' / 'TUFS145K', test_fraction=0.5, progress=False)
    return root, true_landmarks, result


def build_option_datasets(option_file: str) -> dict:
    """Every dataset of a shipped option file, built by BasicSR as train.py/test.py would, paths unchanged (read
    relative to the working directory); ``{phase: dataset}``."""
    opt = vfsr_cli.load_options(str(REPO_ROOT / option_file))
    return {phase: build_dataset(dict(dataset_opt, phase=phase.split('_')[0], scale=opt['scale']))
            for phase, dataset_opt in opt['datasets'].items()}


def test_make_tufs_writes_the_release_layout_the_option_files_read(tufs, monkeypatch):
    root, _, result = tufs
    assert result == {'sequences': 2, 'skipped': {}}
    output = root / 'datasets' / 'TUFS145K'
    assert (output / 'meta_info_test.txt').read_text() == f'{TEST_CLIP}\n'
    assert (output / 'meta_info_train.txt').read_text() == f'{TRAIN_CLIP}\n'
    assert (output / 'test' / TEST_CLIP / 'im7.png').is_file() and (output / 'train' / TRAIN_CLIP / 'im7.png').is_file()
    monkeypatch.chdir(root)
    for option_file in ('options/train_vidface_tufs.yml', 'options/test_vidface_tufs.yml'):
        for phase, dataset in build_option_datasets(option_file).items():
            assert len(dataset) == 1, (option_file, phase)
            sample = dataset[0]
            assert sample['gt'].shape == (7, 3, GT_HEIGHT, GT_WIDTH) and sample['lq'].shape == (7, 3, 16, 12)
            expected_key = TRAIN_CLIP if phase == 'train' else TEST_CLIP
            assert sample['key'] == expected_key, (option_file, phase)
            if phase == 'train':  # the training option reads landmarks.npz: every snapshot has its landmarks
                assert sample['landmark_flags'].tolist() == [1.0] * 7


def test_snapshots_are_distinct_frames_with_landmarks_on_the_face(tufs):
    root, true_landmarks, _ = tufs
    output = root / 'datasets' / 'TUFS145K'
    snapshots = json.loads((output / 'snapshots.json').read_text())
    landmarks = load_landmark_file(output / 'landmarks.npz')
    assert len(landmarks) == 14
    for clip, split in ((TEST_CLIP, 'test'), (TRAIN_CLIP, 'train')):
        frames = [snapshots[f'{clip}/im{i}.png']['frame'] for i in range(1, 8)]
        assert frames == sorted(set(frames)) and len(frames) == 7, 'seven different frames, in time order'
        for index, frame in enumerate(frames, start=1):
            assert snapshots[f'{clip}/im{index}.png']['split'] == split
            x0, y0, x1, y1 = snapshots[f'{clip}/im{index}.png']['crop']
            normalised = landmarks[f'{clip}/im{index}.png'].reshape(5, 2)
            # back to frame pixels: continuous [0, 1] crop coordinates -> pixel centres of the video frame
            in_frame = normalised * [x1 - x0, y1 - y0] + [x0, y0] - 0.5
            error = np.linalg.norm(in_frame - true_landmarks[clip][frame][0], axis=1)
            assert error.max() < 4, (clip, frame, error)  # pixels, for a 60-pixel-wide face
            assert ((normalised > 0.1) & (normalised < 0.9)).all(), 'the face is inside the crop'


def test_rerun_resumes_and_bad_input_is_one_line(tufs, tmp_path, monkeypatch, capsys):
    root, _, _ = tufs
    output = root / 'datasets' / 'TUFS145K'
    image = output / 'test' / TEST_CLIP / 'im1.png'
    before = image.stat().st_mtime_ns
    # test_fraction 0 would put both in train/: a sequence already written keeps its split
    assert make_tufs(root / 'videos', output, test_fraction=0.0, progress=False)['sequences'] == 2
    assert image.stat().st_mtime_ns == before, 'a finished sequence is not redone'
    assert (output / 'meta_info_test.txt').read_text() == f'{TEST_CLIP}\n'
    monkeypatch.setattr('sys.argv', ['make_tufs', '--videos', str(tmp_path / 'absent'), '--output',
                                     str(tmp_path / 'out')])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2 and capsys.readouterr().err.strip().splitlines() == [
        f'python -m datasets_prep.make_tufs: error: {tmp_path / "absent"}: no such folder']
    assert not (tmp_path / 'out').exists()


def test_make_ijbc_builds_the_layout_the_ijbc_option_files_read(tmp_path, monkeypatch, capsys):
    from datasets_prep import make_ijbc
    from vfsr_face.synthetic_video import render_frames

    folder = tmp_path / 'frames' / 'subject7' / 'video3'
    folder.mkdir(parents=True)
    spec = VideoSpec(width=160, height=128, frames=FRAMES, audio_rate=None,
                     faces=[FacePath(60, (0.6, 0.45), (0.4, 0.5))])
    for index, (image, _) in enumerate(render_frames(spec)):
        cv2.imwrite(str(folder / f'{index:05d}.png'), image)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr('sys.argv', ['make_ijbc', '--frames', 'frames', '--output', 'datasets/IJBC'])
    make_ijbc.main()
    assert capsys.readouterr().out.strip().endswith('1 sequences in datasets/IJBC')
    assert (tmp_path / 'datasets' / 'IJBC' / 'meta_info_test.txt').read_text() == 'subject7/video3\n'
    assert not (tmp_path / 'datasets' / 'IJBC' / 'meta_info_train.txt').read_text()
    for option_file in ('options/test_vidface_ijbc.yml', 'options/test_bicubic_ijbc.yml'):
        (dataset, ) = build_option_datasets(option_file).values()
        assert len(dataset) == 1 and dataset[0]['key'] == 'subject7/video3'
        assert dataset[0]['gt'].shape == (7, 3, GT_HEIGHT, GT_WIDTH)
