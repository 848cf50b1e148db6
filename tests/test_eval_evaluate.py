"""``vfsr-evaluate`` on aligned synthetic face clips (GT) and two "methods" made from them: one close to the GT and
one further away. Tables, metrics JSON and plots; real videos with reference-free metrics only; bad inputs stop with
one line naming the clip and frame and write nothing."""
import csv
import json
import re
import shutil

import vfsr_compat  # noqa: F401  (before basicsr)

import cv2
import numpy as np
import pytest
from conftest import REPO_ROOT, run_python

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
        'short': ([f'--method=a={short}'], r'short/clip001: 3 frames for 4 ground-truth frames \(frame 00000003.png '
                                           r'missing from the restored clip\)'),
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
