"""VQGAN autoencoder: official key layout, derived channel/fusion tables, quantiser maths, fusion hooks, loading."""
import vfsr_compat  # noqa: F401  (before basicsr)

import pytest
import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from conftest import TEST_DATA_DIR, load_reference, read_key_list, reference_key_list, state_dict_key_list

import vfsr_arch  # noqa: F401  (registers the archs)
from vfsr_arch.vqgan_arch import (
    AttnBlock,
    GumbelQuantizer,
    VectorQuantizer,
    channels_per_resolution,
    encoder_fuse_indices,
    generator_fuse_indices,
)
from vfsr_io.checkpoint import CheckpointError

OFFICIAL = dict(img_size=512, nf=64, ch_mult=[1, 2, 2, 4, 4, 8], res_blocks=2, attn_resolutions=[16])
# the smallest VQGAN GroupNorm(32) allows; three levels 32/16/8 with attention at 8
TINY = dict(img_size=32, nf=32, ch_mult=[1, 1, 1], res_blocks=2, attn_resolutions=[8], codebook_size=64, emb_dim=32)


def tiny_autoencoder(**overrides):
    torch.manual_seed(0)
    return ARCH_REGISTRY.get('VQAutoEncoder')(**{**TINY, **overrides})


def test_derived_tables_equal_the_official_constants_at_the_official_config():
    assert channels_per_resolution(512, 64, OFFICIAL['ch_mult']) == {
        '16': 512, '32': 256, '64': 256, '128': 128, '256': 128, '512': 64}
    assert encoder_fuse_indices(**OFFICIAL) == {'512': 2, '256': 5, '128': 8, '64': 11, '32': 14, '16': 18}
    assert generator_fuse_indices(**OFFICIAL) == {'16': 6, '32': 9, '64': 12, '128': 15, '256': 18, '512': 21}


@pytest.mark.parametrize('reference', ['codeformer_tiny_A.pt', 'keep_tiny_A.pt'])
def test_derived_tables_equal_those_of_the_reference_tiny_configs(reference):
    config = load_reference(reference)['config']
    layout = {key: config[key] for key in ('img_size', 'nf', 'ch_mult', 'res_blocks', 'attn_resolutions')}
    model = tiny_autoencoder(**layout)
    assert model.channels == config['derived']['channels']
    assert model.fuse_encoder_block == config['derived']['fuse_encoder_block']
    assert model.fuse_generator_block == config['derived']['fuse_generator_block']


def test_fuse_indices_point_at_resblocks_whose_output_has_the_table_channels():
    model = tiny_autoencoder(ch_mult=[1, 2, 2], attn_resolutions=[8, 16])
    assert model.channels == {'32': 32, '16': 64, '8': 64}
    for blocks, table in ((model.encoder.blocks, model.fuse_encoder_block),
                          (model.generator.blocks, model.fuse_generator_block)):
        for size, index in table.items():
            assert type(blocks[index]).__name__ == 'ResBlock'
            assert blocks[index].conv2.out_channels == model.channels[size]


@pytest.fixture(scope='module')
def official_autoencoder():
    return ARCH_REGISTRY.get('VQAutoEncoder')(**OFFICIAL)


def test_default_key_list_is_pinned(official_autoencoder):
    pinned_path = TEST_DATA_DIR / 'vqautoencoder_keys.txt'
    assert state_dict_key_list(official_autoencoder.state_dict()) == read_key_list(pinned_path)
    params = sum(p.numel() for p in official_autoencoder.parameters())
    assert pinned_path.read_text().splitlines()[0] == f'# params: {params}'


def test_default_key_list_equals_the_vqgan_part_of_official_codeformer(official_autoencoder):
    reference = [entry for entry in reference_key_list('codeformer_full_state_dict.txt')
                 if entry[0].split('.')[0] in ('encoder', 'quantize', 'generator')]
    assert state_dict_key_list(official_autoencoder.state_dict()) == reference


def test_discriminator_key_list_is_pinned_and_output_is_a_patch_map():
    discriminator = ARCH_REGISTRY.get('VQGANDiscriminator')()
    assert state_dict_key_list(discriminator.state_dict()) == read_key_list(
        TEST_DATA_DIR / 'vqgan_discriminator_keys.txt')
    small = ARCH_REGISTRY.get('VQGANDiscriminator')(nc=3, ndf=8, n_layers=2)
    assert small(torch.randn(2, 3, 32, 32)).shape == (2, 1, 6, 6)  # 32 / 2**2 - 2


def test_autoencoder_reconstructs_with_the_input_shape_and_rejects_indivisible_sizes():
    model = tiny_autoencoder().eval()
    reconstruction, loss, stats = model(torch.rand(2, 3, 32, 48) * 2 - 1)
    assert reconstruction.shape == (2, 3, 32, 48)
    assert loss.ndim == 0 and stats['min_encoding_indices'].shape == (2 * 8 * 12, 1)
    with pytest.raises(ValueError, match='multiples of 4'):
        model(torch.zeros(1, 3, 30, 32))


def test_encoder_features_and_generator_fusion_hook_follow_the_tables():
    model = tiny_autoencoder(ch_mult=[1, 2, 2])
    x = torch.randn(1, 3, 32, 32)
    latent, features = model.encoder(x, return_features_at=model.fuse_encoder_block)
    assert torch.equal(latent, model.encoder(x))
    assert {size: tuple(f.shape) for size, f in features.items()} == {
        size: (1, channels, int(size), int(size)) for size, channels in model.channels.items()}

    seen = []

    def fuse(size, x):
        seen.append((size, tuple(x.shape)))
        return x + features[size]

    fused = model.generator(latent, fuse_at=model.fuse_generator_block, fuse=fuse)
    assert seen == [(size, (1, model.channels[size], int(size), int(size))) for size in ('8', '16', '32')]
    assert not torch.allclose(fused, model.generator(latent))
    with pytest.raises(ValueError, match='both'):
        model.generator(latent, fuse_at=model.fuse_generator_block)


def test_attention_block_is_softmax_attention_over_positions():
    torch.manual_seed(0)
    block = AttnBlock(32)
    x = torch.randn(2, 32, 5, 6)
    normed = block.norm(x)
    q, k, v = (conv(normed).flatten(2) for conv in (block.q, block.k, block.v))  # (b, c, hw)
    weights = torch.softmax(q.transpose(1, 2) @ k / 32**0.5, dim=-1)  # (b, hw_q, hw_k)
    expected = x + block.proj_out((v @ weights.transpose(1, 2)).view_as(x))
    torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('legacy_beta', [True, False])
def test_quantizer_picks_nearest_codes_with_straight_through_gradient_and_official_loss(legacy_beta):
    torch.manual_seed(0)
    quantizer = VectorQuantizer(codebook_size=16, emb_dim=4, beta=0.25, legacy_beta=legacy_beta)
    z = torch.randn(2, 4, 3, 5, requires_grad=True)
    z_q, loss, stats = quantizer(z)

    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, 4)
    nearest = torch.cdist(flat, quantizer.embedding.weight.detach()).argmin(1)
    assert torch.equal(stats['min_encoding_indices'].squeeze(1), nearest)
    codes = quantizer.embedding.weight.detach()[nearest].view(2, 3, 5, 4).permute(0, 3, 1, 2)
    torch.testing.assert_close(z_q, codes)

    upstream = torch.randn_like(z_q)
    (z_grad,) = torch.autograd.grad(z_q, z, upstream, retain_graph=True)
    torch.testing.assert_close(z_grad, upstream)  # straight-through

    squared_error = ((codes - z.detach()) ** 2).mean()
    torch.testing.assert_close(loss, squared_error * 1.25)  # both terms have the same value
    z_grad, codebook_grad = torch.autograd.grad(loss, (z, quantizer.embedding.weight))
    commitment_weight, codebook_weight = (1.0, 0.25) if legacy_beta else (0.25, 1.0)
    torch.testing.assert_close(z_grad, commitment_weight * 2 * (z.detach() - codes) / z.numel())
    expected_codebook_grad = torch.zeros_like(codebook_grad).index_add_(
        0, nearest, codebook_weight * 2 * (codes - z.detach()).permute(0, 2, 3, 1).reshape(-1, 4) / z.numel())
    torch.testing.assert_close(codebook_grad, expected_codebook_grad)


def test_codebook_lookup_equals_the_official_one_hot_matmul():
    torch.manual_seed(0)
    quantizer = VectorQuantizer(codebook_size=64, emb_dim=32)
    indices = torch.randint(0, 64, (2, 12, 1))
    one_hot = F.one_hot(indices.view(-1), 64).float()
    expected = (one_hot @ quantizer.embedding.weight).view(2, 3, 4, 32).permute(0, 3, 1, 2)
    assert torch.equal(quantizer.get_codebook_feat(indices, (2, 3, 4, 32)), expected)
    with pytest.raises(ValueError, match='emb_dim 32'):
        quantizer.get_codebook_feat(indices, (2, 3, 4, 256))


def test_gumbel_quantizer_is_hard_at_eval():
    torch.manual_seed(0)
    quantizer = GumbelQuantizer(codebook_size=8, emb_dim=4, num_hiddens=6).eval()
    z_q, kl, stats = quantizer(torch.randn(1, 6, 2, 3))
    expected = quantizer.embed.weight[stats['min_encoding_indices']].permute(0, 3, 1, 2)
    torch.testing.assert_close(z_q, expected)
    assert kl.ndim == 0


@pytest.mark.parametrize('wrapper', [None, 'params_ema', 'params'])
def test_model_path_loads_plain_and_wrapped_state_dicts_strictly(tmp_path, wrapper):
    source = tiny_autoencoder()
    state_dict = source.state_dict()
    path = tmp_path / 'vqgan.pth'
    torch.save(state_dict if wrapper is None else {wrapper: state_dict}, path)
    torch.manual_seed(1)
    loaded = ARCH_REGISTRY.get('VQAutoEncoder')(**TINY, model_path=str(path))
    assert all(torch.equal(loaded.state_dict()[key], value) for key, value in state_dict.items())

    torch.save({key: value for key, value in state_dict.items() if not key.startswith('quantize')}, path)
    with pytest.raises(CheckpointError, match=r'a checkpoint of VQAutoEncoder built with a different configuration '
                                              r'\(other submodules or layer counts\): 1 of its \d+ keys are missing '
                                              r'\(quantize.embedding.weight\)'):
        ARCH_REGISTRY.get('VQAutoEncoder')(**TINY, model_path=str(path))


def test_discriminator_loads_params_d(tmp_path):
    source = ARCH_REGISTRY.get('VQGANDiscriminator')(ndf=8, n_layers=2)
    path = tmp_path / 'disc.pth'
    torch.save({'params_d': source.state_dict()}, path)
    loaded = ARCH_REGISTRY.get('VQGANDiscriminator')(ndf=8, n_layers=2, model_path=path)
    assert torch.equal(loaded.main[0].weight, source.main[0].weight)


def test_missing_weights_file_is_a_clear_error(tmp_path):
    missing = tmp_path / 'vqgan_code1024.pth'
    with pytest.raises(FileNotFoundError, match='vqgan_code1024.pth.*github.com/sczhou/CodeFormer'):
        ARCH_REGISTRY.get('VQAutoEncoder')(**TINY, model_path=str(missing))
