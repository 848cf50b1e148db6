"""KEEP: official checkpoint layout and outputs, streaming == clip forward, bounded state, stage gradients, errors."""
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

import vfsr_arch  # noqa: F401  (registers the archs)
from vfsr_arch.cross_frame_attention import CrossFrameFusionLayer
from vfsr_arch.kalman_filter import KalmanFilter
from vfsr_io.checkpoint import CheckpointError

# KEEP tiny A's layout (the smallest the VQGAN's GroupNorm(32) allows): 32x32 frames, 8x8 latent, a small GMFlow
TINY = dict(img_size=32, nf=32, ch_mult=[1, 1, 1], res_blocks=2, attn_resolutions=[8], codebook_size=64, emb_dim=32,
            dim_embd=32, n_head=2, n_layers=2, latent_size=64, cft_list=['8', '16', '32'], cfa_list=['8', '16'],
            cfa_nhead=2, cfa_dim=8, kalman_attn_head_dim=8, num_uncertainty_layers=1, cond=1,
            flownet_kwargs=dict(feature_channels=32, num_transformer_layers=1, ffn_dim_expansion=2))
# the official inference configurations (inference_keep.py model_configs)
OFFICIAL = dict(img_size=512, emb_dim=256, dim_embd=512, n_head=8, n_layers=9, codebook_size=1024,
                kalman_attn_head_dim=48, num_uncertainty_layers=3, cfa_list=['16', '32'], cfa_nhead=4, cfa_dim=256,
                cond=1)
VARIANT_CFT = {'KEEP': ['16', '32', '64'], 'KEEP-Asian': ['32', '64', '128', '256']}
# official option files' fix_modules for training stages 2 and 3
STAGE2_FROZEN = ['generator', 'quantize', 'flownet', 'cft_dict', 'hq_encoder']
STAGE3_FROZEN = ['generator', 'quantize', 'flownet', 'hq_encoder', 'kalman_filter', 'encoder', 'feat_emb',
                 'ft_layers', 'idx_pred_layer']


def build(**overrides):
    return ARCH_REGISTRY.get('KEEP')(**{**TINY, **overrides})


def randomized_tiny(**overrides):
    """Tiny KEEP with every tensor random, as in the reference data."""
    return randomize_like_reference(build(**overrides))


def clip(frames, seed=0):
    """A smooth random clip (1, frames, 3, 32, 32) in [-1, 1] whose frames drift, so the flows are not trivial."""
    generator = torch.Generator().manual_seed(seed)
    base = F.interpolate(torch.rand(1, 3, 12, 12, generator=generator) * 2 - 1, size=(40, 40), mode='bilinear')
    return torch.stack([base[:, :, i % 8:i % 8 + 32, (2 * i) % 8:(2 * i) % 8 + 32] for i in range(frames)], dim=1)


# ------------------------------------------------------------------------------------------ official equivalence
def test_reference_tiny_config_reproduces_the_official_outputs_and_intermediates():
    reference = load_reference('keep_tiny_A.pt')
    config = reference['config']
    model = build(**{key: config[key] for key in TINY if key != 'flownet_kwargs'},
                  flownet_kwargs=config['flownet_kwargs']).eval()
    assert (model.channels, model.fuse_encoder_block, model.fuse_generator_block) == tuple(
        config['derived'][key] for key in ('channels', 'fuse_encoder_block', 'fuse_generator_block'))
    model.load_state_dict(reference['state_dict'], strict=True)
    x, expected = reference['inputs']['x'], reference['outputs']
    with torch.no_grad():
        out = model(x, **config['forward_kwargs'])
        measurements = [model.measure_frame(x[:, i], x[:, i - 1] if i else None)[0] for i in range(x.shape[1])]
        chunk = model.restore(measurements)
    flows = torch.stack([m.flow_to_previous for m in measurements[1:]], dim=1)
    lq_feat = torch.stack([m.latent for m in measurements], dim=1).flatten(0, 1)
    for name, ours in (('out', out), ('flows', flows), ('kalman_gains', chunk.gains), ('lq_feat', lq_feat)):
        torch.testing.assert_close(ours, expected[name], atol=1e-4, rtol=0, msg=name)
    torch.testing.assert_close(chunk.outputs, out, atol=0, rtol=0)
    # The reference scales the code head by 20 (logits reach |75|) and float32 differences in frame 0's output are
    # amplified through the recurrence: compare relative to the logits' magnitude; the chosen codes must be equal.
    scale = expected['logits'].abs().max()
    torch.testing.assert_close(chunk.logits / scale, expected['logits'] / scale, atol=1e-4, rtol=0)
    assert torch.equal(chunk.logits.argmax(dim=3), expected['top_idx'])


@pytest.fixture(scope='module')
def official_key_lists():
    """Key lists of the two released configurations, each built once (158 M / 144 M parameters)."""
    lists = {}
    for variant, cft_list in VARIANT_CFT.items():
        model = ARCH_REGISTRY.get('KEEP')(**OFFICIAL, cft_list=cft_list)
        lists[variant] = (state_dict_key_list(model.state_dict()), sum(p.numel() for p in model.parameters()))
        del model
    return lists


@pytest.mark.parametrize('variant, pinned, reference', [
    ('KEEP', 'keep_keys.txt', 'keep_full_state_dict.txt'),
    ('KEEP-Asian', 'keep_asian_keys.txt', 'keep_asian_full_state_dict.txt')])
def test_official_configurations_have_the_pinned_and_the_official_key_lists(official_key_lists, variant, pinned,
                                                                            reference):
    keys, params = official_key_lists[variant]
    pinned_path = TEST_DATA_DIR / pinned
    assert keys == read_key_list(pinned_path)
    assert pinned_path.read_text().splitlines()[0] == f'# params: {params}'
    assert keys == reference_key_list(reference)


# -------------------------------------------------------------------------------------------------- streaming
def test_streaming_steps_equal_the_clip_forward_and_chunks_restart_the_anchor():
    model = randomized_tiny().eval()
    x = clip(5)
    with torch.no_grad():
        whole = model(x, need_upscale=False, max_length=2)
        state, streamed = model.init_state(max_length=2), []
        for index in range(x.shape[1]):
            restored, state = model.step(x[:, index], state)
            assert restored.shape[1] == (2 if index in (1, 3) else 0)
            streamed.append(restored)
        streamed.append(model.flush(state)[0])
        from_iterator = list(model.restore_video(iter(x.unbind(1)), max_length=2))
        second_chunk = model(x[:, 2:4], need_upscale=False)
        unchunked = model(x, need_upscale=False)
    assert whole.shape == (1, 5, 3, 32, 32)
    assert torch.equal(torch.cat(streamed, dim=1), whole)
    assert torch.equal(torch.stack(from_iterator, dim=1), whole)
    assert torch.equal(second_chunk, whole[:, 2:4])  # the chunk's first frame is a new anchor
    assert not torch.allclose(unchunked[:, 2:4], whole[:, 2:4])  # ... which changes the result


def test_each_frame_goes_through_the_flow_backbone_once_with_the_same_result(monkeypatch):
    model = randomized_tiny().eval()
    x = clip(5)
    with torch.no_grad():
        # every flow from its own pair of frames: no features handed on
        expected = model.restore([model.measure_frame(x[:, i], x[:, i - 1] if i else None)[0] for i in range(5)])
        backbone_calls = []
        extract = model.flownet.model.extract_features
        monkeypatch.setattr(model.flownet.model, 'extract_features',
                            lambda *args, **kwargs: backbone_calls.append(1) or extract(*args, **kwargs))
        streamed = list(model.restore_video(x, max_length=5))
    assert len(backbone_calls) == 5
    assert torch.equal(torch.stack(streamed, dim=1), expected.outputs)


def test_stream_state_does_not_grow_with_the_video_length():
    model = randomized_tiny().eval()

    def largest_state(frames):
        state, largest = model.init_state(max_length=2), 0
        with torch.no_grad():
            for frame in clip(frames).unbind(1):
                _, state = model.step(frame, state)
                largest = max(largest, state.nbytes())
        return largest

    assert 0 < largest_state(2) == largest_state(8)


def test_one_frame_clip_is_restored_as_the_official_duplicated_frame():
    model = randomized_tiny().eval()
    x = clip(1)
    with torch.no_grad():
        single = model(x, need_upscale=False)
        duplicated = model(x[:, [0, 0]], need_upscale=False)
    assert torch.equal(single[:, 0], duplicated[:, 0])
    with pytest.raises(ValueError, match='at least 2 frames'):
        model.train()(x, need_upscale=False)


def test_need_upscale_restores_quarter_size_frames():
    model = randomized_tiny().eval()
    small = clip(2)[..., ::4, ::4]
    with torch.no_grad():
        out = model(small)  # official default need_upscale=True
        expected = model(F.interpolate(small.flatten(0, 1), scale_factor=4, mode='bilinear').unflatten(0, (1, 2)),
                         need_upscale=False)
    assert torch.equal(out, expected)


def test_spynet_flow_estimator_restores_a_clip():
    # SpyNet's 5 pooling levels need frames of at least 64x64: one more VQGAN level keeps the 8x8 latent
    model = randomized_tiny(flow_type='spynet', img_size=64, ch_mult=[1, 1, 1, 1]).eval()
    x = F.interpolate(clip(2).flatten(0, 1), scale_factor=2, mode='bilinear').unflatten(0, (1, 2))
    with torch.no_grad():
        out = model(x, need_upscale=False)
    assert out.shape == (1, 2, 3, 64, 64) and torch.isfinite(out).all()
    assert not any(p.requires_grad for p in model.flownet.parameters())
    with pytest.raises(ValueError, match='at least 64x64'):
        randomized_tiny(flow_type='spynet').eval()(clip(2), need_upscale=False)


# ------------------------------------------------------------------------------------------------- training
def grads_by_module(model):
    """{top-level module: [whether each parameter got a non-zero gradient]}, None for a parameter with no grad."""
    result = {}
    for name, param in model.named_parameters():
        got = None if param.grad is None else bool(param.grad.abs().sum() > 0)
        result.setdefault(name.split('.')[0], []).append(got)
    return result


def test_stage2_gradients_reach_encoder_kalman_filter_and_transformer_only():
    model = randomized_tiny(cft_list=[], cfa_list=[], fix_modules=STAGE2_FROZEN, cond=0).train()
    result = model(clip(3), need_upscale=False)
    b_t, tokens, codebook = result.logits.shape
    assert (b_t, tokens, codebook) == (3, 64, 64) and result.lq_feat.shape == (3, 32, 8, 8)
    target_codes = torch.randint(0, codebook, (b_t, tokens), generator=torch.Generator().manual_seed(1))
    loss = F.cross_entropy(result.logits.transpose(1, 2), target_codes) + result.lq_feat.square().mean()
    loss.backward()
    grads = grads_by_module(model)
    for trained in ('encoder', 'kalman_filter', 'position_emb', 'feat_emb', 'ft_layers', 'idx_pred_layer'):
        assert all(grads[trained]), trained
    for frozen in ('flownet', 'hq_encoder', 'quantize', 'generator'):
        assert all(got is None for got in grads[frozen]), frozen


def test_stage3_gradients_reach_cft_and_cfa_only_and_temporal_features_are_returned():
    model = randomized_tiny(fix_modules=STAGE3_FROZEN, temp_reg_list=['16']).train()
    outputs, logits, lq_feat, temporal = model(clip(3), need_upscale=False)
    assert outputs.shape == (1, 3, 3, 32, 32) and temporal['16'].shape == (1, 3, 32, 16, 16)
    (outputs.abs().mean() + temporal['16'].square().mean()).backward()
    grads = grads_by_module(model)
    assert all(grads['cft']) and all(grads['cfa'])
    assert all(got is None for module in set(grads) - {'cft', 'cfa'} for got in grads[module])
    outputs_only, temporal_only = model(clip(3), need_upscale=False, early_feat=False)
    assert outputs_only.shape == outputs.shape and set(temporal_only) == {'16'}


# -------------------------------------------------------------------------------------------------- modules
def test_kalman_update_blends_measurement_and_prediction_by_the_gain():
    measured, predicted = torch.zeros(1, 4, 2, 2), torch.ones(1, 4, 2, 2)
    gain = torch.tensor([0., 0.25, 1., 0.5]).view(1, 1, 2, 2)
    assert torch.equal(KalmanFilter.update(measured, predicted, gain), gain.expand(1, 4, 2, 2))
    gains = KalmanFilter(32, 2, 8, 1).gain(torch.randn(2, 3, 32, 4, 4))
    assert gains.shape == (2, 3, 1, 4, 4) and ((gains > 0) & (gains < 1)).all()


def test_fresh_cross_frame_attention_is_the_identity_with_residuals():
    layer = CrossFrameFusionLayer(32, 2, 8)
    current, previous = torch.randn(1, 32, 4, 4), torch.randn(1, 32, 4, 4)
    assert torch.equal(layer(current, previous), current)


# ----------------------------------------------------------------------------------------- checkpoints, errors
def test_checkpoints_load_from_wrappers_and_vqgan_and_flow_weights_are_loaded(tmp_path):
    source = randomized_tiny()
    for wrapper in ('params_ema', 'params', 'model'):
        torch.save({wrapper: source.state_dict()}, tmp_path / 'keep.pth')
        target = build()
        target.load_checkpoint(tmp_path / 'keep.pth')
        assert all(torch.equal(a, b) for a, b in zip(target.state_dict().values(), source.state_dict().values()))

    vqgan = {k: v for k, v in source.state_dict().items() if k.split('.')[0] in ('encoder', 'quantize', 'generator')}
    torch.save({'params_ema': vqgan}, tmp_path / 'vqgan.pth')
    torch.save({'model': source.flownet.model.state_dict()}, tmp_path / 'gmflow.pth')
    model = build(vqgan_path=tmp_path / 'vqgan.pth', flownet_path=tmp_path / 'gmflow.pth')
    for prefix in ('encoder', 'hq_encoder', 'generator', 'quantize', 'flownet'):
        ours = {k.split('.', 1)[1]: v for k, v in model.state_dict().items() if k.startswith(prefix + '.')}
        theirs = {k.split('.', 1)[1]: v for k, v in source.state_dict().items()
                  if k.startswith(('encoder' if prefix == 'hq_encoder' else prefix) + '.')}
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), prefix


def test_missing_weights_name_the_file_and_the_release():
    with pytest.raises(FileNotFoundError, match=r'nowhere/KEEP\.pth.*jnjaby/KEEP/releases'):
        build().load_checkpoint('nowhere/KEEP.pth')
    with pytest.raises(FileNotFoundError, match='gmflow'):
        build(flownet_path='nowhere/gmflow.pth')


def test_checkpoint_of_the_other_variant_names_the_option(tmp_path):
    torch.save({'params_ema': build(cft_list=['16', '32']).state_dict()}, tmp_path / 'other.pth')
    with pytest.raises(CheckpointError, match=r"a checkpoint of KEEP built with a different configuration: build "
                                              r"the network with cft_list: \['16', '32'\] instead of "
                                              r"\['8', '16', '32'\]$"):
        build().load_checkpoint(tmp_path / 'other.pth')
    asian = {key: value for key, value in build().state_dict().items() if not key.startswith('cft.')}
    asian.update({f'cft.{size}.scale.0.bias': torch.zeros(1) for size in VARIANT_CFT['KEEP-Asian']})
    torch.save(asian, tmp_path / 'asian.pth')
    with pytest.raises(CheckpointError, match=r"cft_list: \['32', '64', '128', '256'\] \(the released KEEP-Asian\)"):
        build().load_checkpoint(tmp_path / 'asian.pth')
    build().load_state_dict(build(cft_list=['16', '32']).state_dict(), strict=False)  # e.g. stage 2 -> stage 3


@pytest.mark.parametrize('frames, need_upscale', [(torch.zeros(1, 2, 3, 24, 24), False),
                                                  (torch.zeros(1, 2, 3, 32, 32), True),
                                                  (torch.zeros(1, 2, 3, 32, 48), False)])
def test_frames_of_the_wrong_size_are_rejected(frames, need_upscale):
    with pytest.raises(ValueError, match='frames must be'):
        build().eval()(frames, need_upscale=need_upscale)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match=r'clips \(b, t, 3, H, W\)'):
        build().eval()(torch.zeros(1, 3, 32, 32), need_upscale=False)
    with pytest.raises(ValueError, match='no submodule'):
        build(fix_modules=['decoder'])
    with pytest.raises(ValueError, match="'nearest'"):
        build(quantizer_type='gumbel')
    with pytest.raises(ValueError, match='cft_list'):
        build(cft_list=['64'])
    with pytest.raises(ValueError, match='latent_size'):
        build(latent_size=256)
