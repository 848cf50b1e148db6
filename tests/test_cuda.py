"""The GPU path (skipped without CUDA; CI has none, benchmarks/gpu_checks.sh runs it on a lent GPU): in float32 the
networks give the CPU's answer (which the reference tests tie to the official code), bf16 and fp16 autocast keep the
code choices, KEEP's streaming equals its clip forward, compiled networks give the eager answer, and vfsr-restore
restores a video on the GPU."""
import contextlib
import json

import vfsr_compat  # noqa: F401  (before basicsr)

import pytest
import torch
from conftest import with_realistic_code_margins
from test_acceleration import codeformer_codes_and_output, keep_codes_and_outputs, psnr
from test_codeformer_arch import randomized_tiny as randomized_tiny_codeformer
from test_keep_arch import clip
from test_keep_arch import randomized_tiny as randomized_tiny_keep
from test_restore_networks import FAST, TINY_CODEFORMER, TINY_KEEP, frame_count, network_files, video  # noqa: F401
from test_vidface_arch import SMALL as SMALL_VIDFACE
from test_vidface_arch import build as build_vidface
from test_vidface_arch import small_input as small_vidface_input

from vfsr_arch.acceleration import autocast_context, compile_network, compiler_available
from vfsr_restore.cli import main as restore_main

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA GPU')


@pytest.fixture(autouse=True)
def no_tf32():
    """Float32 means float32: TF32 (cuDNN's default for convolutions) would round the comparison to the CPU."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def vidface_output(net, x):
    image, landmarks = net(x)
    return image, landmarks[-1]


# (build, input, run): run(net, x) -> (image, logits or landmarks); codes are logits.argmax(-1) where there are any
NETWORKS = {
    'codeformer': (randomized_tiny_codeformer, lambda: clip(1), codeformer_codes_and_output),
    'keep': (randomized_tiny_keep, lambda: clip(3), keep_codes_and_outputs),
    'vidface': (lambda: build_vidface(**SMALL_VIDFACE), lambda: small_vidface_input(), vidface_output),
}


def on(device, network, x):
    return network.to(device).eval(), x.to(device)


@pytest.mark.parametrize('name', list(NETWORKS))
def test_float32_on_cuda_gives_the_cpu_answer(name):
    build, make_input, run = NETWORKS[name]
    network, x = build(), make_input()
    if name != 'vidface':
        network = with_realistic_code_margins(network)
    with torch.no_grad():
        cpu_image, cpu_second = run(*on('cpu', network, x))
        cuda_image, cuda_second = run(*on('cuda', network, x))
    if name == 'vidface':
        torch.testing.assert_close(cuda_second.cpu(), cpu_second, atol=1e-4, rtol=1e-4)  # landmarks
    else:
        assert torch.equal(cuda_second.argmax(-1).cpu(), cpu_second.argmax(-1))  # the codes
    torch.testing.assert_close(cuda_image.cpu(), cpu_image, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize('precision', ['bf16', 'fp16'])
@pytest.mark.parametrize('name', ['codeformer', 'keep'])
def test_low_precision_on_cuda_keeps_the_codes_of_float32(name, precision):
    """The CPU's bf16 policy (encoders, code logits, gains and flows in float32) on the GPU, with fp16 too. KEEP's
    later frames re-encode the previous low-precision output (docs/benchmarks.md): only its anchor is held to all
    codes, and to 35 dB as on the CPU (CodeFormer 40 dB)."""
    build, make_input, run = NETWORKS[name]
    network, x = on('cuda', with_realistic_code_margins(build()), make_input())
    with torch.no_grad():
        image, logits = run(network, x)
        with autocast_context(precision, 'cuda'):
            low_image, low_logits = run(network, x)
    assert low_logits.dtype == torch.float32
    if name == 'keep':
        image, low_image, logits, low_logits = image[:, 0], low_image[:, 0], logits[:, 0], low_logits[:, 0]
    assert torch.equal(low_logits.argmax(-1), logits.argmax(-1))
    assert psnr(low_image.float(), image) >= (35 if name == 'keep' else 40)


def test_keep_streaming_on_cuda_equals_its_clip_forward():
    network, x = on('cuda', randomized_tiny_keep(), clip(5))
    with torch.no_grad():
        whole = network(x, need_upscale=False, max_length=2)
        streamed = torch.stack(list(network.restore_video(iter(x.unbind(1)), max_length=2)), dim=1)
    assert torch.equal(streamed, whole)


def test_compiled_network_on_cuda_gives_the_eager_codes_and_outputs():
    torch._dynamo.reset()
    if (reason := compiler_available()) is not None:
        pytest.skip(f'torch.compile cannot compile here: {reason}')
    network, x = on('cuda', with_realistic_code_margins(randomized_tiny_codeformer()), clip(1))
    with torch.no_grad():
        expected, expected_logits = codeformer_codes_and_output(network, x)
        out, logits = codeformer_codes_and_output(compile_network(network), x)
    assert torch.equal(logits.argmax(-1), expected_logits.argmax(-1))
    torch.testing.assert_close(out, expected, atol=1e-3, rtol=0)


@pytest.mark.parametrize('model, network_g, precision', [('keep', TINY_KEEP, 'bf16'),
                                                         ('codeformer', TINY_CODEFORMER, 'fp16')])
def test_restore_cli_on_cuda(tmp_path, video, model, network_g, precision):  # noqa: F811 (the video fixture)
    option_file, weights, _ = network_files(tmp_path, network_g)
    output = tmp_path / 'out.mp4'
    assert restore_main([str(video), '-o', str(output), '--model', model, '--opt', str(option_file), '--weights',
                         str(weights), '--device', 'cuda', '--precision', precision, *FAST]) == 0
    report = json.loads((tmp_path / 'out.mp4.json').read_text())
    assert frame_count(output) == report['frames_out'] == 8 and report['faces_restored'] == 8
    assert report['peak_memory']['cuda_peak_allocated_mb'] > 0


@pytest.mark.parametrize('detector_name', ['mtcnn', 'retinaface'])
def test_detection_on_its_own_cuda_stream_gives_the_answers_of_the_main_thread(tmp_path, detector_name):
    """vfsr-restore runs detection on the network's GPU, in a worker thread on its own stream (DetectionQueue), so
    that the detector and the network overlap; the faces found must be those of a plain call."""
    from vfsr_face.detection import build_face_detector, detector_weights
    from vfsr_face.synthetic_video import FacePath, VideoSpec, write_video
    from vfsr_restore.media import probe, read_frames
    from vfsr_restore.pipeline import DetectionQueue

    if detector_name == 'retinaface' and not detector_weights('retinaface', 'weights').is_file():
        pytest.skip('RetinaFace weights are not under weights/')
    source = tmp_path / 'faces.mp4'
    write_video(source, VideoSpec(320, 240, 8, faces=[FacePath(60, (0.3, 0.5)), FacePath(50, (0.7, 0.4))]))
    images = [frame.image for frame in read_frames(probe(source))]
    detector = build_face_detector(detector_name, 'weights', 'cuda', batch_size=4, min_score=0.9)
    plain = [detector.detect(images[:4]), detector.detect(images[4:])]
    queue = DetectionQueue(lambda: contextlib.nullcontext(), torch.device('cuda'))
    queue.submit(0, lambda: detector.detect(images[:4]))
    queue.submit(1, lambda: detector.detect(images[4:]))
    overlapped = [answer for _, answer in queue.done(wait_all=True)]
    queue.close()
    assert sum(len(faces) for batch in plain for faces in batch) >= 8
    for plain_batch, overlapped_batch in zip(plain, overlapped, strict=True):
        for plain_faces, overlapped_faces in zip(plain_batch, overlapped_batch, strict=True):
            assert len(plain_faces) == len(overlapped_faces)
            for a, b in zip(plain_faces, overlapped_faces):
                assert abs(a.landmarks - b.landmarks).max() < 1e-3 and abs(a.box - b.box).max() < 1e-3
