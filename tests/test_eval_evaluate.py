"""``vfsr-evaluate`` on aligned synthetic face clips (GT) and two "methods" made from them: one close to the GT and
one further away. Tables, metrics JSON and plots; real videos with reference-free metrics only; bad inputs stop with
one line naming the clip and frame and write nothing."""
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import vfsr_compat  # noqa: F401  (before basicsr)

import cv2
import numpy as np
import pytest
from conftest import REPO_ROOT, default_sigint, run_python

from datasets_prep.align_vfhq_clips import align_clips
from datasets_prep.make_synthetic_vfhq import make_synthetic_vfhq
from vfsr_eval.evaluate import main

FRAMES = 4


def degrade_clips(source, target, sigma: float, seed: int):
    """Copy the clip folders of ``source`` with Gaussian noise of ``sigma`` added to every frame."""
    rng = np.random.default_rng(seed)
    for clip in sorted(source.iterdir()):
        (target / clip.name).mkdir(parents=True)
        for frame in sorted(clip.iterdir()):
            image = cv2.imread(str(frame)).astype(np.float32)
            cv2.imwrite(str(target / clip.name / f'{frame.stem}_restored.png'),
                        np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8))


@pytest.fixture(scope='module')
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp('evaluate')
    make_synthetic_vfhq(root / 'raw', num_clips=2, num_frames=FRAMES, frame_size=160, seed=0)
    align_clips(root / 'raw' / 'frames', root / 'raw' / 'landmarks', root / 'gt', size=128)
    degrade_clips(root / 'gt', root / 'close', sigma=3, seed=1)
    degrade_clips(root / 'gt', root / 'far', sigma=25, seed=2)
    return root


def evaluate(clips, output, *extra, methods=('close', 'far'), gt=True) -> int:
    args = [f'--method={name}={clips / name}' for name in methods] + ['--output', str(output), '--no-progress']
    return main(args + (['--gt', str(clips / 'gt')] if gt else []) + list(extra))


def test_tables_per_method_and_clip_with_mean_and_std(clips, tmp_path, capsys):
    assert evaluate(clips, tmp_path / 'out', '--metrics', 'psnr_ssim', '--dataset', 'synthetic') == 0
    printed = capsys.readouterr().out
    assert printed == (tmp_path / 'out' / 'table.md').read_text()
    rows = list(csv.DictReader((tmp_path / 'out' / 'table.csv').open()))
    assert [(row['method'], row['clip']) for row in rows] == [
        ('close', 'mean'), ('close', 'std'), ('far', 'mean'), ('far', 'std'),
        ('close', 'clip000'), ('close', 'clip001'), ('far', 'clip000'), ('far', 'clip001')]
    close, far = (json.loads((tmp_path / 'out' / f'metrics_{m}.json').read_text()) for m in ('close', 'far'))
    assert close['dataset'] == 'synthetic' and close['method'] == 'close' and close['num_clips'] == 2
    assert close['metrics']['psnr'] > far['metrics']['psnr'] + 10 and close['metrics']['ssim'] > far['metrics']['ssim']
    clip_psnr = [close['clips'][clip]['psnr'] for clip in ('clip000', 'clip001')]
    assert close['metrics']['psnr'] == pytest.approx(np.mean(clip_psnr))
    assert close['std']['psnr'] == pytest.approx(np.std(clip_psnr))
    assert float(rows[0]['psnr']) == pytest.approx(close['metrics']['psnr'])


def test_plots_show_curves_and_flicker_pictures(clips, tmp_path):
    metrics = tmp_path / 'metrics.yml'
    metrics.write_text('metrics:\n  psnr: {type: calculate_psnr, crop_border: 0}\n'
                       '  warping_error: {type: calculate_warping_error}\n')
    assert evaluate(clips, tmp_path / 'out', '--metrics', str(metrics), '--plot') == 0
    plots = tmp_path / 'out' / 'plots'
    assert sorted(path.name for path in plots.iterdir()) == [
        'curves_clip000.png', 'curves_clip001.png', 'flicker_clip000.png', 'flicker_clip001.png']
    assert all(cv2.imread(str(path)).shape[0] > 100 for path in plots.iterdir())


def test_flicker_picture_stacks_one_pixel_column_per_frame():
    from vfsr_eval.plots import temporal_slice

    frames = [np.full((8, 6, 3), (t, 0, 255 - t), np.uint8) for t in range(5)]
    frames[2][:, 3] = (9, 9, 9)
    picture = temporal_slice(frames, 0.6)
    assert picture.shape == (8, 5, 3)
    assert (picture[:, 2] == 9).all() and (picture[:, 4] == (255 - 4, 0, 4)).all()  # BGR in, RGB out


def test_real_videos_get_the_reference_free_metrics_only(clips, tmp_path):
    assert evaluate(clips, tmp_path / 'out', '--metrics', 'psnr_ssim,temporal', methods=('close', ), gt=False) == 0
    record = json.loads((tmp_path / 'out' / 'metrics_close.json').read_text())
    assert set(record['metrics']) == {'warping_error', 'landmark_jitter'}


def test_bad_inputs_are_one_line_and_write_nothing(clips, tmp_path, capsys):
    short = tmp_path / 'short'
    shutil.copytree(clips / 'close', short)
    sorted((short / 'clip001').iterdir())[-1].unlink()
    resized = tmp_path / 'resized'
    shutil.copytree(clips / 'close', resized)
    frame = sorted((resized / 'clip000').iterdir())[1]
    cv2.imwrite(str(frame), cv2.resize(cv2.imread(str(frame)), (64, 64)))
    blank = tmp_path / 'blank'
    shutil.copytree(clips / 'close', blank)
    cv2.imwrite(str(sorted((blank / 'clip000').iterdir())[2]), np.full((128, 128, 3), 127, np.uint8))
    cases = {
        'short': ([f'--method=a={short}'],
                  r'a: clip clip001: ground-truth frame 00000003.png missing from \S*short/clip001'),
        'resized': ([f'--method=a={resized}'], r'a/clip000: frame 1: restored size 64x64 differs from ground truth'),
        'blank': ([f'--method=a={blank}', '--metrics', str(write_akd_yaml(tmp_path))],
                  r'a/clip000: akd: frame 2: no face detected in the restored frame'),
        'weights': ([f'--method=a={clips / "close"}', '--metrics', 'keep'],
                    r"LPIPS VGG16 weights 'weights/LPIPS/vgg16-397923af.pth': file not found; where to get it"),
    }
    for name, (args, message) in cases.items():
        output = tmp_path / 'outputs' / name
        code = main(args + ['--gt', str(clips / 'gt'), '--output', str(output), '--no-progress'])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith('vfsr-evaluate: error: '), (name, err)
        assert re.search(message, err[0]), (name, err[0])
        assert not output.exists() and not list(output.parent.glob(f'.{name}*')), 'nothing is written'


def write_akd_yaml(folder):
    path = folder / 'akd.yml'
    path.write_text('metrics:\n  akd:\n    type: calculate_akd\n    detector: mtcnn\n')
    return path


def test_console_script_runs(clips, tmp_path):
    result = run_python(tmp_path, '-m', 'vfsr_eval.evaluate', '--method', f'close={clips / "close"}', '--gt',
                        str(clips / 'gt'), '--output', str(tmp_path / 'out'))
    assert '| close | **mean** |' in result.stdout
    assert "'vfsr-evaluate=vfsr_eval.evaluate:console_main'" in (REPO_ROOT / 'setup.py').read_text()


def write_clip(folder, frames: dict[str, np.ndarray]):
    folder.mkdir(parents=True, exist_ok=True)
    for name, image in frames.items():
        cv2.imwrite(str(folder / name), image)


@pytest.fixture()
def random_frames():
    """Twelve unrelated 24x24 frames: a frame paired with the wrong one scores about 8 dB."""
    rng = np.random.default_rng(5)
    return [rng.integers(0, 256, (24, 24, 3), dtype=np.uint8) for _ in range(12)]


def noisy(image, seed):
    return np.clip(image + np.random.default_rng(seed).normal(0, 3, image.shape), 0, 255).astype(np.uint8)


def run_main(args, capsys):
    code = main([*args, '--no-progress'])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()


def test_frames_pair_by_the_number_in_their_names_not_by_text_order(random_frames, tmp_path, capsys):
    write_clip(tmp_path / 'gt' / 'clip', {f'{i:08d}.png': frame for i, frame in enumerate(random_frames)})
    write_clip(tmp_path / 'method' / 'clip', {f'{i}.png': noisy(frame, i) for i, frame in enumerate(random_frames)})
    code, _, err = run_main([f'--method=m={tmp_path / "method"}', '--gt', str(tmp_path / 'gt'), '--output',
                             str(tmp_path / 'out')], capsys)
    assert code == 0, err
    record = json.loads((tmp_path / 'out' / 'metrics_m.json').read_text())
    assert 35 < record['metrics']['psnr'] < 45  # text order pairs 2 with 10, 3 with 11, ...: far lower


MISMATCHES = {  # case -> (GT clips, method clips as {clip: frame numbers}, what the one error line must say)
    'different frame sets': ({'c': range(4)}, {'c': range(1, 5)},
                             r'm: clip c: ground-truth frame 00000000.png missing from \S+; frame 4.png of \S+ has '
                             r'no ground truth'),
    'frame on one side only': ({'c': range(4)}, {'c': (0, 1, 3)}, r'm: clip c: ground-truth frame 00000002.png '
                                                                  r'missing from \S+/method/c \('),
    'empty ground-truth clip': ({'a': range(3), 'c': ()}, {'a': range(3), 'c': range(3)},
                                r'm: clip c: the ground-truth clip folder \S+/gt/c has no frame images'),
    'empty method clip': ({'a': range(3), 'c': range(3)}, {'a': range(3), 'c': ()},
                          r'm: clip c: \S+/method/c has no frame images for the 3 ground-truth frames'),
    'extra method clip': ({'a': range(3)}, {'a': range(3), 'c': range(3)}, r'm: clip c: no ground truth in \S+/gt'),
    'clip missing from method': ({'a': range(3), 'c': range(3)}, {'a': range(3)},
                                 r'm: clip c: missing from \S+/method \(the ground truth has it\)'),
}


def write_case(root, random_frames, gt_clips, method_clips):
    for clip, numbers in gt_clips.items():
        (root / 'gt' / clip).mkdir(parents=True)
        write_clip(root / 'gt' / clip, {f'{n:08d}.png': random_frames[n] for n in numbers})
    for clip, numbers in method_clips.items():
        (root / 'method' / clip).mkdir(parents=True)
        write_clip(root / 'method' / clip, {f'{n}.png': noisy(random_frames[n], n) for n in numbers})


@pytest.mark.parametrize('case', MISMATCHES)
def test_whatever_does_not_pair_is_one_line_naming_clip_and_frames(case, random_frames, tmp_path, capsys):
    gt_clips, method_clips, message = MISMATCHES[case]
    write_case(tmp_path, random_frames, gt_clips, method_clips)
    output = tmp_path / 'out'
    code, _, err = run_main([f'--method=m={tmp_path / "method"}', '--gt', str(tmp_path / 'gt'), '--output',
                             str(output)], capsys)
    assert code == 2 and len(err) == 1 and re.search(message, err[0]), err
    assert err[0].endswith('(--allow-missing scores what both sides have)') and not output.exists()


def test_an_empty_clip_without_ground_truth_is_an_error(random_frames, tmp_path, capsys):
    write_case(tmp_path, random_frames, {}, {'a': range(3), 'c': ()})
    code, _, err = run_main([f'--method=m={tmp_path / "method"}', '--output', str(tmp_path / 'out')], capsys)
    assert code == 2 and len(err) == 1 and re.search(r'm: clip c: \S+/method/c has no frame images', err[0]), err


def test_allow_missing_scores_what_both_sides_have_and_the_tables_say_so(random_frames, tmp_path, capsys):
    write_case(tmp_path, random_frames, {'a': range(4), 'b': range(3), 'c': range(3)},
               {'a': (0, 1, 3, 7), 'b': (), 'd': range(3)})
    output = tmp_path / 'out'
    code, printed, err = run_main([f'--method=m={tmp_path / "method"}', '--gt', str(tmp_path / 'gt'), '--output',
                                   str(output), '--allow-missing'], capsys)
    assert code == 0, err
    record = json.loads((output / 'metrics_m.json').read_text())
    assert record['num_clips'] == 1 and list(record['clips']) == ['a']
    expected = np.mean([cv2.PSNR(noisy(random_frames[n], n), random_frames[n]) for n in (0, 1, 3)])
    assert record['clips']['a']['psnr'] == pytest.approx(expected, abs=1e-6)  # frames 0, 1, 3: the common ones
    assert len(record['not_scored']) == 4 and record['not_scored'][0].startswith('a: ground-truth frame 00000002.png')
    rows = {(row['method'], row['clip']): row for row in csv.DictReader((output / 'table.csv').open())}
    assert rows[('m', 'a')]['note'] == '3 of 4 ground-truth frames scored'
    assert rows[('m', 'mean')]['note'] == 'scored 1 clips, 3 not scored'
    lines = printed.splitlines()
    assert '--allow-missing: only what both sides have was scored; left out:' in lines
    for clip, what in (('b', 'has no frame images'), ('c', 'missing from'), ('d', 'no ground truth')):
        assert any(line.startswith(f'- m / {clip}: ') and what in line and line.endswith('(not scored)')
                   for line in lines), (clip, lines)
    assert printed == (output / 'table.md').read_text()


def refuse_constant(name):
    raise ValueError(f'not standard JSON: {name}')


def test_output_files_are_standard_json_and_say_why_a_value_is_undefined(random_frames, tmp_path, capsys):
    write_clip(tmp_path / 'gt' / 'same', {f'{n}.png': random_frames[n] for n in range(2)})
    write_clip(tmp_path / 'gt' / 'other', {f'{n}.png': random_frames[n] for n in range(2, 4)})
    write_clip(tmp_path / 'method' / 'same', {f'{n}.png': random_frames[n] for n in range(2)})
    write_clip(tmp_path / 'method' / 'other', {f'{n}.png': noisy(random_frames[n], n) for n in range(2, 4)})
    output = tmp_path / 'out'
    code, printed, err = run_main([f'--method=m={tmp_path / "method"}', '--gt', str(tmp_path / 'gt'), '--output',
                                   str(output)], capsys)
    assert code == 0, err
    record = json.loads((output / 'metrics_m.json').read_text(), parse_constant=refuse_constant)
    table = json.loads((output / 'table.json').read_text(), parse_constant=refuse_constant)
    assert record['clips']['same']['psnr'] is None and record['metrics']['psnr'] is None
    assert record['std']['psnr'] is None and record['clips']['other']['psnr'] > 35
    assert record['undefined']['clips']['same']['psnr'] == ('PSNR is infinite: restored frame 0, 1 equals the '
                                                            'ground truth')
    assert record['undefined']['metrics']['psnr'].startswith('1 of 2 clips have no finite value (same: PSNR is inf')
    assert record['clips']['same']['ssim'] == pytest.approx(1)
    same = next(row for row in table['rows'] if row['clip'] == 'same')
    assert same['psnr'] is None and 'PSNR is infinite' in same['note']
    text = (output / 'table.csv').read_text()
    assert not re.search(r'\b(inf|nan)\b', text, re.IGNORECASE), text
    row = next(row for row in csv.DictReader(text.splitlines()) if row['clip'] == 'same')
    assert row['psnr'] == '' and row['note'].startswith('psnr: PSNR is infinite')
    assert '| m | same | undefined | 1.0000 |' in printed


def test_markdown_keeps_three_significant_figures_of_small_values(random_frames, tmp_path, capsys):
    still = random_frames[0]
    write_clip(tmp_path / 'method' / 'clip', {f'{n}.png': np.clip(still.astype(int) + n % 2, 0, 255).astype(np.uint8)
                                              for n in range(3)})
    metrics = tmp_path / 'metrics.yml'
    metrics.write_text('metrics:\n  warping_error: {type: calculate_warping_error}\n')
    code, printed, err = run_main([f'--method=m={tmp_path / "method"}', '--output', str(tmp_path / 'out'),
                                   '--metrics', str(metrics)], capsys)
    assert code == 0, err
    value = json.loads((tmp_path / 'out' / 'metrics_m.json').read_text())['metrics']['warping_error']
    assert 1e-6 < value < 1e-4  # brightness steps of 1/255
    assert f'| m | **mean** | {value:#.3g} |' in printed and '0.0000' not in printed


def test_format_number():
    from vfsr_eval.evaluate import format_number

    assert [format_number(v) for v in (4.7e-5, 2.5e-6, 0.0123, 0.00991, 27.99941, 0.0, None, -3e-5)] == [
        '4.70e-05', '2.50e-06', '0.0123', '0.00991', '27.9994', '0', 'undefined', '-3.00e-05']


@pytest.mark.parametrize('signal_number, code, word', [(signal.SIGINT, 130, 'interrupted'),
                                                       (signal.SIGTERM, 143, 'terminated')])
def test_ctrl_c_or_sigterm_stops_with_one_line_and_nothing_written(random_frames, tmp_path, signal_number, code, word):

    for clip in range(40):
        write_clip(tmp_path / 'method' / f'clip{clip:02d}', {f'{n}.png': random_frames[n] for n in range(12)})
    metrics = tmp_path / 'metrics.yml'
    metrics.write_text('metrics:\n  warping_error: {type: calculate_warping_error}\n')
    process = subprocess.Popen(
        [sys.executable, '-m', 'vfsr_eval.evaluate', '--method', f'm={tmp_path / "method"}', '--metrics', str(metrics),
         '--output', str(tmp_path / 'out')], cwd=tmp_path, stderr=subprocess.PIPE, text=True,
        env={**os.environ, 'PYTHONPATH': str(REPO_ROOT), 'OMP_NUM_THREADS': '1'}, preexec_fn=default_sigint)
    seen = ''
    while 'vfsr-evaluate:' not in seen:  # the progress bar: scoring has begun
        character = process.stderr.read(1)
        assert character, f'ended before scoring: {seen}'
        seen += character
    process.send_signal(signal_number)
    rest = process.stderr.read()
    assert process.wait(timeout=60) == code
    lines = [line for line in rest.replace('\r', '\n').splitlines() if line.strip() and '%|' not in line]
    assert lines == [f'vfsr-evaluate: {word}; nothing written'], rest
    assert not (tmp_path / 'out').exists()


def test_frame_names_without_a_number_or_with_the_same_number_are_errors(random_frames, tmp_path):
    from vfsr_eval.clip_folders import EvaluationError, clip_frames

    write_clip(tmp_path / 'ok', {'00000003_500000.png': random_frames[0], 'frame_10.png': random_frames[1],
                                 '2.jpg': random_frames[2]})
    (tmp_path / 'ok' / 'notes.txt').write_text('not a frame')
    assert {n: path.name for n, path in clip_frames(tmp_path / 'ok').items()} == {
        2: '2.jpg', 3: '00000003_500000.png', 10: 'frame_10.png'}
    write_clip(tmp_path / 'nameless', {'first.png': random_frames[0]})
    with pytest.raises(EvaluationError, match=r'nameless: frame first.png has no number in its name'):
        clip_frames(tmp_path / 'nameless')
    write_clip(tmp_path / 'twice', {'1.png': random_frames[0], '01.jpg': random_frames[1]})
    with pytest.raises(EvaluationError, match=r'twice: frames 01.jpg and 1.png have the same number 1'):
        clip_frames(tmp_path / 'twice')
