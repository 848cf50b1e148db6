"""KEEP's three training stages through vfsr's train.py (BasicSR's real pipeline) on the CPU, chained as in the
paper: stage 1 trains a VQGAN, stage 2 builds KEEP on its checkpoint, stage 3 starts from stage 2's. Each run is
two iterations of a tiny configuration on synthetic VFHQ clips; we check the logged losses, the checkpoints, and
that exactly the documented parameters change. Plus the piece only training uses: LPIPS.
"""
import math
import re
import shutil
from copy import deepcopy

import vfsr_compat  # noqa: F401  (before basicsr)

import pytest
import torch
import torchvision
import yaml
from basicsr.utils.registry import LOSS_REGISTRY, MODEL_REGISTRY
from conftest import REPO_ROOT, python_log, scratch_repo

import vfsr_arch  # noqa: F401
import vfsr_models  # noqa: F401
from datasets_prep.align_vfhq_clips import align_clips
from datasets_prep.make_degraded_testset import make_degraded_testset
from datasets_prep.make_synthetic_vfhq import make_synthetic_vfhq
from vfsr_arch.gmflow_arch import GMFlow
from vfsr_arch.lpips_arch import VGG16_SLICE_CHANNELS

OPTIONS_DIR = REPO_ROOT / 'tests' / 'options'
TINY_GMFLOW = dict(num_scales=1, upsample_factor=8, feature_channels=32, num_transformer_layers=1,
                   ffn_dim_expansion=2, num_head=1)
LOGGED_LOSS = re.compile(r'\b(l_\w+): (\S+?)(?=\s|$)')


def write_random_lpips_weights(folder):
    """Random stand-ins for torchvision's VGG16 (trunk only) and the LPIPS v0.1 heads, in the real files' layout."""
    folder.mkdir(parents=True, exist_ok=True)
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs['D'])
    torch.save({f'features.{key}': value for key, value in features.state_dict().items()},
               folder / 'vgg16-397923af.pth')
    torch.save({f'lin{i}.model.1.weight': torch.rand(1, c, 1, 1) for i, c in enumerate(VGG16_SLICE_CHANNELS)},
               folder / 'vgg.pth')


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
    """Scratch repo root: train.py, synthetic VFHQ clips (raw + landmarks, aligned GT, pre-degraded LQ), random
    LPIPS and GMFlow weights, the tiny option files."""
    root = tmp_path_factory.mktemp('keep_training')
    scratch_repo(root)
    data = root / 'datasets' / 'synthetic_vfhq'
    make_synthetic_vfhq(data, num_clips=2, num_frames=6, frame_size=64, seed=0)
    align_clips(data / 'frames', data / 'landmarks', data / 'aligned_32', size=32)
    make_degraded_testset(data / 'aligned_32', data / 'lq_8', seed=0)
    torch.manual_seed(0)
    write_random_lpips_weights(root / 'weights' / 'LPIPS')
    (root / 'weights' / 'GMFlow').mkdir(parents=True)
    torch.save({'model': GMFlow(**TINY_GMFLOW).state_dict()}, root / 'weights' / 'GMFlow' / 'gmflow_tiny.pth')
    for options in ('keep_tiny_stage1', 'keep_tiny_stage2', 'keep_tiny_stage3', 'keep_tiny_test'):
        shutil.copy(OPTIONS_DIR / f'{options}.yml', root)
    return root


def train(workdir, stage: int) -> tuple[str, dict]:
    """Run one stage with train.py; return its log and its final checkpoint."""
    log = python_log(workdir, 'train.py', '-opt', f'keep_tiny_stage{stage}.yml')
    models = workdir / 'experiments' / f'keep_tiny_stage{stage}' / 'models'
    assert (models / 'net_g_2.pth').is_file() and (models / 'net_g_latest.pth').is_file()
    return log, torch.load(models / 'net_g_latest.pth', weights_only=True)


def logged_losses(log: str) -> dict[str, list[float]]:
    losses = {}
    for name, value in LOGGED_LOSS.findall(log):
        losses.setdefault(name, []).append(float(value))
    return losses


def assert_finite_losses(log: str, expected: set[str]):
    losses = logged_losses(log)
    assert expected <= set(losses), f'missing losses {expected - set(losses)} in the log'
    for name, values in losses.items():
        assert all(math.isfinite(v) for v in values), f'{name} is not finite: {values}'


def changed_keys(params: dict, params_ema: dict) -> set[str]:
    """Top-level modules with a parameter that an optimizer step moved away from its EMA, which lags behind: Adam's
    first steps move a parameter by about the learning rate (>= 2e-5 here), far more than rounding."""
    return {key.split('.')[0] for key in params if (params[key] - params_ema[key]).abs().max() > 1e-6}


def assert_bit_identical(params: dict, reference: dict, keys):
    different = [key for key in keys if not torch.equal(params[key], reference[key])]
    assert not different, f'frozen parameters changed: {different[:5]}'


@pytest.fixture(scope='module')
def stage1(workdir):
    return train(workdir, 1)


@pytest.fixture(scope='module')
def stage2(workdir, stage1):
    return train(workdir, 2)


@pytest.fixture(scope='module')
def stage3(workdir, stage2):
    return train(workdir, 3)


def test_stage1_vqgan_trains_with_adaptive_gan_and_saves_generator_and_discriminator(workdir, stage1):
    log, checkpoint = stage1
    assert_finite_losses(log, {'l_g_pix', 'l_g_percep', 'l_g_gan', 'l_codebook', 'l_d_real', 'l_d_fake'})
    assert 'synthetic_vfhq_faces clip001_00000005: psnr' in log and '# psnr:' in log
    assert set(checkpoint) == {'params', 'params_ema'}
    assert {'encoder', 'quantize', 'generator'} <= changed_keys(checkpoint['params'], checkpoint['params_ema'])
    assert (workdir / 'experiments' / 'keep_tiny_stage1' / 'models' / 'net_d_latest.pth').is_file()


def test_stage2_trains_encoder_kalman_and_transformer_only(workdir, stage1, stage2):
    log, checkpoint = stage2
    assert_finite_losses(log, {'l_feat_encoder', 'l_cross_entropy', 'l_pix'})
    assert 'Validation synthetic_vfhq_test' in log and '# psnr_y:' in log and '# ssim_y:' in log
    params = checkpoint['params']
    vqgan = stage1[1]['params_ema']
    gmflow = torch.load(workdir / 'weights' / 'GMFlow' / 'gmflow_tiny.pth', weights_only=True)['model']
    # Frozen: the stage-1 generator, codebook and encoder (as hq_encoder), and the flow network's weights file.
    for prefix, source_prefix, source in (('generator.', 'generator.', vqgan), ('quantize.', 'quantize.', vqgan),
                                          ('hq_encoder.', 'encoder.', vqgan), ('flownet.model.', '', gmflow)):
        keys = [key for key in params if key.startswith(prefix)]
        assert keys
        assert_bit_identical({key: params[key] for key in keys},
                             {key: source[source_prefix + key[len(prefix):]] for key in keys}, keys)
    # Trained: the LQ encoder (it started as the stage-1 encoder), the Kalman filter and the transformer.
    encoder_keys = [key for key in params if key.startswith('encoder.')]
    assert any(not torch.equal(params[key], vqgan[key]) for key in encoder_keys)
    assert changed_keys(params, checkpoint['params_ema']) == {
        'encoder', 'kalman_filter', 'position_emb', 'feat_emb', 'ft_layers', 'idx_pred_layer'}


def test_stage2_gt_codes_from_hq_encoder_equal_those_of_a_separate_stage1_vqgan(workdir, stage1, monkeypatch):
    """The official code gets GT codes from a second frozen copy of the stage-1 VQGAN (network_vqgan); our default
    uses KEEP's frozen hq_encoder + quantize, loaded from the same checkpoint. Both give the same codes."""
    monkeypatch.chdir(workdir)
    opt = yaml.safe_load((workdir / 'keep_tiny_stage2.yml').read_text())
    opt.update(is_train=True, dist=False, rank=0, world_size=1, datasets={})
    opt['path'].update(models=str(workdir), training_states=str(workdir))
    stage1_options = yaml.safe_load((workdir / 'keep_tiny_stage1.yml').read_text())['network_g']
    with_vqgan = dict(opt, network_vqgan={**stage1_options, 'model_path': opt['network_g']['vqgan_path']})
    models = [MODEL_REGISTRY.get('KEEPModel')(deepcopy(options)) for options in (opt, with_vqgan)]
    assert models[0].code_encoder is models[0].net_g.hq_encoder
    assert models[1].code_encoder is not models[1].net_g.hq_encoder
    torch.manual_seed(0)
    clip = {'lq': torch.rand(1, 2, 3, 8, 8) * 2 - 1, 'gt': torch.rand(1, 2, 3, 32, 32) * 2 - 1}
    codes = []
    for model in models:
        model.feed_data(clip)
        codes.append(model.gt_codes())
    assert codes[0].shape == (2, 64)
    assert torch.equal(codes[0], codes[1])
    assert len(codes[0].unique()) > 1


def test_test_py_evaluates_a_stage2_checkpoint_per_clip(workdir, stage2):
    log = python_log(workdir, 'test.py', '-opt', 'keep_tiny_test.yml')
    assert 'synthetic_vfhq_test clip000: psnr' in log and 'synthetic_vfhq_test clip001: psnr' in log
    assert '# psnr:' in log and '# ssim_y:' in log
    images = workdir / 'results' / 'keep_tiny_test' / 'visualization' / 'synthetic_vfhq_test'
    assert sorted(path.name for path in (images / 'clip000').iterdir()) == [
        f'{index:08d}_keep_tiny_test.png' for index in range(5)]


def test_stage3_trains_cft_and_cfa_only_with_video_discriminator(workdir, stage2, stage3):
    log, checkpoint = stage3
    assert_finite_losses(log, {'l_pix', 'l_percep', 'l_temporal', 'l_g_gan', 'l_d_real', 'l_d_fake'})
    params, stage2_params = checkpoint['params'], stage2[1]['params_ema']
    assert set(stage2_params) < set(params)
    assert {key.split('.')[0] for key in set(params) - set(stage2_params)} == {'cft', 'cfa'}
    assert_bit_identical(params, stage2_params, stage2_params)
    assert changed_keys(params, checkpoint['params_ema']) == {'cft', 'cfa'}
    discriminator = torch.load(workdir / 'experiments' / 'keep_tiny_stage3' / 'models' / 'net_d_latest.pth',
                               weights_only=True)['params']
    assert 'layers.0.weight_orig' in discriminator  # the official key names


# ----------------------------------------------------------------------------------------------------------------
# LPIPS
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def lpips_weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp('lpips')
    torch.manual_seed(0)
    write_random_lpips_weights(folder)
    return folder


def build_lpips(folder, **kwargs):
    return LOSS_REGISTRY.get('LPIPSLoss')(vgg_weights_path=folder / 'vgg16-397923af.pth',
                                          lpips_weights_path=folder / 'vgg.pth', **kwargs)


def test_lpips_is_a_frozen_distance_with_gradients_to_the_prediction(lpips_weights):
    loss = build_lpips(lpips_weights, loss_weight=2.0, range_norm=True)
    assert not any(p.requires_grad for p in loss.parameters())
    loss.train()
    assert not loss.training, 'the loss network never enters training mode (dropout in the heads)'
    torch.manual_seed(1)
    pred = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_()
    target = torch.rand(2, 3, 32, 32) * 2 - 1
    distance = loss(pred, target)
    assert distance.item() > 0
    assert loss(target, target).item() == 0
    torch.testing.assert_close(loss(target, pred), distance)
    distance.backward()
    assert pred.grad.abs().sum() > 0
    half = build_lpips(lpips_weights, loss_weight=1.0, range_norm=True)(pred, target)
    torch.testing.assert_close(distance, 2 * half)


def test_lpips_heads_come_from_the_weights_file(lpips_weights, tmp_path):
    heads = torch.load(lpips_weights / 'vgg.pth', weights_only=True)
    torch.save({key: 2 * value for key, value in heads.items()}, tmp_path / 'vgg.pth')
    shutil.copy(lpips_weights / 'vgg16-397923af.pth', tmp_path)
    pred, target = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(build_lpips(tmp_path)(pred, target), 2 * build_lpips(lpips_weights)(pred, target))


def test_lpips_missing_or_wrong_weights_are_clear_errors(lpips_weights, tmp_path):
    shutil.copy(lpips_weights / 'vgg.pth', tmp_path)
    with pytest.raises(FileNotFoundError, match=r'vgg16-397923af\.pth.*download\.pytorch\.org'):
        build_lpips(tmp_path)
    with pytest.raises(FileNotFoundError, match=r'nowhere\.pth.*lpips/weights/v0\.1/vgg\.pth'):
        LOSS_REGISTRY.get('LPIPSLoss')(vgg_weights_path=lpips_weights / 'vgg16-397923af.pth',
                                       lpips_weights_path=tmp_path / 'nowhere.pth')
    torch.save({'lin0.model.1.weight': torch.rand(1, 64, 1, 1)}, tmp_path / 'heads.pth')
    with pytest.raises(KeyError, match='lin1.model.1.weight'):
        LOSS_REGISTRY.get('LPIPSLoss')(vgg_weights_path=lpips_weights / 'vgg16-397923af.pth',
                                       lpips_weights_path=tmp_path / 'heads.pth')
    torch.save({'classifier.0.weight': torch.rand(2, 2)}, tmp_path / 'not_vgg.pth')
    with pytest.raises(KeyError, match='VGG16 features'):
        LOSS_REGISTRY.get('LPIPSLoss')(vgg_weights_path=tmp_path / 'not_vgg.pth',
                                       lpips_weights_path=lpips_weights / 'vgg.pth')
