"""GMFlow: equivalence with the official implementation, checkpoint keys, every forward path, bad input."""
import math

import vfsr_compat  # noqa: F401  (before basicsr)

import pytest
import torch
from basicsr.utils.registry import ARCH_REGISTRY
from conftest import (
    TEST_DATA_DIR,
    assert_matches_reference,
    load_reference,
    read_key_list,
    reference_key_list,
    state_dict_key_list,
)

import vfsr_arch  # noqa: F401  (registers GMFlow)
from vfsr_arch.gmflow_arch import (
    ConvexUpsampler,
    FeatureFlowAttention,
    WindowLayout,
    global_correlation_flow,
    local_correlation_flow,
)

SMALL = {'feature_channels': 32, 'num_transformer_layers': 2, 'ffn_dim_expansion': 2}
MULTI_SCALE = {'num_scales': 2, 'upsample_factor': 4, **SMALL}
MULTI_SCALE_SETTINGS = {'attn_splits_list': [2, 4], 'corr_radius_list': [-1, 2], 'prop_radius_list': [-1, 1]}


def build(**kwargs):
    torch.manual_seed(0)
    return ARCH_REGISTRY.get('GMFlow')(**kwargs)


def image_pair(height=64, width=64, batch=1):
    """Random texture and the same texture moved by (dx, dy) = (-2, +3) with a little noise, RGB in [0, 255]."""
    generator = torch.Generator().manual_seed(1)
    img0 = torch.rand(batch, 3, height, width, generator=generator) * 255
    img1 = torch.roll(img0, shifts=(3, -2), dims=(2, 3)) + torch.randn(img0.shape, generator=generator)
    return img0, img1


def test_matches_official_tiny_reference():
    reference = load_reference('gmflow_tiny_A.pt')
    config = {key: value for key, value in reference['config'].items() if key not in ('forward_kwargs', 'notes')}
    net = ARCH_REGISTRY.get('GMFlow')(**config).eval()
    net.load_state_dict(reference['state_dict'], strict=True)
    with torch.no_grad():
        flows = net(reference['inputs']['img0'], reference['inputs']['img1'],
                    **reference['config']['forward_kwargs'])['flow_preds']
    assert len(flows) == 1
    # the global matching's softmax sharpens float32 rounding: 3e-4 px on a 30 px flow between two CPUs
    assert_matches_reference(flows[0], reference['outputs']['flow_preds_0'], relative=1e-4)


def test_default_keys_match_official_checkpoint():
    assert state_dict_key_list(build().state_dict()) == reference_key_list('gmflow_full_state_dict.txt')


def test_default_keys_are_pinned():
    """Always on: the checkpoint layout (checked once against the official list) cannot drift silently."""
    path = TEST_DATA_DIR / 'gmflow_keys.txt'
    net = build()
    assert state_dict_key_list(net.state_dict()) == read_key_list(path)
    assert path.read_text().splitlines()[0] == f'# params: {sum(p.numel() for p in net.parameters())}'


def test_eval_returns_only_final_full_resolution_flow():
    net = build().eval()
    with torch.no_grad():
        flows = net(*image_pair(batch=2))['flow_preds']
    assert len(flows) == 1
    assert flows[0].shape == (2, 2, 64, 64)
    assert torch.isfinite(flows[0]).all()


def test_training_returns_every_stage_and_backpropagates():
    net = build(**SMALL).train()
    flows = net(*image_pair(), attn_splits_list=[2], corr_radius_list=[-1], prop_radius_list=[-1])['flow_preds']
    assert [tuple(flow.shape) for flow in flows] == [(1, 2, 64, 64)] * 2  # after matching, after propagation
    sum(flow.abs().mean() for flow in flows).backward()
    for name in ('backbone.conv1.weight', 'transformer.layers.0.self_attn.q_proj.weight',
                 'feature_flow_attn.q_proj.weight', 'upsampler.2.weight'):
        assert net.get_parameter(name).grad.abs().sum() > 0, name


def test_multi_scale_refinement_paths():
    net = build(**MULTI_SCALE)
    img0, img1 = image_pair()
    net.train()
    flows = net(img0, img1, **MULTI_SCALE_SETTINGS)['flow_preds']
    assert [tuple(flow.shape) for flow in flows] == [(1, 2, 64, 64)] * 4  # two per scale
    net.eval()
    with torch.no_grad():
        final = net(img0, img1, **MULTI_SCALE_SETTINGS)['flow_preds']
    assert len(final) == 1
    torch.testing.assert_close(final[0], flows[-1].detach())


@pytest.mark.parametrize('config, settings', [(SMALL, {}), (MULTI_SCALE, MULTI_SCALE_SETTINGS)],
                         ids=['single_scale', 'multi_scale'])
def test_bidirectional_flow_is_the_flow_of_the_swapped_pair(config, settings):
    net = build(**config).eval()
    img0, img1 = image_pair()
    with torch.no_grad():
        both = net(img0, img1, pred_bidir_flow=True, **settings)['flow_preds'][-1]
        forward = net(img0, img1, **settings)['flow_preds'][-1]
        backward = net(img1, img0, **settings)['flow_preds'][-1]
    assert both.shape == (2, 2, 64, 64)
    torch.testing.assert_close(both[:1], forward, atol=1e-3, rtol=0)
    torch.testing.assert_close(both[1:], backward, atol=1e-3, rtol=0)


@pytest.mark.parametrize('size, kwargs, multiple', [
    ((64, 72), {}, 16),
    ((64, 64), {'attn_splits_list': [16]}, 128),
    ((48, 48), {**MULTI_SCALE_SETTINGS, 'attn_splits_list': [2, 8]}, 32),
])
def test_image_size_must_fit_the_windows(size, kwargs, multiple):
    config = MULTI_SCALE if len(kwargs.get('attn_splits_list', [2])) == 2 else SMALL
    net = build(**config).eval()
    img = torch.zeros(1, 3, *size)
    with pytest.raises(ValueError, match=f'multiples of {multiple} '):
        net(img, img, **kwargs)


def test_bad_configuration_and_settings_are_rejected():
    with pytest.raises(ValueError, match='upsample_factor must be 4'):
        build(num_scales=2)
    with pytest.raises(ValueError, match='num_head'):
        build(num_head=2)
    net = build(**SMALL)
    img = torch.zeros(1, 3, 64, 64)
    with pytest.raises(ValueError, match='one value per scale'):
        net(img, img, attn_splits_list=[2, 2])
    with pytest.raises(ValueError, match='same shape'):
        net(img, torch.zeros(1, 3, 64, 32))


def shifted_features(dx, dy, size=16, channels=64):
    """Distinctive features and the same map moved by (dx, dy) (wrapping around the borders)."""
    feature0 = torch.randn(1, channels, size, size, generator=torch.Generator().manual_seed(2)) * 4
    return feature0, torch.roll(feature0, shifts=(dy, dx), dims=(2, 3))


def test_global_matching_finds_the_displacement():
    feature0, feature1 = shifted_features(dx=-2, dy=3)
    flow = global_correlation_flow(feature0, feature1)
    # away from the borders the match is the shifted pixel itself: channel 0 is dx, channel 1 is dy
    torch.testing.assert_close(flow[0, :, 2:-4, 3:-3], torch.tensor([-2., 3.])[:, None, None].expand(2, 10, 10))


def test_local_matching_finds_the_displacement_within_its_radius():
    feature0, feature1 = shifted_features(dx=1, dy=-2)
    flow = local_correlation_flow(feature0, feature1, radius=3)
    torch.testing.assert_close(flow[0, :, 3:-3, 3:-3], torch.tensor([1., -2.])[:, None, None].expand(2, 10, 10))


@pytest.mark.parametrize('radius', [-1, 1])
def test_flow_propagation_and_convex_upsampling_are_convex_combinations(radius):
    torch.manual_seed(0)
    feature = torch.randn(2, 32, 8, 8)
    flow = torch.tensor([1.5, -0.5]).view(1, 2, 1, 1).expand(2, 2, 8, 8)
    propagated = FeatureFlowAttention(32)(feature, flow, radius)
    upsampled = ConvexUpsampler(32, factor=4)(flow, feature)
    assert upsampled.shape == (2, 2, 32, 32)
    # zero padding beyond the border (as in the official model) only affects the outermost positions
    torch.testing.assert_close(propagated[..., 1:-1, 1:-1], flow[..., 1:-1, 1:-1])
    torch.testing.assert_close(upsampled[..., 4:-4, 4:-4], 4 * flow[..., :1, :1].expand(2, 2, 24, 24))


def test_shifted_windows_round_trip_and_isolate_wrapped_tokens():
    layout = WindowLayout(height=8, width=12, num_splits=2, shifted=True, device='cpu')
    tokens = torch.randn(3, 8, 12, 5)
    windows = layout.partition(tokens)
    assert windows.shape == (3, 4, 24, 5)
    torch.testing.assert_close(layout.reverse(windows), tokens)
    # the top-left window after the shift holds original rows/cols 2..5 and 3..8: nothing wrapped, so no mask
    assert layout.mask[0].abs().sum() == 0
    # the bottom-right window mixes wrapped tokens; the mask separates exactly four regions of the window
    regions = {tuple(row.tolist()) for row in (layout.mask[3] == 0)}
    assert len(regions) == 4
    assert math.isclose(layout.mask.min().item(), -100.)


def test_swin_with_one_window_is_full_attention():
    swin, full = build(**SMALL).eval(), build(**SMALL, attention_type='full').eval()
    settings = {'attn_splits_list': [1], 'corr_radius_list': [-1], 'prop_radius_list': [-1]}
    with torch.no_grad():
        torch.testing.assert_close(swin(*image_pair(), **settings)['flow_preds'][-1],
                                   full(*image_pair(), **settings)['flow_preds'][-1])
        windowed = full(*image_pair(), attn_splits_list=[2], corr_radius_list=[-1], prop_radius_list=[-1])
    assert not torch.allclose(windowed['flow_preds'][-1], swin(*image_pair())['flow_preds'][-1])
