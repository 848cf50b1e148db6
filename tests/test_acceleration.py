"""Speed options (vfsr_arch/acceleration.py): under bf16 autocast KEEP and CodeFormer keep their precision-sensitive
parts in float32, the float32 regions are exact without autocast, and compile / bf16 fall back with a one-line
warning where they cannot run."""
import math
import platform
import warnings

import vfsr_compat  # noqa: F401  (before basicsr)

import pytest
import torch
import yaml
from basicsr.models import build_model
from conftest import REPO_ROOT, with_realistic_code_margins
from test_codeformer_arch import randomized_tiny as randomized_tiny_codeformer
from test_keep_arch import clip
from test_keep_arch import randomized_tiny as randomized_tiny_keep
from test_vidface_model import build as build_vidface_model
from test_vidface_model import loader as vidface_loader

import vfsr_models  # noqa: F401  (registers the models)
from datasets_prep.make_demo_tufs import make_demo_tufs
from vfsr_arch.acceleration import (
    autocast_context,
    compile_network,
    compiler_available,
    float32_under_autocast,
    keep_freed_memory,
    precision_supported,
    training_autocast,
)

needs_bf16 = pytest.mark.skipif(not precision_supported('bf16', 'cpu'),
                                reason='this CPU has no native bf16 (AVX512-BF16 / AMX)')


def psnr(output: torch.Tensor, reference: torch.Tensor) -> float:
    """Images in [-1, 1], as saved (clamped)."""
    mse = (output.float().clamp(-1, 1) - reference.clamp(-1, 1)).square().mean().item()
    return 10 * math.log10(4 / mse) if mse > 0 else math.inf


# Issue 11 asks bf16 to keep >= 99.9% of the code choices and >= 40 dB against fp32, with weights whose code head
# has realistic margins (x20, the reference rule). The encoders run in float32 for that (their latent picks the
# codes); CodeFormer meets it. KEEP's anchor frame keeps every code, but its later frames re-encode the previous
# bf16 output, and with random weights that flips codes (docs/benchmarks.md, "bf16 and the answer"): pinned as is.
@needs_bf16
def test_keep_in_bf16_keeps_encoders_flows_gains_and_logits_in_float32_and_every_anchor_code():
    model = with_realistic_code_margins(randomized_tiny_keep()).eval()
    x = clip(3)

    def run(precision):
        with torch.no_grad(), autocast_context(precision, 'cpu'):
            measurements = [model.measure_frame(x[:, i], x[:, i - 1] if i else None)[0] for i in range(x.shape[1])]
            return model.restore(measurements), measurements

    (fp32, fp32_measurements), (bf16, bf16_measurements) = run('fp32'), run('bf16')
    assert bf16.logits.dtype == bf16.gains.dtype == torch.float32
    for ours, reference in zip(bf16_measurements, fp32_measurements):
        assert torch.equal(ours.latent, reference.latent)  # the encoder ran in float32
        if reference.flow_to_previous is not None:
            assert torch.equal(ours.flow_to_previous, reference.flow_to_previous)  # GMFlow ran in float32
    assert bf16.outputs.dtype == torch.bfloat16  # the generator ran in bf16
    assert torch.equal(bf16.logits[:, 0].argmax(-1), fp32.logits[:, 0].argmax(-1))
    assert psnr(bf16.outputs[:, 0], fp32.outputs[:, 0]) >= 35


@needs_bf16
def test_codeformer_in_bf16_keeps_the_codes_and_40_db():
    model = with_realistic_code_margins(randomized_tiny_codeformer()).eval()
    x = clip(1)[:, 0]

    def run(precision):
        with torch.no_grad(), autocast_context(precision, 'cpu'):
            return model(x, w=0.5, adain=True)[:2]

    (fp32, fp32_logits), (bf16, bf16_logits) = run('fp32'), run('bf16')
    assert bf16_logits.dtype == torch.float32 and bf16.dtype == torch.bfloat16
    assert (bf16_logits.argmax(-1) == fp32_logits.argmax(-1)).float().mean() >= 0.999
    assert psnr(bf16, fp32) >= 40


@needs_bf16
def test_bf16_fast_runs_the_encoders_in_bf16_and_only_inside_its_context():
    model = randomized_tiny_codeformer().eval()
    x = clip(1)[:, 0]
    fast = autocast_context('bf16-fast', 'cpu')
    with torch.no_grad():
        for _ in range(2):  # reusable, like torch.autocast
            with fast:
                assert model(x, w=0.5, code_only=True)[1].dtype == torch.bfloat16
            with autocast_context('bf16', 'cpu'):  # outside bf16-fast the encoder is float32 again
                assert model(x, w=0.5, code_only=True)[1].dtype == torch.float32
        with torch.autocast('cpu', dtype=torch.bfloat16):  # plain autocast: codes exact too
            assert model(x, w=0.5, code_only=True)[1].dtype == torch.float32


def test_float32_region_is_the_plain_function_without_autocast_and_float32_under_it():
    @float32_under_autocast
    def product(a, b, scale=1.0):
        return a @ b * scale

    a, b = torch.randn(8, 8), torch.randn(8, 8)
    assert torch.equal(product(a, b, scale=2.0), a @ b * 2.0)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert (a @ b).dtype == torch.bfloat16
        result = product(a.bfloat16(), b, scale=2.0)
    assert result.dtype == torch.float32
    torch.testing.assert_close(result, a.bfloat16().float() @ b * 2.0)


def test_keeping_freed_memory_leaves_the_float32_output_bit_identical():
    model = randomized_tiny_codeformer().eval()
    x = clip(1)[:, 0]
    with torch.no_grad():
        before = model(x, w=0.5, adain=True)[0]
        applied = keep_freed_memory()
        after = model(x, w=0.5, adain=True)[0]
    assert applied or platform.libc_ver()[0] != 'glibc'  # off glibc it is a silent no-op
    assert torch.equal(before, after)


def test_unknown_or_unsupported_precision():
    with pytest.raises(ValueError, match='precision must be one of'):
        autocast_context('int8', 'cpu')
    # fp16 autocast is for GPUs: on the CPU it is a one-line warning and the float32 path
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        context = autocast_context('fp16', 'cpu')
    assert len(caught) == 1 and 'running in fp32' in str(caught[0].message)
    assert '\n' not in str(caught[0].message)
    with context:
        assert not torch.is_autocast_enabled('cpu')


# after_an_earlier_compile: compile_network turns dynamo's suppress_errors on for the process, which must not hide a
# broken compiler from the next call's probe
@pytest.mark.parametrize('after_an_earlier_compile', [False, True])
def test_compile_without_a_working_compiler_warns_once_and_runs_eagerly(broken_compiler, after_an_earlier_compile):
    model = randomized_tiny_codeformer().eval()
    x = clip(1)[:, 0]
    with torch.no_grad():
        expected = model(x, w=0.5)[0]
    with warnings.catch_warnings(record=True) as caught, \
            torch._dynamo.config.patch(suppress_errors=after_an_earlier_compile):
        warnings.simplefilter('always')
        compiled = compile_network(model)
    messages = [str(w.message) for w in caught if 'torch.compile' in str(w.message)]
    assert len(messages) == 1 and 'running eagerly' in messages[0] and '\n' not in messages[0]
    assert compiled is model and model._compiled_call_impl is None
    with torch.no_grad():
        assert torch.equal(compiled(x, w=0.5)[0], expected)


def test_compile_disabled_returns_the_network_untouched():
    model = randomized_tiny_codeformer()
    assert compile_network(model, enabled=False) is model
    assert all(module._compiled_call_impl is None for module in model.modules())


# ------------------------------------------------------------------------------------------------ training steps
def keep_stage2_model(tmp_path, autocast='fp32', compile=False):
    """KEEPModel (stage 2) from the tiny option file, in this process, with random instead of stage-1 weights."""
    opt = yaml.safe_load((REPO_ROOT / 'tests' / 'options' / 'keep_tiny_stage2.yml').read_text())
    opt['network_g'].update(vqgan_path=None, flownet_path=None)
    opt.update(is_train=True, dist=False, rank=0, world_size=1)
    opt['path'].update(log=str(tmp_path), experiments_root=str(tmp_path))
    opt['train'].update(autocast=autocast, compile=compile)
    torch.manual_seed(0)
    return build_model(opt)


@needs_bf16
def test_keep_stage2_step_in_bf16_gives_finite_losses_close_to_fp32(tmp_path):
    generator = torch.Generator().manual_seed(0)
    batch = {'lq': torch.rand(1, 3, 3, 8, 8, generator=generator) * 2 - 1,
             'gt': torch.rand(1, 3, 3, 32, 32, generator=generator) * 2 - 1}
    losses = {}
    for autocast in ('fp32', 'bf16'):
        model = keep_stage2_model(tmp_path, autocast)
        before = {name: p.detach().clone() for name, p in model.net_g.named_parameters() if p.requires_grad}
        model.feed_data(batch)
        model.optimize_parameters(1)
        losses[autocast] = {name: float(value) for name, value in model.log_dict.items()}
        assert model.output.dtype == torch.float32
        assert any(not torch.equal(p, before[name]) for name, p in model.net_g.named_parameters() if name in before)
    assert all(math.isfinite(value) for value in losses['bf16'].values()), losses
    for name in ('l_pix', 'l_feat_encoder', 'l_cross_entropy'):
        assert losses['bf16'][name] == pytest.approx(losses['fp32'][name], rel=0.05), name


@needs_bf16
def test_vidface_step_in_bf16_gives_finite_losses_close_to_fp32(tmp_path):
    demo_root = make_demo_tufs(tmp_path / 'demo_tufs', num_train=1, num_val=1)
    batch = next(iter(vidface_loader(demo_root, batch_size=1)))
    losses = {}
    for autocast in ('fp32', 'bf16'):
        model = build_vidface_model(tmp_path / autocast, autocast=autocast)
        model.feed_data(batch)
        model.optimize_parameters(1)
        losses[autocast] = {name: float(value) for name, value in model.log_dict.items()}
    assert all(math.isfinite(value) for value in losses['bf16'].values()), losses
    assert losses['bf16']['l_pix'] == pytest.approx(losses['fp32']['l_pix'], rel=0.02)


def test_train_compile_without_a_working_compiler_warns_once_and_trains_eagerly(tmp_path, broken_compiler):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        model = keep_stage2_model(tmp_path, compile=True)
    messages = [str(w.message) for w in caught if 'torch.compile' in str(w.message)]
    assert len(messages) == 1 and 'running eagerly' in messages[0]
    assert all(module._compiled_call_impl is None for module in model.net_g.modules())
    model.feed_data({'lq': torch.rand(1, 3, 3, 8, 8) * 2 - 1, 'gt': torch.rand(1, 3, 3, 32, 32) * 2 - 1})
    model.optimize_parameters(1)
    assert all(math.isfinite(float(value)) for value in model.log_dict.values())


def test_training_autocast_takes_bf16_or_fp32_only():
    with pytest.raises(ValueError, match="train.autocast must be 'bf16' or 'fp32', got 'fp16'"):
        training_autocast('fp16', 'cpu')
    with training_autocast(None, 'cpu'):
        assert not torch.is_autocast_enabled('cpu')


def codeformer_codes_and_output(net, x):
    out, logits, _ = net(x[:, 0], w=0.5, adain=True)
    return out, logits


def keep_codes_and_outputs(net, x):
    chunk = net.restore([net.measure_frame(x[:, i], x[:, i - 1] if i else None)[0] for i in range(x.shape[1])])
    return chunk.outputs, chunk.logits


# inductor compiles these in about 70 s on 2 cores with a cold cache (seconds with a warm one)
@pytest.mark.parametrize('build, run', [(randomized_tiny_codeformer, codeformer_codes_and_output),
                                        (randomized_tiny_keep, keep_codes_and_outputs)])
def test_compiled_network_gives_the_same_codes_and_outputs(build, run):
    torch._dynamo.reset()
    if (reason := compiler_available()) is not None:
        pytest.skip(f'torch.compile cannot compile on this machine: {reason}')
    model, x = with_realistic_code_margins(build()).eval(), clip(2)
    keys = list(model.state_dict())
    with torch.no_grad():
        expected, expected_logits = run(model, x)
        compiled = compile_network(model)
        out, logits = run(compiled, x)
    assert compiled is model and list(model.state_dict()) == keys
    assert any(module._compiled_call_impl is not None for module in model.modules())
    assert torch.equal(logits.argmax(-1), expected_logits.argmax(-1))
    torch.testing.assert_close(out, expected, atol=1e-3, rtol=0)
