"""``test.py`` with ``val.metrics`` naming vfsr_eval's metrics on a tiny KEEP clip set (synthetic VFHQ clips, random
tiny KEEP, LPIPS and ArcFace weights written by the test in the real files' layout): every metric reaches the
metrics JSON, per clip and averaged; a metric that cannot score a frame stops the run with one line."""
import json
import shutil

import vfsr_compat  # noqa: F401  (before basicsr)

import pytest
import torch
import torchvision
import yaml
from basicsr.utils.registry import ARCH_REGISTRY
from conftest import REPO_ROOT, run_python

import vfsr_arch  # noqa: F401
from datasets_prep.align_vfhq_clips import align_clips
from datasets_prep.make_degraded_testset import make_degraded_testset
from datasets_prep.make_synthetic_vfhq import make_synthetic_vfhq
from vfsr_arch.lpips_arch import VGG16_SLICE_CHANNELS

NEW_METRICS = {
    'lpips': dict(type='calculate_lpips', net='vgg', trunk_weights_path='weights/LPIPS/vgg16-397923af.pth',
                  lpips_weights_path='weights/LPIPS/vgg.pth'),
    'ids': dict(type='calculate_ids', arcface_weights_path='weights/facexlib/recognition_arcface_ir_se50.pth'),
    'sigma_ids': dict(type='calculate_sigma_ids',
                      arcface_weights_path='weights/facexlib/recognition_arcface_ir_se50.pth'),
    'warping_error': dict(type='calculate_warping_error'),
}


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
    """A repo root with test.py, two synthetic 5-frame clips (GT 32x32, LQ 8x8), a random tiny KEEP checkpoint at
    the path of tests/options/keep_tiny_test.yml, random LPIPS and ArcFace weights."""
    from facexlib.recognition.arcface_arch import Backbone

    root = tmp_path_factory.mktemp('eval_test_py')
    shutil.copy(REPO_ROOT / 'test.py', root)
    data = root / 'datasets' / 'synthetic_vfhq'
    make_synthetic_vfhq(data, num_clips=2, num_frames=6, frame_size=64, seed=0)
    align_clips(data / 'frames', data / 'landmarks', data / 'aligned_32', size=32)
    make_degraded_testset(data / 'aligned_32', data / 'lq_8', seed=0)
    opt = yaml.safe_load((REPO_ROOT / 'tests' / 'options' / 'keep_tiny_test.yml').read_text())
    torch.manual_seed(0)
    keep = ARCH_REGISTRY.get('KEEP')(**{k: v for k, v in opt['network_g'].items() if k != 'type'})
    checkpoint = root / opt['path']['pretrain_network_g']
    checkpoint.parent.mkdir(parents=True)
    torch.save({'params_ema': keep.state_dict()}, checkpoint)
    lpips = root / 'weights' / 'LPIPS'
    lpips.mkdir(parents=True)
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs['D'])
    torch.save({f'features.{k}': v for k, v in features.state_dict().items()}, lpips / 'vgg16-397923af.pth')
    torch.save({f'lin{i}.model.1.weight': torch.rand(1, c, 1, 1) for i, c in enumerate(VGG16_SLICE_CHANNELS)},
               lpips / 'vgg.pth')
    (root / 'weights' / 'facexlib').mkdir(parents=True)
    torch.save(Backbone(num_layers=50, drop_ratio=0.6, mode='ir_se').state_dict(),
               root / 'weights' / 'facexlib' / 'recognition_arcface_ir_se50.pth')
    return root


def write_options(workdir, name: str, metrics: dict) -> str:
    opt = yaml.safe_load((REPO_ROOT / 'tests' / 'options' / 'keep_tiny_test.yml').read_text())
    opt['name'] = name
    opt['val']['save_img'] = False
    opt['val']['metrics'].update(metrics)
    (workdir / f'{name}.yml').write_text(yaml.safe_dump(opt))
    return f'{name}.yml'


def test_test_py_writes_every_new_metric_per_clip_to_the_metrics_json(workdir):
    run_python(workdir, 'test.py', '-opt', write_options(workdir, 'keep_tiny_eval', NEW_METRICS))
    record = json.loads((workdir / 'results' / 'keep_tiny_eval' / 'metrics_synthetic_vfhq_test.json').read_text())
    names = {'psnr', 'ssim_y', *NEW_METRICS}
    assert record['num_clips'] == 2 and set(record['metrics']) == names == set(record['std'])
    assert len(record['clips']) == 2 and all(set(clip) == names for clip in record['clips'].values())
    for name in names:
        clip_values = [clip[name] for clip in record['clips'].values()]
        assert record['metrics'][name] == pytest.approx(sum(clip_values) / 2)
    assert -1 <= record['metrics']['ids'] <= 1 and record['metrics']['lpips'] > 0
    assert record['metrics']['sigma_ids'] >= 0 and record['metrics']['warping_error'] >= 0


def test_test_py_stops_with_one_line_naming_the_clip_and_frame_without_a_face(workdir):
    # A random tiny KEEP restores no face: the landmark detector finds none in the first restored frame.
    akd = {'akd': dict(type='calculate_akd', detection_scale=8)}
    result = run_python(workdir, 'test.py', '-opt', write_options(workdir, 'keep_tiny_akd', akd), check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith('test.py: error: ')
    assert 'akd: frame 0: no face detected in the restored frame' in result.stderr.strip().splitlines()[-1]
    assert 'Traceback' not in result.stderr
    assert not (workdir / 'results' / 'keep_tiny_akd' / 'metrics_synthetic_vfhq_test.json').exists()
