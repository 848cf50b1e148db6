"""Each workaround in vfsr_compat, exercised on the real basicsr / facexlib code it repairs.

The CPU validation, gloo, resume and ``--local-rank`` fixes are exercised end to end in test_train_pipeline.py.
"""
import io
import sys
import warnings

import vfsr_compat

import numpy as np
import pytest
import torch
import torchvision
from basicsr.models.base_model import BaseModel
from basicsr.models.lr_scheduler import CosineAnnealingRestartLR

import vfsr_models  # noqa: F401
from vfsr_models.lookahead import Lookahead


def test_basicsr_degradations_import_with_new_torchvision():
    import basicsr.data.degradations  # noqa: F401  (imports functional_tensor)

    assert sys.modules['torchvision.transforms.functional_tensor'] is torchvision.transforms.functional


def make_base_model(device='cpu'):
    return BaseModel({'num_gpu': 0, 'is_train': True, 'dist': False})


def test_get_optimizer_builds_any_torch_optimizer_and_lookahead():
    model = make_base_model()
    params = [torch.nn.Parameter(torch.ones(3))]
    adamw = model.get_optimizer('AdamW', params, 1e-3, betas=(0.9, 0.99), weight_decay=0)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults['betas'] == (0.9, 0.99)
    wrapped = model.get_optimizer('AdamW', params, 1e-3, lookahead={'alpha': 0.5, 'k': 6})
    assert isinstance(wrapped, Lookahead) and isinstance(wrapped.optimizer, torch.optim.AdamW)
    assert (wrapped.alpha, wrapped.k) == (0.5, 6)
    with pytest.raises(ValueError, match="'Adamm' is not a torch.optim optimizer"):
        model.get_optimizer('Adamm', params, 1e-3)


@pytest.mark.parametrize('slow_start, after_step', [
    # k=3, alpha=0.5, each SGD step adds 1 to the weight, from 0.
    # official: slow weights made at the first sync (3 -> 3, unchanged); second sync: 3 + 0.5 (6 - 3) = 4.5
    ('first_sync', {1: 1.0, 2: 2.0, 3: 3.0, 4: 4.0, 5: 5.0, 6: 4.5, 7: 5.5}),
    # paper: slow weights start at 0; first sync 0 + 0.5 (3 - 0) = 1.5; then 1.5 -> 4.5, 1.5 + 0.5 (4.5 - 1.5) = 3
    ('initial', {1: 1.0, 2: 2.0, 3: 1.5, 4: 2.5, 5: 3.5, 6: 3.0, 7: 4.0}),
])
def test_lookahead_first_two_synchronisations(slow_start, after_step):
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = Lookahead(torch.optim.SGD([param], lr=1.0), alpha=0.5, k=3, slow_start=slow_start)
    for step in range(1, 8):
        optimizer.zero_grad()
        (-param).sum().backward()  # gradient -1: each SGD step adds 1
        optimizer.step()
        assert param.item() == after_step[step], f'step {step}'


def test_lookahead_state_round_trip_and_scheduler_drive_the_inner_optimizer():
    param = torch.nn.Parameter(torch.randn(4))
    optimizer = Lookahead(torch.optim.AdamW([param], lr=0.1), alpha=0.5, k=3)
    scheduler = CosineAnnealingRestartLR(optimizer, periods=[10], eta_min=0.0)
    for _ in range(4):
        optimizer.zero_grad()
        param.square().sum().backward()
        optimizer.step()
        scheduler.step()
    assert optimizer.optimizer.param_groups[0]['lr'] < 0.1
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)  # as basicsr's training states do
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    clone = torch.nn.Parameter(param.detach().clone())
    restored = Lookahead(torch.optim.AdamW([clone], lr=0.1), alpha=0.5, k=3)
    restored.load_state_dict(saved)
    assert restored.fast_steps == 4 and restored.param_groups is restored.optimizer.param_groups
    assert torch.equal(restored.state[clone]['slow_weight'], optimizer.state[param]['slow_weight'])
    for opt, p in ((optimizer, param), (restored, clone)):
        opt.zero_grad()
        p.square().sum().backward()
        opt.step()
        opt.zero_grad()
        p.square().sum().backward()
        opt.step()
    assert torch.equal(param, clone)


def test_lookahead_rejects_bad_hyper_parameters():
    params = [torch.nn.Parameter(torch.zeros(1))]
    with pytest.raises(ValueError, match='alpha'):
        Lookahead(torch.optim.SGD(params, lr=1.0), alpha=0.0)
    with pytest.raises(ValueError, match='k must be a positive integer'):
        Lookahead(torch.optim.SGD(params, lr=1.0), k=0)
    with pytest.raises(ValueError, match="slow_start must be one of"):
        Lookahead(torch.optim.SGD(params, lr=1.0), slow_start='paper')


def test_interrupted_checkpoint_write_leaves_no_file(tmp_path, monkeypatch):
    model = BaseModel({'num_gpu': 0, 'is_train': True, 'dist': False,
                       'path': {'training_states': str(tmp_path), 'models': str(tmp_path)}})
    model.optimizers = [torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)]

    def truncated_save(obj, path):
        with open(path, 'wb') as stream:
            stream.write(b'PK\x03')
        raise OSError('disk full')

    monkeypatch.setattr(torch, 'save', truncated_save)
    monkeypatch.setattr('time.sleep', lambda seconds: None)
    with pytest.raises(OSError, match='could not write .*5.state'):
        model.save_training_state(epoch=0, current_iter=5)
    assert not (tmp_path / '5.state').exists()
    monkeypatch.undo()
    model.save_training_state(epoch=0, current_iter=6)
    assert torch.load(tmp_path / '6.state', weights_only=True)['iter'] == 6
    assert sorted(path.name for path in tmp_path.iterdir()) == ['6.state']


def test_flow_warp_builds_its_grid_without_a_meshgrid_warning():
    from basicsr.archs.arch_util import flow_warp

    image = torch.rand(1, 3, 5, 7)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        still = flow_warp(image, torch.zeros(1, 5, 7, 2))
        shifted = flow_warp(image, torch.ones(1, 5, 7, 2))  # each pixel samples one to the right and one down
    torch.testing.assert_close(still, image)
    torch.testing.assert_close(shifted[..., :-1, :-1], image[..., 1:, 1:])


def test_facexlib_awing_decoder_runs_on_numpy_2():
    from facexlib.alignment.awing_arch import calculate_points

    heatmaps = np.random.default_rng(0).random((1, 98, 64, 64)).astype(np.float32)
    points = calculate_points(heatmaps)
    assert points.shape == (1, 98, 2) and points.dtype == np.float64


def test_facexlib_never_downloads_and_names_the_missing_file(tmp_path):
    from facexlib.detection import init_detection_model

    with pytest.raises(vfsr_compat.MissingWeightsError, match="'detection_Resnet50_Final.pth' not found in"):
        init_detection_model('retinaface_resnet50', device='cpu', model_rootpath=str(tmp_path))
    assert not any(tmp_path.iterdir())


def test_facexlib_arcface_builds_on_cpu(tmp_path):
    from facexlib.recognition import init_recognition_model
    from facexlib.recognition.arcface_arch import Backbone

    weights = Backbone(num_layers=50, drop_ratio=0.6, mode='ir_se').state_dict()
    torch.save(weights, tmp_path / 'recognition_arcface_ir_se50.pth')
    model = init_recognition_model('arcface', device='cpu', model_rootpath=str(tmp_path))
    assert next(model.parameters()).device.type == 'cpu'
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 112, 112)).shape == (1, 512)



@pytest.fixture(scope='module')
def tiny_basicvsrpp():
    """BasicSR's BasicVSR++ built on this CUDA-less machine, with a feature cache for clips over 2 frames."""
    from basicsr.utils.registry import ARCH_REGISTRY

    assert not torch.cuda.is_available(), 'these tests are about machines without CUDA'
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # the stock 'alignment is skipped' warning would fail here
        return ARCH_REGISTRY.get('BasicVSRPlusPlus')(mid_channels=16, num_blocks=1, max_residue_magnitude=5,
                                                     cpu_cache_length=2).eval()


def test_basicvsrpp_builds_and_runs_its_deformable_alignment_without_cuda(tiny_basicvsrpp):
    network = tiny_basicvsrpp
    assert network.is_with_alignment and sorted(network.deform_align) == [
        'backward_1', 'backward_2', 'forward_1', 'forward_2']
    alignment = network.deform_align['forward_2']
    assert (alignment.in_channels, alignment.out_channels, alignment.deformable_groups,
            alignment.max_residue_magnitude) == (32, 16, 16, 5), 'the arguments the CUDA build passes'
    calls = []
    hooks = [module.register_forward_hook(lambda *_: calls.append(1)) for module in network.deform_align.values()]
    try:
        with torch.no_grad():
            output = network(torch.rand(1, 2, 3, 64, 64))  # SPyNet needs at least 64x64 low-resolution frames
    finally:
        for hook in hooks:
            hook.remove()
    assert output.shape == (1, 2, 3, 256, 256) and torch.isfinite(output).all()
    assert len(calls) == 4, 'each of the 4 propagation directions aligns the frame after its first'


def test_basicvsrpp_runs_a_clip_longer_than_its_cache_length_without_cuda(tiny_basicvsrpp):
    network = tiny_basicvsrpp
    with torch.no_grad():  # 3 frames > cpu_cache_length 2: the stock forward moves features with .cuda() and fails
        output = network(torch.rand(1, 3, 3, 64, 64))
    assert output.shape == (1, 3, 3, 256, 256) and torch.isfinite(output).all()
    assert (network.cpu_cache_length, network.cpu_cache) == (2, False), 'the option is kept; no cache was used'


def test_force_yml_manual_seed_seeds_the_run(monkeypatch):
    from basicsr.utils import options

    def first_draw(*force_yml):
        overrides = ['--force_yml', *force_yml] if force_yml else []
        monkeypatch.setattr(sys, 'argv', ['train.py', '-opt', 'tests/options/edvr_tiny_cpu.yml', *overrides])
        opt, _ = options.parse_options('.', is_train=True)
        return opt['manual_seed'], torch.rand(1).item()

    seed_in_file, draw_with_file_seed = first_draw()
    forced_seed, draw_with_forced_seed = first_draw(f'manual_seed={seed_in_file + 1}')
    assert forced_seed == seed_in_file + 1
    torch.manual_seed(forced_seed)
    assert draw_with_forced_seed == torch.rand(1).item() != draw_with_file_seed
