"""vfsr-restore robustness: a killed run continues where it stopped and gives the same file as an uninterrupted
run; torchrun shards a folder of videos over processes; bad inputs get one clear line and leave no output."""
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, default_sigint

from vfsr_face.synthetic_video import FacePath, VideoSpec, write_video
from vfsr_restore.cli import main

FAST = ['--model', 'identity', '--no-progress', '--min-face-size', '24']


def cli_process(*args, low_priority=False):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS='1')
    return subprocess.Popen([sys.executable, '-m', 'vfsr_restore.cli', *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=low_priority_default_sigint if low_priority else default_sigint)


def low_priority_default_sigint() -> None:
    """A child that this test stops in the middle: on a busy machine, at the lowest priority, it cannot run to its
    end while the test waits for its first segment."""
    default_sigint()
    os.nice(19)


def stop_after_a_segment(process, manifest: Path, segments: int) -> None:
    """Wait for the run's first finished segment and freeze it there (SIGSTOP), asserting that it is mid-run; the
    signal the test then sends is delivered on SIGCONT."""
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if manifest.is_file() and json.loads(manifest.read_text())['segments']:
            process.send_signal(signal.SIGSTOP)
            break
        time.sleep(0.01)
    assert process.poll() is None, f'the run ended before the test could stop it: {process.stderr.read()}'
    finished = len(json.loads(manifest.read_text())['segments'])
    assert 1 <= finished < segments, f'{finished} of {segments} segments finished: not in the middle of the run'


def signal_stopped(process, signal_number: int) -> None:
    process.send_signal(signal_number)
    process.send_signal(signal.SIGCONT)


@pytest.mark.parametrize('encoding', [[], ['--crf', '0']], ids=['default', 'lossless'])
def test_killed_run_resumes_to_the_same_file(tmp_path, encoding):
    """The uninterrupted and the killed run compute on one thread; the resumed run, in this process with two, goes
    back to the one its manifest recorded (CPU kernels round by thread count, a level of a pasted pixel, which the
    lossless encoding keeps)."""
    source = tmp_path / 'face.mp4'
    write_video(source, VideoSpec(128, 96, 16, faces=[FacePath(40)]))
    options = [*FAST, '--segment-frames', '2', '--detector-batch', '2', '--compare', *encoding]
    whole = cli_process(source, '-o', tmp_path / 'whole.mp4', *options)
    assert whole.wait(timeout=300) == 0, whole.stderr.read()

    output = tmp_path / 'resumed.mp4'
    manifest = tmp_path / '.resumed.mp4.vfsr-work' / 'manifest.json'
    process = cli_process(source, '-o', output, *options, low_priority=True)
    stop_after_a_segment(process, manifest, segments=8)
    signal_stopped(process, signal.SIGKILL)
    process.wait()
    assert not output.exists() and not (tmp_path / 'resumed_compare.mp4').exists()

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert main([str(source), '-o', str(output), *options]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert output.read_bytes() == (tmp_path / 'whole.mp4').read_bytes()
    report = json.loads((tmp_path / 'resumed.mp4.json').read_text())
    assert report['tracks'] == {'1': {'first_frame': 0, 'last_frame': 15}}  # one id through the 8 segments
    assert report['torch_threads'] == 1
    assert (tmp_path / 'resumed_compare.mp4').read_bytes() == (tmp_path / 'whole_compare.mp4').read_bytes()
    assert not manifest.parent.exists()


@pytest.mark.parametrize('signal_number, exit_code, word', [(signal.SIGINT, 130, 'interrupted'),
                                                            (signal.SIGTERM, 143, 'terminated')])
def test_interrupted_run_says_how_to_resume_and_keeps_its_segments(tmp_path, signal_number, exit_code, word):
    source, output = tmp_path / 'face.mp4', tmp_path / 'out.mp4'
    write_video(source, VideoSpec(128, 96, 40, faces=[FacePath(40)], audio_rate=None))
    manifest = tmp_path / '.out.mp4.vfsr-work' / 'manifest.json'
    process = cli_process(source, '-o', output, *FAST, '--segment-frames', '2', '--detector-batch', '2',
                          low_priority=True)
    stop_after_a_segment(process, manifest, segments=20)
    signal_stopped(process, signal_number)
    _, err = process.communicate(timeout=120)
    assert process.returncode == exit_code, err
    assert err == f'vfsr-restore: {word}; finished segments are kept: rerun the same command to continue\n'
    assert json.loads(manifest.read_text())['segments'] and not output.exists()


def test_torchrun_shards_a_folder_of_videos(tmp_path):
    folder, out = tmp_path / 'videos', tmp_path / 'restored'
    folder.mkdir()
    for index in range(3):
        write_video(folder / f'clip{index}.mp4', VideoSpec(96, 64, 4, faces=[], audio_rate=None))
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS='1')
    result = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                             '-m', 'vfsr_restore.cli', str(folder), '-o', str(out), *FAST], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(path.name for path in out.glob('*.mp4')) == ['clip0.mp4', 'clip1.mp4', 'clip2.mp4']
    for index in range(3):
        assert result.stderr.count(f'wrote {out / f"clip{index}.mp4"}') == 1


def write_gray_video(path, size=(64, 48), frames=3, pix_fmt='gray'):
    with av.open(str(path), 'w') as container:
        stream = container.add_stream('ffv1' if pix_fmt == 'gray' else 'libx264', rate=25)
        stream.width, stream.height, stream.pix_fmt = *size, pix_fmt
        for index in range(frames):
            image = np.full((size[1], size[0]), 40 * index, np.uint8)
            frame = av.VideoFrame.from_ndarray(image if pix_fmt == 'gray' else np.dstack([image] * 3),
                                               format='gray' if pix_fmt == 'gray' else 'rgb24')
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


@pytest.fixture(scope='module')
def bad_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp('bad')
    (root / 'empty.mp4').write_bytes(b'')
    (root / 'notes.mp4').write_text('this is not a video\n')
    write_video(root / 'good.mp4', VideoSpec(96, 64, 6, faces=[]))
    (root / 'truncated.mp4').write_bytes((root / 'good.mp4').read_bytes()[:600])
    mixed = root / 'mixed'
    mixed.mkdir()
    cv2.imwrite(str(mixed / '0.png'), np.zeros((32, 32, 3), np.uint8))
    cv2.imwrite(str(mixed / '1.png'), np.zeros((40, 32, 3), np.uint8))
    corrupt = root / 'corrupt'
    corrupt.mkdir()
    cv2.imwrite(str(corrupt / '0.png'), np.zeros((32, 32, 3), np.uint8))
    (corrupt / '1.png').write_bytes(b'\x89PNG broken')
    return root


@pytest.mark.parametrize('name, message', [
    ('empty.mp4', 'empty file'),
    ('notes.mp4', 'not a video or image'),
    ('truncated.mp4', 'truncated.mp4'),
    ('mixed', 'all frames must have one size'),
    ('corrupt', '1.png: not a readable image'),
    ('missing.mp4', 'no such file'),
])
def test_bad_input_is_one_line_and_leaves_no_output(bad_inputs, tmp_path, capsys, name, message):
    output = tmp_path / 'out.mp4'
    assert main([str(bad_inputs / name), '-o', str(output), *FAST]) == 1
    err = capsys.readouterr().err
    assert err.startswith('vfsr-restore: error:') and err.count('\n') == 1 and message in err
    assert 'Traceback' not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize('size, frames, pix_fmt', [((64, 48), 3, 'gray'), ((2, 2), 2, 'yuv444p'),
                                                   ((64, 48), 1, 'yuv420p'), ((640, 16), 2, 'yuv420p')])
def test_odd_but_valid_videos_pass_through(tmp_path, size, frames, pix_fmt):
    source = tmp_path / 'in.mkv'
    write_gray_video(source, size, frames, pix_fmt)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        assert main([str(source), '-o', str(tmp_path / 'out.mp4'), *FAST, '--upscale', '3']) == 0
    with av.open(str(tmp_path / 'out.mp4')) as container:
        decoded = [frame.to_ndarray(format='rgb24') for frame in container.decode(video=0)]
    assert len(decoded) == frames and decoded[0].shape == (size[1] * 3, size[0] * 3, 3)


def test_usage_errors_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / 'x.mp4'), '-o', str(tmp_path / 'y.mp4'), '--upscale', '0'])
    assert exit_info.value.code == 2 and '--upscale must be >= 1' in capsys.readouterr().err
    source = tmp_path / 'in.mp4'
    write_video(source, VideoSpec(64, 48, 2, faces=[], audio_rate=None))
    assert main([str(source), '-o', str(tmp_path / 'y.mp4'), *FAST, '--faces', 'someone']) == 2
    assert "--faces 'someone'" in capsys.readouterr().err
    assert not (tmp_path / 'y.mp4').exists()


def test_help_describes_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(['--help'])
    text = capsys.readouterr().out
    assert exit_info.value.code == 0 and 'docs/restore.md' in text
    for option in ('--model', '--weights-dir', '--faces', '--smoothing', '--upscale', '--start', '--crf', '--compare',
                   '--debug', '--segment-frames', '--device', '--precision', '--detector'):
        assert option in text
    from vfsr_restore.cli import build_parser
    assert all(action.help and len(action.help) > 10 for action in build_parser()._actions)


def test_console_script_reports_a_missing_input_first(tmp_path):
    script = Path(sys.executable).parent / 'vfsr-restore'  # installed by `pip install -e .` beside this interpreter
    result = subprocess.run([str(script), str(tmp_path / 'missing.mp4'), '-o', str(tmp_path / 'out.mp4')],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == f'vfsr-restore: error: {tmp_path / "missing.mp4"}: no such file or folder'


# Parse arguments as the console script does, then report whether anything heavy was imported on the way.
PARSE_ONLY = '''
import sys
from vfsr_restore.cli import main
try:
    main(sys.argv[1:])
finally:
    print('heavy imports:', sorted(name for name in ('torch', 'cv2', 'av', 'basicsr') if name in sys.modules))
'''


@pytest.mark.parametrize('args', [['--help'], ['in.mp4', '-o', 'out.mp4', '--upscale', '0'], ['in.mp4']])
def test_help_and_usage_errors_answer_before_torch_loads(tmp_path, args):
    result = subprocess.run([sys.executable, '-c', PARSE_ONLY, *args], capture_output=True, text=True, cwd=tmp_path,
                            env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)), timeout=120)
    assert result.returncode == (0 if args == ['--help'] else 2), result.stderr
    assert result.stdout.strip().endswith('heavy imports: []')


def test_output_suffix_and_all_missing_weights_are_reported_before_any_network_loads(tmp_path, capsys):
    source = tmp_path / 'in.mp4'
    write_video(source, VideoSpec(64, 48, 2, faces=[], audio_rate=None))
    weights_dir = tmp_path / 'weights'
    assert main([str(source), '-o', str(tmp_path / 'out.avi'), '--model', 'keep', '--weights-dir', str(weights_dir),
                 '--no-progress']) == 1
    assert capsys.readouterr().err == f"vfsr-restore: error: {tmp_path / 'out.avi'}: unknown video container " \
                                      "suffix '.avi' (use .mp4, .mov, .mkv, .webm)\n"

    assert main([str(source), '-o', str(tmp_path / 'out.mp4'), '--model', 'codeformer', '--detector', 'retinaface',
                 '--mask', 'parsing', '--weights-dir', str(weights_dir), '--no-progress']) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and all(line.startswith('vfsr-restore: error: ') for line in lines)  # one per file
    for line, path in zip(lines, ('CodeFormer/codeformer.pth', 'detection_Resnet50_Final.pth',
                                  'facexlib/parsing_parsenet.pth')):
        assert repr(str(weights_dir / path)) in line and 'file not found; where to get it: https://' in line
    assert list(tmp_path.iterdir()) == [source]


def test_random_weights_are_seeded(tmp_path):
    source = tmp_path / 'face.mp4'
    write_video(source, VideoSpec(96, 72, 3, faces=[FacePath(36)], audio_rate=None))
    tiny = ['--model', 'vidface', '--opt', str(REPO_ROOT / 'options' / 'demo_vidface.yml'), '--random-weights',
            '--no-progress', '--min-face-size', '20', '--crf', '0']
    for name, seed in [('a', 0), ('b', 0), ('c', 1)]:
        assert main([str(source), '-o', str(tmp_path / f'{name}.mp4'), *tiny, '--seed', str(seed)]) == 0
    assert (tmp_path / 'a.mp4').read_bytes() == (tmp_path / 'b.mp4').read_bytes()
    assert (tmp_path / 'a.mp4').read_bytes() != (tmp_path / 'c.mp4').read_bytes()
