"""CodeFormer: official checkpoint layout and outputs, transformer layer vs nn.MultiheadAttention, fusion, gradients."""
import vfsr_compat  # noqa: F401  (before basicsr)

import pytest
import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from conftest import (
    TEST_DATA_DIR,
    load_reference,
    randomize_like_reference,
    read_key_list,
    reference_key_list,
    state_dict_key_list,
)
from torch import nn

import vfsr_arch  # noqa: F401  (registers the archs)
from vfsr_arch.codeformer_arch import TransformerSALayer, adaptive_instance_normalization

# CodeFormer tiny A's layout: the smallest VQGAN GroupNorm(32) allows, 8x8 latent, fusion at 16 and 32
TINY = dict(img_size=32, nf=32, ch_mult=[1, 1, 1], res_blocks=2, attn_resolutions=[8], emb_dim=32, codebook_size=64,
            latent_size=64, dim_embd=32, n_head=2, n_layers=2, connect_list=['16', '32'])


def build(**overrides):
    return ARCH_REGISTRY.get('CodeFormer')(**{**TINY, **overrides})


def randomized_tiny(**overrides):
    """Tiny CodeFormer with every tensor random, as in the reference data."""
    return randomize_like_reference(build(**overrides))


def test_reference_tiny_config_reproduces_the_official_outputs():
    reference = load_reference('codeformer_tiny_A.pt')
    config = reference['config']
    model = build(**{key: config[key] for key in TINY}).eval()
    model.load_state_dict(reference['state_dict'], strict=True)
    with torch.no_grad():
        out, logits, lq_feat = model(reference['inputs']['x'], **config['forward_kwargs'])
    expected = reference['outputs']
    torch.testing.assert_close(out, expected['out'], atol=1e-4, rtol=0)
    torch.testing.assert_close(lq_feat, expected['lq_feat'], atol=1e-4, rtol=0)
    # logits reach |73| (the reference scales the head by 20): the reference's own float32 error is ~9e-5 there
    # (measured against float64), so allow 1e-4 plus a relative float32 margin
    torch.testing.assert_close(logits, expected['logits'], atol=1e-4, rtol=2e-6)
    assert torch.equal(logits.argmax(2), expected['top_idx'])


@pytest.fixture(scope='module')
def official_codeformer():
    return ARCH_REGISTRY.get('CodeFormer')()


def test_default_key_list_equals_the_official_release(official_codeformer):
    assert state_dict_key_list(official_codeformer.state_dict()) == reference_key_list(
        'codeformer_full_state_dict.txt')


def test_default_key_list_is_pinned(official_codeformer):
    pinned_path = TEST_DATA_DIR / 'codeformer_keys.txt'
    assert state_dict_key_list(official_codeformer.state_dict()) == read_key_list(pinned_path)
    params = sum(p.numel() for p in official_codeformer.parameters())
    assert pinned_path.read_text().splitlines()[0] == f'# params: {params}' == '# params: 94112707'


def test_official_fix_modules_freeze_quantizer_and_generator(official_codeformer):
    frozen = {name.split('.')[0] for name, p in official_codeformer.named_parameters() if not p.requires_grad}
    assert frozen == {'quantize', 'generator'}


def test_transformer_layer_equals_the_sequence_first_multihead_attention_formulation():
    torch.manual_seed(0)
    layer = TransformerSALayer(embed_dim=16, nhead=4, dim_mlp=32)
    attention = nn.MultiheadAttention(16, 4)
    attention.load_state_dict({key.removeprefix('self_attn.'): value
                               for key, value in layer.state_dict().items() if key.startswith('self_attn.')})
    x, pos = torch.randn(2, 10, 16), torch.randn(10, 16)

    # the official layer, on (n, b, d)
    tokens, pos_first = x.transpose(0, 1), pos.unsqueeze(1)
    normed = layer.norm1(tokens)
    tokens = tokens + attention(normed + pos_first, normed + pos_first, normed)[0]
    tokens = tokens + layer.linear2(F.gelu(layer.linear1(layer.norm2(tokens))))
    torch.testing.assert_close(layer(x, pos), tokens.transpose(0, 1), atol=1e-5, rtol=1e-5)


def test_fidelity_weight_zero_skips_fusion_and_positive_weights_scale_it():
    model = randomized_tiny().eval()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        out_0, logits, lq_feat = model(x, w=0)
        codebook_only = model.generator(model.quantize.get_codebook_feat(logits.argmax(2), (1, 8, 8, 32)))
        out_half, logits_half, _ = model(x, w=0.5)
        out_1, _, _ = model(x, w=1)
    assert out_0.shape == (1, 3, 32, 32) and logits.shape == (1, 64, 64) and lq_feat.shape == (1, 32, 8, 8)
    torch.testing.assert_close(out_0, codebook_only)
    assert torch.equal(logits, logits_half)
    assert not torch.allclose(out_half, out_0, atol=1e-3) and not torch.allclose(out_half, out_1, atol=1e-3)


def test_code_only_returns_logits_and_latent():
    model = randomized_tiny().eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        logits, lq_feat = model(x, code_only=True)
        _, full_logits, full_lq_feat = model(x)
    assert torch.equal(logits, full_logits) and torch.equal(lq_feat, full_lq_feat)


def test_adain_matches_channel_statistics():
    content, style = torch.randn(2, 4, 5, 5) * 3 + 1, torch.randn(2, 4, 6, 6) * 0.5 - 2
    matched = adaptive_instance_normalization(content, style)
    torch.testing.assert_close(matched.flatten(2).mean(2), style.flatten(2).mean(2), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(matched.flatten(2).std(2), style.flatten(2).std(2), atol=1e-3, rtol=1e-3)


def test_stage_gradients_reach_trained_parts_only():
    model = randomized_tiny(fix_modules=['quantize', 'generator']).train()
    x = torch.rand(1, 3, 32, 32) * 2 - 1

    # stage II: cross-entropy on codes trains encoder and transformer
    logits, _ = model(x, code_only=True)
    F.cross_entropy(logits.flatten(0, 1), torch.randint(0, 64, (64,))).backward()
    assert model.encoder.blocks[0].weight.grad.abs().sum() > 0
    assert model.ft_layers[0].self_attn.in_proj_weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)

    # stage III: the image loss reaches the fusion blocks; quantised latent and skip features are detached
    out, _, _ = model(x, w=1, detach_16=True)
    out.abs().mean().backward()
    assert model.fuse_convs_dict['16'].scale[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is None for p in model.ft_layers.parameters())
    assert all(p.grad is None for p in model.generator.parameters())


def test_vqgan_path_loads_the_autoencoder_part(tmp_path):
    vqgan_kwargs = {key: TINY[key] for key in ('img_size', 'nf', 'ch_mult', 'res_blocks', 'attn_resolutions',
                                               'codebook_size', 'emb_dim')}
    torch.manual_seed(3)
    vqgan = ARCH_REGISTRY.get('VQAutoEncoder')(**vqgan_kwargs)
    torch.save({'params_ema': vqgan.state_dict()}, tmp_path / 'vqgan.pth')
    model = build(vqgan_path=str(tmp_path / 'vqgan.pth'))
    for key, value in vqgan.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)


def test_bad_configuration_and_input_are_clear_errors():
    with pytest.raises(ValueError, match='latent_size 256 does not match the 8x8'):
        build(latent_size=256)
    with pytest.raises(ValueError, match=r"connect_list \['64'\]"):
        build(connect_list=['64'])
    with pytest.raises(ValueError, match='64 latent tokens'):
        build()(torch.zeros(1, 3, 64, 64))


def test_fix_modules_can_freeze_the_transformer_and_fusion():
    model = build(fix_modules=['quantize', 'generator', 'ft_layers', 'fuse_convs_dict'])
    frozen = ('quantize.', 'generator.', 'ft_layers.', 'fuse_convs_dict.')
    for name, param in model.named_parameters():
        assert param.requires_grad == (not name.startswith(frozen)), name
