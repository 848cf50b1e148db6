"""VidFaceModel with a tiny VidFace on real face clips: official losses, AdamW + Lookahead + gradient clipping,
EMA, RGB and Y metrics with images, the EDVR/Bicubic baselines, and train.py / test.py end to end on the CPU."""
import json
import shutil

import vfsr_compat  # noqa: F401  (before basicsr)

import cv2
import pytest
import torch
import yaml
from basicsr.models import build_model
from basicsr.models.lr_scheduler import CosineAnnealingRestartLR
from basicsr.utils.registry import DATASET_REGISTRY, LOSS_REGISTRY
from conftest import REPO_ROOT, python_log, scratch_repo
from torch.utils.data import DataLoader

import vfsr_arch  # noqa: F401  (registers the networks)
import vfsr_data  # noqa: F401  (registers the datasets)
import vfsr_models  # noqa: F401  (registers the model and losses)
from datasets_prep.make_demo_tufs import make_demo_tufs
from vfsr_models.lookahead import Lookahead

TINY_OPTIONS = REPO_ROOT / 'tests' / 'options' / 'vidface_tiny_cpu.yml'
METRICS = {name: {'type': f'calculate_{name.split("_")[0]}', 'crop_border': 0, 'test_y_channel': name.endswith('_y')}
           for name in ('psnr_rgb', 'ssim_rgb', 'psnr_y', 'ssim_y')}


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    return make_demo_tufs(tmp_path_factory.mktemp('model') / 'demo_tufs', num_train=2, num_val=1)


def loader(demo_root, split='train', batch_size=2):
    dataset_type = 'TUFS145KDataset' if split == 'train' else 'TUFS145KTestDataset'
    dataset = DATASET_REGISTRY.get(dataset_type)({
        'name': f'demo_{split}', 'dataroot_gt': str(demo_root / split), 'io_backend': {'type': 'disk'},
        'meta_info_file': str(demo_root / f'meta_info_{split}.txt'), 'landmark_file': str(demo_root / 'landmarks.json'),
        'phase': split, 'scale': 8})
    return DataLoader(dataset, batch_size=batch_size, shuffle=False)


def build(tmp_path, network=None, **train_changes):
    """A VidFaceModel from the tiny option file (official optimiser, clip and losses), training on the CPU."""
    opt = yaml.safe_load(TINY_OPTIONS.read_text())
    opt.update(is_train=True, dist=False, rank=0, world_size=1)
    opt['path'].update({name: str(tmp_path / name) for name in ('models', 'training_states', 'visualization')},
                       log=str(tmp_path), experiments_root=str(tmp_path))
    opt['train'].update(train_changes)
    if network is not None:
        opt['network_g'] = network
    opt['val']['metrics'] = METRICS
    torch.manual_seed(0)
    return build_model(opt)


def grad_norm(model) -> float:
    grads = [param.grad for param in model.net_g.parameters() if param.grad is not None]
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(grad) for grad in grads])).item()


def test_optimizer_is_adamw_in_lookahead_with_a_cosine_schedule(tmp_path):
    model = build(tmp_path)
    optimizer = model.optimizer_g
    assert isinstance(optimizer, Lookahead) and (optimizer.alpha, optimizer.k) == (0.5, 6)
    assert type(optimizer.optimizer) is torch.optim.AdamW
    group = optimizer.param_groups[0]
    assert (group['lr'], group['betas'], group['weight_decay']) == (4e-4, (0.9, 0.99), 0)
    scheduler = model.schedulers[0]
    assert isinstance(scheduler, CosineAnnealingRestartLR) and scheduler.eta_min == 1e-6
    assert model.grad_clip_norm == 0.05


def test_each_step_clips_the_gradient_and_lookahead_syncs_every_k_steps(tmp_path, demo_root):
    model = build(tmp_path)
    model.feed_data(next(iter(loader(demo_root, batch_size=1))))
    params = [param for param in model.net_g.parameters() if param.requires_grad]
    for step in range(1, 7):
        model.optimize_parameters(step)
        assert model.log_dict['grad_norm'] > 0.05, 'the raw gradient is far above the official clip'
        assert grad_norm(model) <= 0.05 * (1 + 1e-4)
        state = model.optimizer_g.state
        synced = all('slow_weight' in state[param] and torch.equal(param, state[param]['slow_weight'])
                     for param in params)
        assert synced == (step == 6), f'step {step}: fast weights should meet the slow ones only at k = 6'


def test_loss_decreases_on_a_fixed_batch(tmp_path, demo_root):
    model = build(tmp_path, optim_g={'type': 'AdamW', 'lr': 5e-3, 'lookahead': {'alpha': 0.5, 'k': 6}})
    model.feed_data(next(iter(loader(demo_root, batch_size=1))))
    losses = []
    for step in range(1, 7):
        model.optimize_parameters(step)
        losses.append(model.log_dict['l_pix'] + model.log_dict['l_landmark'])
    assert min(losses) == losses[-1] < 0.99 * losses[0], losses


def test_pixel_loss_counts_the_reference_snapshot_twice(tmp_path):
    model = build(tmp_path)
    model.gt = torch.rand(2, 7, 3, 128, 96)
    frames = torch.rand(2, 7, 3, 128, 96)
    charbonnier = torch.sqrt((frames - model.gt) ** 2 + 1e-12)
    expected = charbonnier.sum() + charbonnier[:, 3].sum()
    torch.testing.assert_close(model.pixel_loss(frames), expected)
    torch.testing.assert_close(model.pixel_loss(frames[:, 3]), charbonnier[:, 3].sum())  # reference-only networks


def test_landmark_loss_weights_iterations_and_skips_unflagged_snapshots():
    loss = LOSS_REGISTRY.get('LandmarkSmoothL1Loss')(reduction='sum', iteration_weight_base=2.0)
    target = torch.rand(4, 10) - 0.5
    flags = torch.tensor([1.0, 0.0, 1.0, 0.0])
    predictions = [(torch.rand(4, 10) - 0.5).requires_grad_() for _ in range(2)]
    smooth_l1 = [torch.nn.functional.smooth_l1_loss(p[[0, 2]], target[[0, 2]], reduction='sum') for p in predictions]
    torch.testing.assert_close(loss(predictions, target, flags), smooth_l1[0] + 2 * smooth_l1[1])
    garbage = target.clone()
    garbage[[1, 3]] = 100.0
    torch.testing.assert_close(loss(predictions, garbage, flags), loss(predictions, target, flags))
    nothing = loss(predictions, target, torch.zeros(4))
    nothing.backward()
    assert nothing.item() == 0 and predictions[0].grad is not None and not predictions[0].grad.any()


def test_ema_follows_the_network_and_serves_validation(tmp_path, demo_root):
    model = build(tmp_path, ema_decay=0.5)
    model.feed_data(next(iter(loader(demo_root))))
    before = {name: value.clone() for name, value in model.net_g_ema.state_dict().items()}
    model.optimize_parameters(1)
    name = 'linear_last.weight'
    current, trained = model.net_g_ema.state_dict()[name], model.net_g.state_dict()[name]
    torch.testing.assert_close(current, 0.5 * before[name] + 0.5 * trained)
    model.test()
    with torch.no_grad():
        expected = model.net_g_ema(model.lq)[0]
    torch.testing.assert_close(model.output, expected)


def test_validation_reports_rgb_and_y_of_the_reference_and_saves_images(tmp_path, demo_root):
    model = build(tmp_path)
    model.validation(loader(demo_root, 'val', batch_size=1), current_iter=7, tb_logger=None, save_img=True)
    results = model.metric_results
    assert set(results) == set(METRICS)
    assert results['psnr_y'] != results['psnr_rgb'] and 0 < results['ssim_y'] < 1
    record = json.loads((tmp_path / 'metrics_demo_val.json').read_text())
    assert record['iter'] == 7 and record['num_clips'] == 1 and record['metrics'] == pytest.approx(results)
    folder = tmp_path / 'visualization' / 'val000_0001'
    assert cv2.imread(str(folder / 'val000_0001_7.png')).shape == (128, 96, 3)
    assert cv2.imread(str(folder / 'val000_0001_7_compare.png')).shape == (128, 3 * 96, 3)


def test_edvr_x8_baseline_trains_and_validates_on_the_reference_snapshot(tmp_path, demo_root):
    edvr = {'type': 'EDVRx8', 'num_feat': 8, 'num_frame': 7, 'deformable_groups': 1, 'num_extract_block': 1,
            'num_reconstruct_block': 1, 'center_frame_idx': 3, 'with_tsa': False}
    model = build(tmp_path, network=edvr, landmark_opt=None, grad_clip_norm=None)
    model.feed_data(next(iter(loader(demo_root, batch_size=1))))
    model.optimize_parameters(1)
    assert set(model.log_dict) == {'l_pix'}
    model.test()
    assert model.output.shape == (1, 3, 128, 96) and model.landmark_predictions == []
    model.validation(loader(demo_root, 'val', batch_size=1), current_iter=1, tb_logger=None, save_img=False)
    assert 5 < model.metric_results['psnr_rgb'] < 40


@pytest.fixture(scope='module')
def workdir(tmp_path_factory, demo_root):
    """A scratch repo root: copies of train.py/test.py (experiments/results land here) and the demo clips."""
    root = tmp_path_factory.mktemp('vidface_run')
    scratch_repo(root)
    shutil.copytree(demo_root, root / 'datasets' / 'demo_tufs')
    return root


def test_train_py_then_test_py_write_checkpoints_metrics_and_images(workdir):
    log = python_log(workdir, 'train.py', '-opt', str(TINY_OPTIONS))
    for entry in ('l_pix:', 'l_landmark:', 'grad_norm:', '# psnr_rgb:', '# ssim_rgb:', '# psnr_y:', '# ssim_y:'):
        assert entry in log
    experiment = workdir / 'experiments' / 'vidface_tiny_cpu'
    checkpoint = experiment / 'models' / 'net_g_latest.pth'
    assert checkpoint.is_file() and (experiment / 'training_states' / '3.state').is_file()
    assert set(json.loads((experiment / 'metrics_demo_tufs_val.json').read_text())['metrics']) == set(METRICS)

    opt = yaml.safe_load(TINY_OPTIONS.read_text())
    opt.update(name='vidface_tiny_test', datasets={'test': opt['datasets']['val']})
    opt['path'] = {'pretrain_network_g': str(checkpoint), 'strict_load_g': True}
    opt['val'] = {'save_img': True, 'suffix': None, 'metrics': opt['val']['metrics']}
    del opt['train']
    test_options = workdir / 'vidface_tiny_test.yml'
    test_options.write_text(yaml.safe_dump(opt))
    log = python_log(workdir, 'test.py', '-opt', test_options.name)
    assert 'Testing demo_tufs_val' in log
    results = workdir / 'results' / 'vidface_tiny_test'
    metrics = json.loads((results / 'metrics_demo_tufs_val.json').read_text())['metrics']
    assert set(metrics) == set(METRICS)
    images = results / 'visualization' / 'demo_tufs_val'
    assert cv2.imread(str(images / 'val000_0001_vidface_tiny_test.png')).shape == (128, 96, 3)
    assert cv2.imread(str(images / 'val000_0001_vidface_tiny_test_compare.png')).shape == (128, 288, 3)


def test_bicubic_baseline_runs_through_test_py(workdir):
    shutil.copytree(REPO_ROOT / 'options', workdir / 'options', dirs_exist_ok=True)
    python_log(workdir, 'test.py', '-opt', 'options/test_bicubic_demo.yml')
    metrics = json.loads((workdir / 'results' / 'bicubic_demo' / 'metrics_demo_tufs_val.json').read_text())['metrics']
    assert 15 < metrics['psnr_rgb'] < metrics['psnr_y'] < 30
