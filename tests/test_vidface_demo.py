"""The README's demo (``python demo.py``) runs end to end on a shortened schedule: data from the astronaut photo,
VidFace training and validation through train.py, bicubic through test.py, and the comparison table."""
import json
import os
import shutil
import subprocess
import sys

from conftest import REPO_ROOT


def test_demo_pipeline_runs_on_a_short_schedule(tmp_path):
    for script in ('demo.py', 'train.py', 'test.py'):
        shutil.copy(REPO_ROOT / script, tmp_path / script)
    (tmp_path / 'options').mkdir()
    for options in ('demo_vidface.yml', 'test_bicubic_demo.yml'):
        shutil.copy(REPO_ROOT / 'options' / options, tmp_path / 'options' / options)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS='1')
    result = subprocess.run([sys.executable, 'demo.py', '--iters', '2'], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, f'{result.stdout[-3000:]}\n{result.stderr[-3000:]}'

    assert len(list((tmp_path / 'datasets' / 'demo_tufs' / 'val').glob('*/0001/im7.png'))) == 8
    vidface = json.loads((tmp_path / 'experiments' / 'demo_vidface' / 'metrics_demo_tufs_val.json').read_text())
    bicubic = json.loads((tmp_path / 'results' / 'bicubic_demo' / 'metrics_demo_tufs_val.json').read_text())
    assert vidface['num_clips'] == bicubic['num_clips'] == 8
    table = result.stdout[result.stdout.index('metric'):]
    for key, label in (('psnr_rgb', 'PSNR RGB (dB)'), ('ssim_y', 'SSIM Y')):
        row = next(line for line in table.splitlines() if line.startswith(label)).split()
        assert row[-3:-1] == [f'{bicubic["metrics"][key]:.4f}', f'{vidface["metrics"][key]:.4f}']
    gain = vidface['metrics']['psnr_y'] - bicubic['metrics']['psnr_y']
    assert f'bicubic: {gain:+.2f} dB PSNR on Y.' in result.stdout
    assert list((tmp_path / 'experiments' / 'demo_vidface' / 'visualization').glob('val000_0001/*_compare.png'))
