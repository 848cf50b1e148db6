"""The KEEP Table 1 baselines in vfsr's pipeline (``VideoRestorationModel``): tiny EDVR (a window of frames per
output frame), BasicVSR (whole clips) and CodeFormer (frame by frame) train one step on online-degraded synthetic
VFHQ clips and validate every frame of a clip with per-clip metrics, written to the metrics JSON."""
import json

import vfsr_compat  # noqa: F401  (before basicsr)

import pytest
import torch
from basicsr.models import build_model
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils.data import DataLoader

import vfsr_arch  # noqa: F401
import vfsr_data  # noqa: F401
import vfsr_models  # noqa: F401
from datasets_prep.align_vfhq_clips import align_clips
from datasets_prep.make_degraded_testset import make_degraded_testset
from datasets_prep.make_synthetic_vfhq import make_synthetic_vfhq

BASELINES = {
    'EDVR': ({'frames_per_call': 3},
             dict(type='EDVR', num_feat=8, num_frame=3, deformable_groups=1, num_extract_block=1,
                  num_reconstruct_block=1)),
    'BasicVSR': ({'frames_per_call': 'clip'}, dict(type='BasicVSR', num_feat=8, num_block=1)),
    'CodeFormer': ({'frames_per_call': 'frame', 'input_range': [-1, 1], 'input_upscale': 4, 'output_index': 0,
                    'forward_kwargs': {'w': 0.5}},
                   dict(type='CodeFormer', img_size=32, nf=32, ch_mult=[1, 1, 1], res_blocks=1, attn_resolutions=[8],
                        codebook_size=16, emb_dim=8, dim_embd=16, n_head=2, n_layers=1, latent_size=64,
                        connect_list=['16', '32'], fix_modules=None)),
}


# GT sizes: CodeFormer's tiny img_size is 32 (LQ 8 upsampled 4x); BasicSR's SpyNet (BasicVSR) needs LQ frames of
# more than 32 pixels.
GT_SIZES = {'EDVR': 32, 'BasicVSR': 160, 'CodeFormer': 32}


@pytest.fixture(scope='module')
def clips(tmp_path_factory):
    """{GT size: root of 2 synthetic clips (raw frames + landmarks, aligned GT, pre-degraded LQ)}, made once."""
    roots = {}
    for size in sorted(set(GT_SIZES.values())):
        root = roots[size] = tmp_path_factory.mktemp(f'baselines_{size}')
        make_synthetic_vfhq(root / 'raw', num_clips=2, num_frames=5, frame_size=3 * size // 2, seed=0)
        align_clips(root / 'raw' / 'frames', root / 'raw' / 'landmarks', root / 'aligned', size=size)
        make_degraded_testset(root / 'aligned', root / 'lq', seed=0)
    return roots


def loaders(root, num_frame: int, gt_size: int):
    train = DATASET_REGISTRY.get('VFHQClipDataset')(dict(
        name='train', phase='train', dataroot_gt=str(root / 'raw' / 'frames'),
        dataroot_landmarks=str(root / 'raw' / 'landmarks'), io_backend={'type': 'disk'}, gt_size=gt_size,
        num_frame=num_frame, interval_list=[1], normalize=True, seed=0, scale=4))
    val = DATASET_REGISTRY.get('VideoClipTestDataset')(dict(
        name='synthetic_test', phase='val', dataroot_gt=str(root / 'aligned'), dataroot_lq=str(root / 'lq'),
        io_backend={'type': 'disk'}, scale=4, normalize=True, max_frames=3))
    return DataLoader(train, batch_size=1), DataLoader(val, batch_size=1)


@pytest.mark.parametrize('method', BASELINES)
def test_baseline_trains_and_validates_every_frame_per_clip(method, clips, tmp_path):
    model_opt, network = BASELINES[method]
    opt = dict(name=method, model_type='VideoRestorationModel', scale=4, num_gpu=0, is_train=True, dist=False,
               rank=0, world_size=1, network_g=network, **model_opt,
               datasets={'train': {'normalize': True}, 'val': {'normalize': True}},
               path=dict(pretrain_network_g=None, log=str(tmp_path), experiments_root=str(tmp_path),
                         models=str(tmp_path / 'models'), training_states=str(tmp_path / 'states'),
                         visualization=str(tmp_path / 'visualization')),
               train=dict(ema_decay=0, optim_g=dict(type='Adam', lr=1e-3),
                          scheduler=dict(type='MultiStepLR', milestones=[100], gamma=0.5),
                          pixel_opt=dict(type='CharbonnierLoss', loss_weight=1.0)),
               val=dict(metrics={'psnr': dict(type='calculate_psnr', crop_border=0),
                                 'warping_error': dict(type='calculate_warping_error')}))
    torch.manual_seed(0)
    model = build_model(opt)
    size = GT_SIZES[method]
    train_loader, val_loader = loaders(clips[size], 3 if method == 'EDVR' else 2, size)
    before = [p.detach().clone() for p in model.net_g.parameters() if p.requires_grad]
    model.feed_data(next(iter(train_loader)))
    model.optimize_parameters(1)
    after = [p for p in model.net_g.parameters() if p.requires_grad]
    assert 'l_pix' in model.log_dict and any(not torch.equal(a, b) for a, b in zip(after, before))
    model.validation(val_loader, current_iter=1, tb_logger=None, save_img=False)
    assert model.output.shape == (1, 3, 3, size, size), 'every frame of the clip is restored'
    record = json.loads((tmp_path / 'metrics_synthetic_test.json').read_text())
    assert record['num_clips'] == 2 and set(record['metrics']) == {'psnr', 'warping_error'}


def test_windows_repeat_the_end_frames():
    from vfsr_models.video_restoration_model import VideoRestorationModel

    model = VideoRestorationModel.__new__(VideoRestorationModel)
    model.frames_per_call = 5
    assert [model.window_indices(t, 4) for t in (0, 3)] == [[0, 0, 0, 1, 2], [1, 2, 3, 3, 3]]
