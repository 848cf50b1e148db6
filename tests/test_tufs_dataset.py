"""TUFs datasets on real face clips (the demo builder's astronaut snapshots): shapes, online LR, snapshot shuffle,
flip with mirrored landmarks, landmark flags and formats, the LMDB backend, and clear errors for bad input."""
import json
import pickle
import random
import shutil
import subprocess
import sys

import vfsr_compat  # noqa: F401  (before basicsr)

import cv2
import numpy as np
import pytest
import torch
from basicsr.utils.matlab_functions import imresize
from basicsr.utils.registry import DATASET_REGISTRY
from conftest import REPO_ROOT
from torch.nn import functional as F

import vfsr_data  # noqa: F401  (registers the datasets)
from datasets_prep.convert_tufs_landmarks import convert_landmark_pickle
from datasets_prep.make_demo_tufs import make_demo_tufs
from datasets_prep.make_tufs_lmdb import make_tufs_lmdb
from vfsr_data.matlab_resize import matlab_resize
from vfsr_data.tufs_dataset import flip_landmarks


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    return make_demo_tufs(tmp_path_factory.mktemp('tufs') / 'demo', num_train=3, num_val=1)


def dataset_options(root, **changes):
    opt = {'name': 'tufs', 'dataroot_gt': str(root / 'train'), 'meta_info_file': str(root / 'meta_info_train.txt'),
           'landmark_file': str(root / 'landmarks.json'), 'io_backend': {'type': 'disk'}, 'num_frame': 7,
           'gt_size': [128, 96], 'scale': 8, 'phase': 'train', 'shuffle_snapshots': False, 'use_flip': False}
    opt.update(changes)
    return opt


def build(name, opt):
    return DATASET_REGISTRY.get(name)(opt)


def test_sample_shapes_ranges_and_landmarks(demo_root):
    sample = build('TUFS145KTestDataset', dataset_options(demo_root))[0]
    assert sample['lq'].shape == (7, 3, 16, 12) and sample['gt'].shape == (7, 3, 128, 96)
    assert sample['landmarks'].shape == (7, 10) and sample['landmark_flags'].tolist() == [1.0] * 7
    assert sample['key'] == 'train000/0001'
    for name in ('lq', 'gt'):
        assert -1 <= sample[name].min() < -0.5 and 0.5 < sample[name].max() <= 1
    stored = json.loads((demo_root / 'landmarks.json').read_text())['train000/0001/im4.png']
    torch.testing.assert_close(sample['landmarks'][3], torch.tensor(stored) - 0.5)
    # RGB order: the photo's orange suit and skin make red the brightest channel on average
    assert sample['gt'][:, 0].mean() > sample['gt'][:, 2].mean()


def test_online_lr_equals_matlab_bicubic_saved_as_png(demo_root, tmp_path):
    lq_root = tmp_path / 'lq'
    for gt_path in (demo_root / 'train').glob('*/*/im*.png'):
        lq = imresize(cv2.imread(str(gt_path)).astype(np.float32) / 255, 1 / 8)
        target = lq_root / gt_path.relative_to(demo_root / 'train')
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), np.round(np.clip(lq, 0, 1) * 255).astype(np.uint8))
    online = build('TUFS145KTestDataset', dataset_options(demo_root))[1]
    from_disk = build('TUFS145KTestDataset', dataset_options(demo_root, dataroot_lq=str(lq_root)))[1]
    # the same 8-bit values, but for a rare pixel whose float sum lands on a rounding boundary in one order only
    difference = (online['lq'] - from_disk['lq']).abs()
    assert difference.max() <= 2 / 255 + 1e-6 and (difference > 1e-6).float().mean() < 0.01
    assert torch.equal(online['gt'], from_disk['gt'])


@pytest.mark.parametrize(('size', 'scale'), [((128, 96), 1 / 8), ((16, 12), 8), ((20, 30), 0.5)])
def test_matrix_resize_equals_basicsr_imresize(size, scale):
    images = torch.rand(2, 3, *size)
    expected = torch.stack([imresize(image, scale) for image in images])
    torch.testing.assert_close(matlab_resize(images, scale), expected, atol=1e-5, rtol=0)


def test_shuffle_permutes_every_field_together(demo_root):
    ordered = build('TUFS145KTestDataset', dataset_options(demo_root))[0]
    dataset = build('TUFS145KDataset', dataset_options(demo_root, shuffle_snapshots=True))
    np.random.seed(0)
    orders = set()
    for _ in range(4):
        sample = dataset[0]
        order = [next(j for j in range(7) if torch.equal(sample['gt'][i], ordered['gt'][j])) for i in range(7)]
        assert sorted(order) == list(range(7))
        for name in ('lq', 'landmarks', 'landmark_flags'):
            assert torch.equal(sample[name], ordered[name][order])
        orders.add(tuple(order))
    assert len(orders) > 1


def test_flip_landmarks_negates_x_and_swaps_left_right_points():
    landmarks = torch.tensor([[-0.2, -0.1, 0.25, -0.12, 0.01, 0.05, -0.15, 0.2, 0.14, 0.22]])
    expected = torch.tensor([[-0.25, -0.12, 0.2, -0.1, -0.01, 0.05, -0.14, 0.22, 0.15, 0.2]])
    torch.testing.assert_close(flip_landmarks(landmarks), expected)
    torch.testing.assert_close(flip_landmarks(flip_landmarks(landmarks)), landmarks)


def sample_at(images: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
    """Bilinear image values (t, 3, 5) at landmarks (t, 10) in centred continuous coordinates."""
    grid = (2 * landmarks).view(-1, 1, 5, 2)  # [-0.5, 0.5] -> grid_sample's [-1, 1] (align_corners=False)
    return F.grid_sample(images, grid, align_corners=False).squeeze(2)


def test_flipped_sample_keeps_landmarks_on_the_same_face_points(demo_root):
    dataset = build('TUFS145KDataset', dataset_options(demo_root, use_flip=True))
    original = build('TUFS145KTestDataset', dataset_options(demo_root))[0]
    random.seed(0)
    flipped = next(sample for sample in (dataset[0] for _ in range(20))
                   if torch.equal(sample['gt'], original['gt'].flip(-1)))
    assert torch.equal(flipped['lq'], original['lq'].flip(-1))
    points, flipped_points = original['landmarks'].view(7, 5, 2), flipped['landmarks'].view(7, 5, 2)
    # the image-left eye and mouth corner are still points 0 and 3
    assert (flipped_points[:, 0, 0] < flipped_points[:, 1, 0]).all()
    assert (flipped_points[:, 3, 0] < flipped_points[:, 4, 0]).all()
    # each point of the flipped face sits on the same image content as its mirror in the original
    swap = [1, 0, 2, 4, 3]
    torch.testing.assert_close(sample_at(flipped['gt'], flipped['landmarks']),
                               sample_at(original['gt'], original['landmarks'])[:, :, swap], atol=1e-5, rtol=0)
    torch.testing.assert_close(flipped_points[:, swap, 1], points[:, :, 1])


def test_missing_landmarks_get_zeros_and_flag_zero(demo_root, tmp_path):
    landmarks = json.loads((demo_root / 'landmarks.json').read_text())
    del landmarks['train000/0001/im2.png'], landmarks['train000/0001/im6.png']
    partial = tmp_path / 'partial.json'
    partial.write_text(json.dumps(landmarks))
    sample = build('TUFS145KTestDataset', dataset_options(demo_root, landmark_file=str(partial)))[0]
    assert sample['landmark_flags'].tolist() == [1, 0, 1, 1, 1, 0, 1]
    assert not sample['landmarks'][[1, 5]].any() and sample['landmarks'][[0, 2]].abs().sum() > 0
    unannotated = build('TUFS145KTestDataset', dataset_options(demo_root, landmark_file=None))[0]
    assert not unannotated['landmark_flags'].any()


def test_npz_landmarks_and_trusted_pickle_conversion_match_json(demo_root, tmp_path):
    landmarks = json.loads((demo_root / 'landmarks.json').read_text())
    official_style = tmp_path / 'lmk_norm.pickle'
    official_style.write_bytes(pickle.dumps({key: np.array(value) for key, value in landmarks.items()}))
    npz = tmp_path / 'landmarks.npz'
    assert convert_landmark_pickle(official_style, npz) == len(landmarks)
    from_json = build('TUFS145KTestDataset', dataset_options(demo_root))[2]
    from_npz = build('TUFS145KTestDataset', dataset_options(demo_root, landmark_file=str(npz)))[2]
    assert torch.equal(from_json['landmarks'], from_npz['landmarks'])
    with pytest.raises(ValueError, match=r'unsupported format.*convert_tufs_landmarks'):
        build('TUFS145KTestDataset', dataset_options(demo_root, landmark_file=str(official_style)))


def test_lmdb_backend_reads_the_same_clips(demo_root, tmp_path):
    lmdb_path = tmp_path / 'train.lmdb'
    assert make_tufs_lmdb(demo_root / 'train', lmdb_path) == 3 * 7
    disk = build('TUFS145KTestDataset', dataset_options(demo_root))
    lmdb = build('TUFS145KTestDataset', dataset_options(demo_root, dataroot_gt=str(lmdb_path), meta_info_file=None,
                                                        io_backend={'type': 'lmdb'}))
    assert lmdb.keys == disk.keys
    for name in ('lq', 'gt', 'landmarks'):
        assert torch.equal(lmdb[2][name], disk[2][name])


def test_lmdb_command_line_is_atomic(demo_root, tmp_path):
    root = tmp_path / 'demo'
    shutil.copytree(demo_root / 'train', root)
    (root / 'train001' / '0001' / 'im3.png').write_bytes(b'not a png')
    command = [sys.executable, '-m', 'datasets_prep.make_tufs_lmdb', str(root), str(tmp_path / 'gt.lmdb')]
    failed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    assert failed.returncode != 0
    assert not any(path.suffix == '.lmdb' for path in tmp_path.iterdir()), 'no LMDB, not even a partial one'
    shutil.copy(demo_root / 'train' / 'train001' / '0001' / 'im3.png', root / 'train001' / '0001' / 'im3.png')
    subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True)
    assert (tmp_path / 'gt.lmdb' / 'meta_info.txt').read_text().count('\n') == 3 * 7


def test_missing_frame_names_the_clip(demo_root, tmp_path):
    root = tmp_path / 'demo'
    shutil.copytree(demo_root, root)
    (root / 'train' / 'train001' / '0001' / 'im5.png').unlink()
    dataset = build('TUFS145KDataset', dataset_options(root))
    with pytest.raises(FileNotFoundError, match=r"clip 'train001/0001': frame im5.png is missing"):
        dataset[1]
    with pytest.raises(ValueError, match=r"clip 'train001/0001' has 6 snapshots, expected num_frame=7"):
        build('TUFS145KDataset', dataset_options(root, meta_info_file=None))
    lmdb_path = tmp_path / 'broken.lmdb'
    make_tufs_lmdb(root / 'train', lmdb_path)
    lmdb = build('TUFS145KDataset', dataset_options(root, dataroot_gt=str(lmdb_path), io_backend={'type': 'lmdb'}))
    with pytest.raises(FileNotFoundError, match=r"clip 'train001/0001': frame im5.png is missing"):
        lmdb[1]


def test_wrong_snapshot_count_and_frame_size_name_the_clip(demo_root, tmp_path):
    meta = tmp_path / 'meta.txt'
    meta.write_text('train000/0001 7 (128,96,3)\ntrain002/0001 5 (128,96,3)\n')
    with pytest.raises(ValueError, match=r"clip 'train002/0001' has 5 snapshots, expected num_frame=7"):
        build('TUFS145KDataset', dataset_options(demo_root, meta_info_file=str(meta)))
    root = tmp_path / 'demo'
    shutil.copytree(demo_root, root)
    cv2.imwrite(str(root / 'train' / 'train002' / '0001' / 'im3.png'), np.zeros((120, 96, 3), np.uint8))
    with pytest.raises(ValueError, match=r"clip 'train002/0001': frame im3.png .* shape \(120, 96, 3\), expected"):
        build('TUFS145KDataset', dataset_options(root))[2]


@pytest.mark.parametrize('entry', [[0.5] * 8, [[0.5, 0.5]] * 5 + [[0.5, 0.5]], [0.5] * 9 + [float('nan')]])
def test_bad_landmark_entries_name_the_key(demo_root, tmp_path, entry):
    landmarks = json.loads((demo_root / 'landmarks.json').read_text())
    landmarks['train001/0001/im3.png'] = entry
    path = tmp_path / 'bad.json'
    path.write_text(json.dumps(landmarks))
    with pytest.raises(ValueError, match=r"entry 'train001/0001/im3.png'"):
        build('TUFS145KDataset', dataset_options(demo_root, landmark_file=str(path)))


def test_npz_landmarks_with_wrong_shape_are_refused(demo_root, tmp_path):
    path = tmp_path / 'bad.npz'
    np.savez(path, keys=np.array(['train000/0001/im1.png']), landmarks=np.zeros((1, 12), np.float32))
    with pytest.raises(ValueError, match=r"entry 'train000/0001/im1.png' has shape \(12,\)"):
        build('TUFS145KDataset', dataset_options(demo_root, landmark_file=str(path)))
