"""vfsr-restore with real (small, random-weight) KEEP, CodeFormer and VidFace networks built from option files and
loaded through the real weights path (wrappers, strict, weights_only); KEEP's carried state; bad weights files."""
import json
import pickle
import warnings

import av
import pytest
import torch
import yaml
from conftest import randomize_like_reference

from vfsr_arch import acceleration
from vfsr_face.synthetic_video import FacePath, VideoSpec, write_video
from vfsr_io.checkpoint import read_checkpoint
from vfsr_restore.cli import main
from vfsr_restore.restorers import ARCH_REGISTRY, KEEPRestorer

TINY_KEEP = dict(type='KEEP', img_size=32, nf=32, ch_mult=[1, 1, 1], res_blocks=2, attn_resolutions=[8],
                 codebook_size=64, emb_dim=32, dim_embd=32, n_head=2, n_layers=2, latent_size=64,
                 cft_list=['8', '16', '32'], cfa_list=['8', '16'], cfa_nhead=2, cfa_dim=8, kalman_attn_head_dim=8,
                 num_uncertainty_layers=1, cond=1,
                 flownet_kwargs=dict(feature_channels=32, num_transformer_layers=1, ffn_dim_expansion=2))
TINY_CODEFORMER = dict(type='CodeFormer', img_size=32, nf=32, ch_mult=[1, 1, 1], res_blocks=2, attn_resolutions=[8],
                       emb_dim=32, codebook_size=64, latent_size=64, dim_embd=32, n_head=2, n_layers=2,
                       connect_list=['16', '32'])
SMALL_VIDFACE = dict(type='VidFace', num_frames=7, lr_size=[16, 12], embed_dim=22, depth=1, num_heads=4,
                     mlp_ratio=2.0, token_dim=8, deu_out_channels=2, deu_heads=2, deu_qk_dim=8, head_hidden=8)
FAST = ['--no-progress', '--min-face-size', '24', '--detector-batch', '12']


def network_files(tmp_path, network_g, wrapper='params_ema'):
    """An option file with ``network_g`` and a checkpoint of a random network of it (BasicSR wrapper)."""
    options = dict(network_g)
    net = ARCH_REGISTRY.get(options.pop('type'))(**options)
    randomize_like_reference(net, seed=1)
    option_file, weights = tmp_path / f'{network_g["type"]}.yml', tmp_path / f'{network_g["type"]}.pth'
    option_file.write_text(yaml.safe_dump({'network_g': network_g}))
    torch.save({wrapper: net.state_dict()}, weights)
    return option_file, weights, net.eval()


@pytest.fixture(scope='module')
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp('video') / 'face.mp4'
    write_video(path, VideoSpec(128, 96, 8, faces=[FacePath(40)]))
    return path


def frame_count(path):
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.mark.parametrize('model, network_g, extra', [
    ('keep', TINY_KEEP, ['--max-length', '4']),
    ('codeformer', TINY_CODEFORMER, ['--fidelity', '0.7']),
    ('vidface', SMALL_VIDFACE, ['--upscale', '2']),
])
def test_networks_from_option_files_restore_a_video(tmp_path, video, model, network_g, extra):
    option_file, weights, _ = network_files(tmp_path, network_g)
    output = tmp_path / 'out.mp4'
    assert main([str(video), '-o', str(output), '--model', model, '--opt', str(option_file), '--weights',
                 str(weights), *FAST, *extra]) == 0
    report = json.loads((tmp_path / 'out.mp4.json').read_text())
    assert frame_count(output) == report['frames_out'] == 8 and report['faces_restored'] == 8
    assert report['stage_seconds']['restore'] > 0


@pytest.mark.parametrize('precision', ['bf16', 'bf16-fast'])
def test_compile_and_bf16_where_they_cannot_run_warn_once_each_and_restore(tmp_path, video, broken_compiler,
                                                                            monkeypatch, precision):
    monkeypatch.setattr(acceleration, 'precision_supported', lambda precision, device: precision == 'fp32')
    option_file, weights, _ = network_files(tmp_path, TINY_CODEFORMER)
    output = tmp_path / 'out.mp4'
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('default')  # each warning once per place, as a user sees them
        assert main([str(video), '-o', str(output), '--model', 'codeformer', '--opt', str(option_file), '--weights',
                     str(weights), '--compile', '--precision', precision, *FAST]) == 0
    messages = [str(warning.message) for warning in caught]
    assert sum('torch.compile cannot compile here' in message for message in messages) == 1
    assert sum(f'{precision} is not supported natively' in message for message in messages) == 1
    assert all('\n' not in message for message in messages)
    assert frame_count(output) == 8


def test_keep_carried_state_equals_one_clip_level_run(tmp_path):
    """The pipeline feeds KEEP one crop at a time, tracks interleaved; with the state carried across chunks the
    result equals running the recursion over each whole clip at once. The first chunk equals the official restart
    mode, later chunks do not (no anchor restart)."""
    _, _, net = network_files(tmp_path, TINY_KEEP)
    generator = torch.Generator().manual_seed(0)
    clips = {track: (torch.rand(6, 3, 32, 32, generator=generator) * 255).byte() for track in (1, 2)}
    restorer = KEEPRestorer(net, max_length=3)
    results = {}
    for index in range(6):
        for track, clip in clips.items():
            results.update(restorer.push(track, (track, index), clip[index].permute(1, 2, 0).numpy()))
    for track in clips:
        results.update(restorer.end_track(track))
    for track, clip in clips.items():
        x = clip.float().div(127.5).sub(1)
        with torch.no_grad():
            state, whole = net.init_state(3, carry=True), []
            for frame in x:
                out, state = net.step(frame[None], state)
                whole.append(out)
            if state.measurements:
                whole.append(net.flush(state)[0])
            whole = torch.cat(whole, dim=1)[0]
        expected = whole.clamp(-1, 1).add(1).mul(127.5).round().byte().permute(0, 2, 3, 1).numpy()
        for index in range(6):
            assert (results[(track, index)] == expected[index]).all()
    official, restarted = KEEPRestorer(net, max_length=3, restart=True), {}
    for index in range(6):
        restarted.update(official.push(1, index, clips[1][index].permute(1, 2, 0).numpy()))
    restarted.update(official.end_track(1))
    assert all((restarted[index] == results[(1, index)]).all() for index in range(3))
    assert not (restarted[3] == results[(1, 3)]).all()


def test_bad_weights_files_are_one_line_errors_without_output(tmp_path, video, capsys):
    option_file, weights, _ = network_files(tmp_path, TINY_CODEFORMER)

    class Payload:
        def __reduce__(self):
            return (print, ('code from a checkpoint ran',))

    pickled_code = tmp_path / 'evil.pth'
    pickled_code.write_bytes(pickle.dumps({'params_ema': Payload()}))
    text_file = tmp_path / 'notes.pth'
    text_file.write_text('not a checkpoint')
    vidface_weights = network_files(tmp_path, SMALL_VIDFACE)[1]  # weights of another network
    cases = [(tmp_path / 'missing.pth', 'not found'), (pickled_code, str(pickled_code)), (text_file, str(text_file)),
             (vidface_weights, str(vidface_weights))]
    for weights_file, message in cases:
        output = tmp_path / 'out.mp4'
        code = main([str(video), '-o', str(output), '--model', 'codeformer', '--opt', str(option_file), '--weights',
                     str(weights_file), *FAST])
        err = capsys.readouterr()
        assert code == 1 and message in err.err and 'code from a checkpoint ran' not in err.out
        assert err.err.count('\n') == 1 and err.err.startswith('vfsr-restore: error:')
        assert not output.exists() and not list(tmp_path.glob('.out*'))
    # official weights missing: the error names the file and where it is published
    assert main([str(video), '-o', str(tmp_path / 'k.mp4'), '--weights-dir', str(tmp_path), *FAST]) == 1
    assert 'KEEP-b76feb75.pth' in capsys.readouterr().err


def test_realesrgan_background_tiles_equal_the_whole_frame_and_runs_in_the_cli(tmp_path, video):
    from basicsr.archs.rrdbnet_arch import RRDBNet

    from vfsr_restore.background import RealESRGANBackground

    net = randomize_like_reference(RRDBNet(3, 3, scale=2, num_feat=8, num_block=1, num_grow_ch=4), seed=2)
    weights = tmp_path / 'RealESRGAN_x2_tiny.pth'
    torch.save({'params_ema': net.state_dict()}, weights)
    image = (torch.rand(40, 56, 3, generator=torch.Generator().manual_seed(0)) * 255).byte().numpy()
    whole = RealESRGANBackground(weights, tile=1000)(image, 2)
    tiled = RealESRGANBackground(weights, tile=16, pad=48)(image, 2)
    assert whole.shape == (80, 112, 3) and abs(whole - tiled).max() < 0.5
    assert RealESRGANBackground(weights)(image, 3).shape == (120, 168, 3)  # x2 network, then Lanczos to x3
    output = tmp_path / 'bg.mp4'
    assert main([str(video), '-o', str(output), '--model', 'identity', '--background-weights', str(weights),
                 '--upscale', '2', *FAST]) == 0
    assert json.loads((tmp_path / 'bg.mp4.json').read_text())['output_size'] == [256, 192]
    (tmp_path / 'wrong.pth').write_bytes((tmp_path / 'bg.mp4').read_bytes()[:100])
    assert main([str(video), '-o', str(tmp_path / 'x.mp4'), '--model', 'identity', '--background-weights',
                 str(tmp_path / 'wrong.pth'), *FAST]) == 1


def decoded_frames(path):
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format='rgb24') for frame in container.decode(video=0)]


def test_keep_segments_and_resume_leave_no_seam(tmp_path, video, monkeypatch):
    """A run in segments of 2 frames (boundaries inside KEEP's 3-frame chunks, frames waiting for their plan),
    interrupted after a segment and rerun, loads the saved state (KEEP's carried tensors and unfinished chunk,
    smoothing, waiting frames) and gives the same pixels as one segment over the whole clip."""
    option_file, weights, _ = network_files(tmp_path, TINY_KEEP)
    options = ['--model', 'keep', '--opt', str(option_file), '--weights', str(weights), '--no-progress',
               '--min-face-size', '24', '--detector-batch', '2', '--max-length', '3', '--max-gap', '1', '--fade', '0',
               '--sigma', '0.5', '--crf', '0', '--pix-fmt', 'yuv444p']
    whole, resumed = tmp_path / 'whole.mp4', tmp_path / 'resumed.mp4'
    assert main([str(video), '-o', str(whole), *options, '--segment-frames', '1000']) == 0
    assert json.loads((tmp_path / 'whole.mp4.json').read_text())['faces_restored'] == 8

    real_push, calls = KEEPRestorer.push, []

    def interrupted_push(self, *args):  # Ctrl-C at the 6th crop, after the first segment was closed
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return real_push(self, *args)

    monkeypatch.setattr(KEEPRestorer, 'push', interrupted_push)
    assert main([str(video), '-o', str(resumed), *options, '--segment-frames', '2']) == 130
    work = tmp_path / '.resumed.mp4.vfsr-work'
    segments = json.loads((work / 'manifest.json').read_text())['segments']
    assert [segment['frames'] for segment in segments] == [3] and not resumed.exists()
    state = read_checkpoint(work / segments[0]['state'])
    assert state['waiting'] and state['restorer']['tracks'][1]['crops'], 'no boundary inside a chunk and a plan'
    monkeypatch.setattr(KEEPRestorer, 'push', real_push)
    assert main([str(video), '-o', str(resumed), *options, '--segment-frames', '2']) == 0
    assert json.loads((tmp_path / 'resumed.mp4.json').read_text())['faces_restored'] == 8
    assert all((a == b).all() for a, b in zip(decoded_frames(resumed), decoded_frames(whole), strict=True))


def test_parsing_mask_from_facexlib_weights_averaged_per_track(tmp_path, video, capsys):
    """--mask parsing loads facexlib's ParseNet (random weights here) from --weights-dir/facexlib through the real
    loading path and changes the paste; its mask is a moving average per track; missing weights are one line."""
    from facexlib.parsing.parsenet import ParseNet

    from vfsr_face.mask import ParsingMask

    with torch.random.fork_rng():
        torch.manual_seed(3)
        net = ParseNet(in_size=512, out_size=512, parsing_ch=19)
    with torch.no_grad():  # only background (0) and skin (1) compete: masks that differ from face to face
        net.out_mask_conv.conv2d.weight[2:] = 0
        net.out_mask_conv.conv2d.bias[:] = 0
        net.out_mask_conv.conv2d.bias[2:] = -1
    weights = tmp_path / 'weights' / 'facexlib' / 'parsing_parsenet.pth'
    weights.parent.mkdir(parents=True)
    torch.save(net.state_dict(), weights)
    faces = (torch.rand(2, 40, 40, 3, generator=torch.Generator().manual_seed(0)) * 255).byte().numpy()
    averaged = ParsingMask(weights, ema=0.25)
    masks = [averaged(7, face) for face in faces]
    averaged.keep_tracks(set())  # track 7 ended: a new track starts afresh
    fresh = averaged(7, faces[1])
    assert masks[0].shape == (40, 40) and 0 <= masks[0].min() and masks[0].max() <= 1
    assert abs(masks[0] - fresh).max() > 0.05  # the two faces have different masks, so averaging shows
    assert abs(masks[1] - (0.75 * masks[0] + 0.25 * fresh)).max() < 1e-3

    options = ['--model', 'identity', '--upscale', '2', *FAST, '--crf', '0', '--pix-fmt', 'yuv444p', '--end', '0.05']
    assert main([str(video), '-o', str(tmp_path / 'template.mp4'), *options]) == 0
    assert main([str(video), '-o', str(tmp_path / 'parsing.mp4'), *options, '--mask', 'parsing', '--weights-dir',
                 str(tmp_path / 'weights')]) == 0
    template, parsing = decoded_frames(tmp_path / 'template.mp4'), decoded_frames(tmp_path / 'parsing.mp4')
    assert 1 < len(parsing) < 8 and any((a != b).any() for a, b in zip(template, parsing, strict=True))
    capsys.readouterr()
    output = tmp_path / 'none.mp4'
    assert main([str(video), '-o', str(output), *options, '--mask', 'parsing', '--weights-dir', str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'parsing_parsenet.pth' in err and 'not found' in err and not output.exists()
