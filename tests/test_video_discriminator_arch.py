"""Discriminator3D (KEEP stage 3): the official key list, init and outputs; earlier vfsr checkpoints still load."""
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

import vfsr_arch  # noqa: F401  (registers the archs)
from vfsr_io.checkpoint import load_network_weights

STAGE3 = dict(in_channels=3, nf=32, use_sigmoid=False)  # official stage3_KEEP.yml network_d


def build(**kwargs):
    return ARCH_REGISTRY.get('Discriminator3D')(**kwargs)


def test_stage3_configuration_has_the_pinned_key_list():
    net = build(**STAGE3)
    pinned = read_key_list(TEST_DATA_DIR / 'discriminator3d_keys.txt')
    assert state_dict_key_list(net.state_dict()) == pinned
    assert sum(p.numel() for p in net.parameters()) == 4_461_728


def test_pinned_key_list_is_the_official_one():
    assert read_key_list(TEST_DATA_DIR / 'discriminator3d_keys.txt') == reference_key_list(
        'discriminator3d_full_state_dict.txt')


def test_reference_tiny_config_has_the_official_init_and_outputs():
    reference = load_reference('discriminator3d_tiny_A.pt')
    config = {key: reference['config'][key] for key in ('in_channels', 'nf', 'use_sigmoid')}
    torch.manual_seed(0)  # the reference weights are the official default init under this seed
    net = build(**config)
    fresh = net.state_dict()
    assert list(fresh) == list(reference['state_dict'])
    assert all(torch.equal(fresh[key], value) for key, value in reference['state_dict'].items())
    net.load_state_dict(reference['state_dict'], strict=True)
    with torch.no_grad():
        out = net.eval()(reference['inputs']['x'])
    expected = reference['outputs']['out']
    assert out.shape == expected.shape == (2, 5, 32, 1, 1)  # (b, t, c, h, w): time kept, space / 64, 4nf channels
    assert_matches_reference(out, expected)
    with torch.no_grad():
        squashed = build(**dict(config, use_sigmoid=True)).eval()
        squashed.load_state_dict(reference['state_dict'])
        assert torch.allclose(squashed(reference['inputs']['x']), torch.sigmoid(expected), atol=1e-4)


def test_scores_every_frame_with_gradients_and_rejects_images():
    torch.manual_seed(0)
    net = build(in_channels=3, nf=8)
    clip = torch.randn(2, 5, 3, 64, 64, requires_grad=True)
    scores = net(clip)
    assert scores.shape == (2, 5, 32, 1, 1)
    scores.mean().backward()
    assert clip.grad[:, 0].abs().sum() > 0 and clip.grad[:, -1].abs().sum() > 0
    with pytest.raises(ValueError, match=r'\(b, t, c, h, w\)'):
        net(torch.randn(2, 3, 64, 64))


def test_checkpoints_with_the_earlier_conv_keys_load_converted(tmp_path):
    torch.manual_seed(0)
    trained = build(in_channels=3, nf=8).eval()
    legacy = {key.replace('layers.', 'conv.', 1): value for key, value in trained.state_dict().items()}
    torch.save({'params': legacy}, tmp_path / 'net_d_legacy.pth')
    loaded = build(in_channels=3, nf=8).eval()
    load_network_weights(loaded, tmp_path / 'net_d_legacy.pth')
    clip = torch.randn(1, 3, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(clip), trained(clip))
