"""KEEP's VFHQ data: clip / image / test datasets on disk and real LMDB, alignment, bad input, atomic prep outputs."""
import os
import shutil
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
import torch

import vfsr_data  # noqa: F401  (registers the datasets; imports vfsr_compat before basicsr)

# isort: split
from basicsr.data import build_dataloader, build_dataset
from basicsr.utils.registry import DATASET_REGISTRY
from conftest import REPO_ROOT

from datasets_prep.align_vfhq_clips import align_clips
from datasets_prep.make_clip_lmdb import make_clip_lmdb
from datasets_prep.make_degraded_testset import make_degraded_testset
from datasets_prep.make_synthetic_vfhq import make_synthetic_vfhq
from vfsr_data.clip_frames import BadClipError
from vfsr_data.face_landmarks import (
    align_face,
    read_landmark_file,
    template_for_size,
    transform_points,
    write_landmark_file,
)
from vfsr_face.astronaut import ASTRONAUT_LANDMARKS, astronaut_bgr

GT_SIZE, SCALE, NUM_FRAME = 64, 4, 4


@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    """Three raw 96x96 clips of 10 frames with landmarks, their aligned 64x64 version and LMDBs of both."""
    root = tmp_path_factory.mktemp('vfhq')
    make_synthetic_vfhq(root / 'raw', num_clips=3, num_frames=10, frame_size=96, seed=0)
    align_clips(root / 'raw' / 'frames', root / 'raw' / 'landmarks', root / 'aligned', GT_SIZE,
                landmarks_out=root / 'aligned_landmarks')
    make_clip_lmdb(root / 'raw' / 'frames', root / 'raw.lmdb')
    make_clip_lmdb(root / 'aligned', root / 'aligned.lmdb')
    return root


def clip_options(root, **overrides) -> dict:
    options = dict(type='VFHQClipDataset', name='vfhq', phase='train', dataroot_gt=str(root / 'raw' / 'frames'),
                   dataroot_landmarks=str(root / 'raw' / 'landmarks'), io_backend={'type': 'disk'}, gt_size=GT_SIZE,
                   scale=SCALE, num_frame=NUM_FRAME, interval_list=[1, 2, 3], random_reverse=True, seed=0)
    options.update(overrides)
    return options


def copy_raw(synthetic, tmp_path):
    shutil.copytree(synthetic / 'raw', tmp_path / 'raw')
    return tmp_path


def test_clip_samples_have_right_shapes_and_range(synthetic):
    dataset = build_dataset(clip_options(synthetic))
    assert len(dataset) == 30  # one window per frame, as the official dataset
    sample = dataset[5]
    assert sample['lq'].shape == (NUM_FRAME, 3, GT_SIZE // SCALE, GT_SIZE // SCALE)
    assert sample['gt'].shape == (NUM_FRAME, 3, GT_SIZE, GT_SIZE)
    assert sample['lq'].dtype == sample['gt'].dtype == torch.float32
    for tensor in (sample['lq'], sample['gt']):
        assert 0 <= tensor.min() and tensor.max() <= 1 and tensor.std() > 0.05
    assert sample['key'].startswith('clip000/')
    normalized = DATASET_REGISTRY.get('VFHQClipDataset')(clip_options(synthetic, normalize=True))[5]
    torch.testing.assert_close(normalized['gt'], sample['gt'] * 2 - 1)


def test_lmdb_backend_gives_the_disk_samples(synthetic):
    disk = build_dataset(clip_options(synthetic))
    lmdb = build_dataset(clip_options(synthetic, dataroot_gt=str(synthetic / 'raw.lmdb'), io_backend={'type': 'lmdb'}))
    aligned_lmdb = build_dataset(clip_options(synthetic, dataroot_gt=str(synthetic / 'aligned.lmdb'),
                                              io_backend={'type': 'lmdb'}, dataroot_landmarks=None))
    for index in (0, 17, 29):
        expected = disk[index]
        for dataset in (lmdb, aligned_lmdb):
            sample = dataset[index]
            assert sample['key'] == expected['key']
            torch.testing.assert_close(sample['gt'], expected['gt'], atol=1 / 255 + 1e-6, rtol=0)
        torch.testing.assert_close(lmdb[index]['lq'], expected['lq'], atol=0, rtol=0)


def test_seeded_samples_repeat_and_windows_follow_the_options(synthetic):
    dataset = build_dataset(clip_options(synthetic, random_reverse=False, interval_list=[3]))
    first, again = dataset[12], dataset[12]
    assert torch.equal(first['lq'], again['lq']) and torch.equal(first['gt'], again['gt'])
    assert not torch.equal(dataset[13]['lq'], first['lq'])
    rng = np.random.default_rng(0)
    windows = [dataset.window('clip', 10, centre, rng) for centre in range(10)]
    assert all(np.diff(window).tolist() == [3, 3, 3] and 0 <= window[0] and window[-1] < 10 for window in windows)
    reversing = build_dataset(clip_options(synthetic, random_reverse=True, interval_list=[1]))
    directions = {np.sign(np.diff(reversing.window('clip', 10, 5, rng))).sum() for _ in range(40)}
    assert directions == {3, -3}


def test_unseeded_samples_follow_torch_seeding_and_differ_between_workers(synthetic):
    dataset = build_dataset(clip_options(synthetic, seed=None, dataroot_gt=str(synthetic / 'raw.lmdb'),
                                         io_backend={'type': 'lmdb'}))
    torch.manual_seed(3)
    first = dataset[7]
    torch.manual_seed(3)
    again, fresh = dataset[7], dataset[7]
    assert torch.equal(first['lq'], again['lq']) and not torch.equal(again['lq'], fresh['lq'])
    # Two DataLoader workers (forked, each opening its own LMDB handle) degrade the same window differently.
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, [7, 7]), batch_size=1, num_workers=2)
    one, other = [batch['lq'] for batch in loader]
    assert not torch.equal(one, other)
    assert dataset[7]['gt'].shape == (NUM_FRAME, 3, GT_SIZE, GT_SIZE)  # the parent's LMDB handle still works


def test_alignment_puts_landmarks_on_the_template(synthetic):
    aligned_points = read_landmark_file(synthetic / 'aligned_landmarks' / 'clip001.txt')
    assert len(aligned_points) == 10
    # A similarity cannot fit the astronaut's broad smile exactly onto the template: near it, and the same in every
    # frame, although the raw frames move.
    aligned = np.stack(list(aligned_points.values()))
    assert np.abs(aligned - template_for_size(GT_SIZE)).max() < 0.05 * GT_SIZE
    assert np.abs(aligned - aligned[0]).max() < 0.05
    raw = np.stack(list(read_landmark_file(synthetic / 'raw' / 'landmarks' / 'clip001.txt').values()))
    assert np.abs(raw - raw[0]).max() > 2
    # Every aligned frame shows the astronaut's face where aligning the original photo puts it.
    photo = astronaut_bgr()
    reference = cv2.resize(align_face(photo, ASTRONAUT_LANDMARKS, 4 * GT_SIZE), (GT_SIZE, GT_SIZE),
                           interpolation=cv2.INTER_AREA).astype(np.float32)
    centre = slice(GT_SIZE // 4, 3 * GT_SIZE // 4)
    sample = build_dataset(clip_options(synthetic))[11]['gt'].numpy()
    for frame in sample:
        face = frame.transpose(1, 2, 0)[:, :, ::-1] * 255
        difference = face[centre, centre] - reference[centre, centre]
        assert np.abs(difference - difference.mean()).mean() < 12  # brightness drift aside
    raw = cv2.imread(str(synthetic / 'raw' / 'frames' / 'clip001' / '00000000.png')).astype(np.float32)
    assert np.abs(cv2.resize(raw, (GT_SIZE, GT_SIZE))[centre, centre] - reference[centre, centre]).mean() > 20


@pytest.mark.parametrize('degrade_before_align', [False, True])
def test_lq_lines_up_with_gt_in_both_degradation_orders(synthetic, degrade_before_align):
    """With a light degradation the LQ clip is the GT clip downscaled, to the sub-pixel, in either order."""
    light = {'blur_kernel_size': 3, 'blur_x_sigma': [0.1, 0.1], 'blur_y_sigma': [0.1, 0.1], 'noise_range': [0, 0],
             'crf_range': [5, 5], 'resize_modes': ['area'], 'resize_prob': [1]}
    sample = build_dataset(clip_options(synthetic, degradation=light, degrade_before_align=degrade_before_align))[3]
    gt, lq = sample['gt'].numpy().transpose(0, 2, 3, 1), sample['lq'].numpy().transpose(0, 2, 3, 1)
    expected = np.stack([cv2.resize(frame, lq.shape[2:0:-1], interpolation=cv2.INTER_AREA) for frame in gt])

    def psnr_after_shift(shift):
        translation = np.float32([[1, 0, shift], [0, 1, shift]])
        shifted = [cv2.warpAffine(frame, translation, frame.shape[1::-1]) for frame in lq]
        inner = (slice(None), slice(3, -3), slice(3, -3))
        return 10 * np.log10(1 / np.mean((np.stack(shifted)[inner] - expected[inner]) ** 2))

    aligned = psnr_after_shift(0)
    assert aligned > 25 and aligned > max(psnr_after_shift(-0.5), psnr_after_shift(0.5)) + 3


def test_vfhq_annotation_files_align_like_landmark_files(synthetic, tmp_path):
    """A VFHQ-format annotation (landmarks in source-video pixels, CROP origin) gives the same aligned clip."""
    crop_origin = np.array([100.0, 40.0], dtype=np.float32)
    landmarks = read_landmark_file(synthetic / 'raw' / 'landmarks' / 'clip002.txt')
    lines = ['Video ID:\tsynthetic', 'H:\t720', 'W:\t1280', 'FPS:\t25', '',
             'FRAME INDEX X0 Y0 W H [Landmarks (5 Points)]', '']
    for name, points in landmarks.items():
        shifted = (points + crop_origin).reshape(-1)
        lines.append(f'{int(name[:-4])} 0 110.0 50.0 60.0 70.0 ' + ' '.join(f'{value:.4f}' for value in shifted))
    lines.append('CROP:\t100 40 196 136')
    (tmp_path / 'annotations').mkdir()
    (tmp_path / 'annotations' / 'clip002.txt').write_text('\n'.join(lines) + '\n')
    (tmp_path / 'frames').mkdir()
    shutil.copytree(synthetic / 'raw' / 'frames' / 'clip002', tmp_path / 'frames' / 'clip002')
    assert align_clips(tmp_path / 'frames', tmp_path / 'annotations', tmp_path / 'out', GT_SIZE,
                       subtract_crop=True) == ['clip002']
    for name in landmarks:
        ours = cv2.imread(str(tmp_path / 'out' / 'clip002' / name)).astype(int)
        assert np.abs(ours - cv2.imread(str(synthetic / 'aligned' / 'clip002' / name))).max() <= 1


def test_image_dataset_for_the_vqgan_stage(synthetic, tmp_path):
    dataset = build_dataset(dict(type='VFHQImageDataset', name='faces', phase='train',
                                 dataroot_gt=str(synthetic / 'aligned'), io_backend={'type': 'disk'},
                                 gt_size=GT_SIZE, use_flip=True, seed=0))
    assert len(dataset) == 30
    sample = dataset[4]
    assert sample['gt'].shape == (3, GT_SIZE, GT_SIZE) and sample['lq'] is sample['gt']
    assert sample['key'] == 'clip000/00000004' and 0 <= sample['gt'].min() and sample['gt'].max() <= 1
    flat = tmp_path / 'flat'
    shutil.copytree(synthetic / 'aligned' / 'clip000', flat)
    flat_dataset = build_dataset(dict(type='VFHQImageDataset', name='flat', phase='train', dataroot_gt=str(flat),
                                      gt_size=GT_SIZE, use_flip=False))
    assert len(flat_dataset) == 10 and flat_dataset[0]['key'] == '00000000'


def test_test_dataset_reads_whole_degraded_clips(synthetic, tmp_path):
    record = make_degraded_testset(synthetic / 'aligned', tmp_path / 'lq', seed=1)
    assert set(record['clips']) == {'clip000', 'clip001', 'clip002'}
    again = make_degraded_testset(synthetic / 'aligned', tmp_path / 'lq_again', seed=1)
    assert again['clips'] == record['clips']
    first = cv2.imread(str(tmp_path / 'lq' / 'clip001' / '00000003.png'))
    assert first.shape == (GT_SIZE // SCALE, GT_SIZE // SCALE, 3)
    assert np.array_equal(first, cv2.imread(str(tmp_path / 'lq_again' / 'clip001' / '00000003.png')))

    options = dict(type='VideoClipTestDataset', name='val', phase='val', dataroot_lq=str(tmp_path / 'lq'),
                   dataroot_gt=str(synthetic / 'aligned'), io_backend={'type': 'disk'}, scale=SCALE)
    dataset = build_dataset(options)
    assert len(dataset) == 3 and len(dataset.data_info['folder']) == 30
    item = dataset[1]
    assert item['folder'] == item['key'] == 'clip001'
    assert item['lq'].shape == (10, 3, 16, 16) and item['gt'].shape == (10, 3, GT_SIZE, GT_SIZE)
    assert torch.equal(item['lq'][3], torch.from_numpy(first[:, :, ::-1] / 255).permute(2, 0, 1).float())
    inference = build_dataset({**options, 'dataroot_gt': None, 'max_frames': 6})
    assert 'gt' not in inference[0] and inference[0]['lq'].shape[0] == 6
    os.remove(tmp_path / 'lq' / 'clip002' / '00000009.png')
    with pytest.raises(BadClipError, match='clip002'):
        build_dataset(options)


def test_test_dataset_aligns_unaligned_clips_by_landmarks(synthetic, tmp_path):
    """The official VFHQ-Test layout: unaligned GT and LQ clips plus landmarks in GT pixels, aligned when read."""
    lq_root = tmp_path / 'lq'
    for clip in ('clip000', 'clip001', 'clip002'):
        (lq_root / clip).mkdir(parents=True)
        for path in sorted((synthetic / 'raw' / 'frames' / clip).iterdir()):
            raw = cv2.imread(str(path))
            cv2.imwrite(str(lq_root / clip / path.name), cv2.resize(raw, (24, 24), interpolation=cv2.INTER_AREA))
    dataset = build_dataset(dict(type='VideoClipTestDataset', name='val', phase='val', dataroot_lq=str(lq_root),
                                 dataroot_gt=str(synthetic / 'raw' / 'frames'), gt_size=GT_SIZE, scale=SCALE,
                                 dataroot_landmarks=str(synthetic / 'raw' / 'landmarks')))
    item = dataset[2]
    assert item['lq'].shape == (10, 3, 16, 16) and item['gt'].shape == (10, 3, GT_SIZE, GT_SIZE)
    aligned = np.stack([cv2.imread(str(synthetic / 'aligned' / 'clip002' / f'{index:08d}.png'))[:, :, ::-1]
                        for index in range(10)]) / 255
    np.testing.assert_allclose(item['gt'].numpy().transpose(0, 2, 3, 1), aligned, atol=1 / 255 + 1e-6)
    expected_lq = np.stack([cv2.resize(frame, (16, 16), interpolation=cv2.INTER_AREA) for frame in aligned])
    inner = (slice(None), slice(2, -2), slice(2, -2))
    error = item['lq'].numpy().transpose(0, 2, 3, 1)[inner] - expected_lq[inner]
    assert 10 * np.log10(1 / np.mean(error**2)) > 25


def test_basicsr_dataloader_batches_clips(synthetic):
    options = clip_options(synthetic, num_worker_per_gpu=0, batch_size_per_gpu=2, dataset_enlarge_ratio=1,
                           use_shuffle=True)
    loader = build_dataloader(build_dataset(options), options, num_gpu=0, dist=False, sampler=None, seed=0)
    batch = next(iter(loader))
    assert batch['lq'].shape == (2, NUM_FRAME, 3, 16, 16) and batch['gt'].shape == (2, NUM_FRAME, 3, 64, 64)


def test_short_clip_and_missing_landmarks_are_named(synthetic, tmp_path):
    root = copy_raw(synthetic, tmp_path)
    for name in sorted(os.listdir(root / 'raw' / 'frames' / 'clip001'))[3:]:
        os.remove(root / 'raw' / 'frames' / 'clip001' / name)
    with pytest.raises(BadClipError, match="clip 'clip001'.*3 frames"):
        build_dataset(clip_options(root))
    skipping = build_dataset(clip_options(root, skip_bad_clips=True))
    assert skipping.clips == ['clip000', 'clip002']
    os.remove(root / 'raw' / 'landmarks' / 'clip002.txt')
    with pytest.raises(BadClipError, match="clip 'clip002'.*landmark file"):
        build_dataset(clip_options(root, num_frame=2, interval_list=[1]))


def test_bad_frames_are_named_or_skipped(synthetic, tmp_path):
    root = copy_raw(synthetic, tmp_path)
    clip = root / 'raw' / 'frames' / 'clip000'
    (clip / '00000002.png').write_bytes(b'\x89PNG\r\n\x1a\n not really an image')
    cv2.imwrite(str(root / 'raw' / 'frames' / 'clip001' / '00000004.png'), np.zeros((80, 96, 3), np.uint8))
    landmarks = read_landmark_file(root / 'raw' / 'landmarks' / 'clip002.txt')
    del landmarks['00000005.png']
    write_landmark_file(root / 'raw' / 'landmarks' / 'clip002.txt', landmarks)
    dataset = build_dataset(clip_options(root, num_frame=10, interval_list=[1]))
    with pytest.raises(BadClipError, match="cannot decode frame '00000002' of clip 'clip000'"):
        dataset[0]
    with pytest.raises(BadClipError, match="frame '00000004' of clip 'clip001'.*96x80"):
        dataset[10]
    with pytest.raises(BadClipError, match="frame '00000005' of clip 'clip002'.* no landmarks"):
        dataset[20]
    unaligned = build_dataset(clip_options(synthetic, dataroot_landmarks=None))
    with pytest.raises(BadClipError, match="clip 'clip000'.*expected aligned 64x64"):
        unaligned[0]
    skipping = build_dataset(clip_options(root, num_frame=10, interval_list=[1], skip_bad_clips=True))
    with pytest.raises(BadClipError, match='bad clips in a row'):
        skipping[0]  # every clip is broken: a clear error, never a wrong sample
    shutil.copytree(synthetic / 'raw' / 'frames' / 'clip000', root / 'raw' / 'frames' / 'clip003')
    shutil.copy(synthetic / 'raw' / 'landmarks' / 'clip000.txt', root / 'raw' / 'landmarks' / 'clip003.txt')
    skipping = build_dataset(clip_options(root, num_frame=10, interval_list=[1], skip_bad_clips=True))
    assert skipping[0]['key'] == 'clip003/00000000' and 'clip000' in skipping.bad_clips


def test_interrupted_lmdb_writing_leaves_no_lmdb(synthetic, tmp_path):
    frames = tmp_path / 'frames'
    shutil.copytree(synthetic / 'aligned', frames)
    (frames / 'clip001' / '00000006.png').write_bytes(b'corrupt')
    with pytest.raises(BadClipError, match="frame '00000006' of clip 'clip001'"):
        make_clip_lmdb(frames, tmp_path / 'out.lmdb')
    assert os.listdir(tmp_path) == ['frames']

    # A hard kill (SIGKILL) in the middle of writing: the target never appears, and a rerun completes it.
    shutil.copy(synthetic / 'aligned' / 'clip000' / '00000006.png', frames / 'clip001' / '00000006.png')
    killer = textwrap.dedent(f"""
        import os, signal
        from datasets_prep.make_clip_lmdb import LmdbMaker, make_clip_lmdb
        put = LmdbMaker.put
        def put_then_die(self, *args):
            put(self, *args)
            if self.counter == 12:
                os.kill(os.getpid(), signal.SIGKILL)
        LmdbMaker.put = put_then_die
        make_clip_lmdb({str(frames)!r}, {str(tmp_path / 'out.lmdb')!r}, commit_every=5)
    """)
    result = subprocess.run([sys.executable, '-c', killer], cwd=REPO_ROOT, capture_output=True)
    assert result.returncode == -9
    assert not (tmp_path / 'out.lmdb').exists()
    make_clip_lmdb(frames, tmp_path / 'out.lmdb')
    dataset = build_dataset(dict(type='VFHQImageDataset', name='faces', phase='train', io_backend={'type': 'lmdb'},
                                 dataroot_gt=str(tmp_path / 'out.lmdb'), gt_size=GT_SIZE, use_flip=False))
    assert len(dataset) == 30 and dataset[16]['key'] == 'clip001/00000006'
    expected = cv2.imread(str(frames / 'clip001' / '00000006.png'))[:, :, ::-1] / 255
    torch.testing.assert_close(dataset[16]['gt'], torch.from_numpy(expected.copy()).permute(2, 0, 1).float())


def test_landmark_file_errors_name_the_line(tmp_path):
    path = tmp_path / 'clip.txt'
    path.write_text('00000000.png 1 2 3 4 5 6 7 8 9 10\n00000001.png 1 2 3\n')
    with pytest.raises(ValueError, match='clip.txt:2'):
        read_landmark_file(path)
    points = np.array([[10, 10], [30, 10], [20, 20], [12, 30], [28, 30]], dtype=np.float32)
    matrix = np.array([[0.5, 0.0, 3.0], [0.0, 0.5, -1.0]])
    assert np.allclose(transform_points(points, matrix), points * 0.5 + [3.0, -1.0])
