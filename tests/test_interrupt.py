"""Ctrl-C (SIGINT) and SIGTERM stop ``train.py`` with one line and no traceback, exit code 130 / 143, and the line
says how to continue (``--auto-resume``, with the iteration it will continue from); rerunning that way continues.

Real processes get real signals: a tiny EDVR run on the tiny Vimeo-layout set, stopped once it has saved a training
state (every 2 iterations here)."""
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT, default_sigint, scratch_repo

from datasets_prep.make_tiny_vimeo import make_tiny_vimeo

LONG_RUN = ['train.py', '--opt', 'tests/options/edvr_tiny_cpu.yml', '--force-yml', 'train:total_iter=100000',
            'train:scheduler:periods=[100000]', 'logger:save_checkpoint_freq=2', 'val:val_freq=100000']
STATES = Path('experiments') / 'edvr_tiny_cpu' / 'training_states'


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
    root = scratch_repo(tmp_path_factory.mktemp('interrupt'))
    (root / 'tests' / 'options').mkdir(parents=True)
    (root / 'tests' / 'options' / 'edvr_tiny_cpu.yml').write_text(
        (REPO_ROOT / 'tests' / 'options' / 'edvr_tiny_cpu.yml').read_text())
    make_tiny_vimeo(root / 'datasets' / 'tiny_vimeo')
    return root


def stopped_by(workdir: Path, signum: int, args: list[str], new_states_beyond: int = 0) -> tuple[int, str]:
    """Start ``python *args``, send ``signum`` once a training state beyond iteration ``new_states_beyond`` is
    saved; (exit code, stderr)."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS='1')
    process = subprocess.Popen([sys.executable, *args], cwd=workdir, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    deadline = time.monotonic() + 300
    try:
        while not any(int(path.stem) > new_states_beyond for path in (workdir / STATES).glob('*.state')):
            assert process.poll() is None, process.stderr.read()[-3000:]
            assert time.monotonic() < deadline, 'no training state saved in 5 minutes'
            time.sleep(0.2)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, stderr


def last_iteration(workdir: Path) -> int:
    return max(int(path.stem) for path in (workdir / STATES).glob('*.state'))


def test_ctrl_c_then_sigterm_stop_training_with_one_line_on_how_to_resume(workdir):
    code, stderr = stopped_by(workdir, signal.SIGINT, LONG_RUN)
    assert code == 130, stderr[-3000:]
    assert 'Traceback' not in stderr and 'KeyboardInterrupt' not in stderr, stderr[-3000:]
    line = stderr.rstrip().splitlines()[-1]
    saved = last_iteration(workdir)
    assert line.startswith(f'train.py: interrupted; rerun with --auto-resume to continue from iteration {saved} '), line
    rerun = shlex.split(line.split(': ', 2)[2])
    assert rerun == ['train.py', *LONG_RUN[1:], '--auto-resume']

    # The printed command continues the run (here stopped by SIGTERM, as a scheduler would).
    code, stderr = stopped_by(workdir, signal.SIGTERM, rerun, new_states_beyond=saved)
    assert code == 143, stderr[-3000:]
    assert 'Traceback' not in stderr
    assert 'Resuming training from epoch: ' in stderr and f'iter: {saved}.' in stderr
    assert stderr.rstrip().splitlines()[-1].startswith(
        f'train.py: interrupted; rerun with --auto-resume to continue from iteration {last_iteration(workdir)} ')

