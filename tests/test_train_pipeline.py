"""vfsr's train.py / test.py drive BasicSR's real pipeline on the CPU: train, validate, checkpoint, resume,
distributed with gloo (bad option files: tests/test_option_checks.py)."""
import os
import socket

import pytest
import torch
import yaml
from conftest import REPO_ROOT, run_python, scratch_repo

from datasets_prep.make_tiny_vimeo import make_tiny_vimeo

EDVR_OPTIONS = REPO_ROOT / 'tests' / 'options' / 'edvr_tiny_cpu.yml'


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
    """A scratch repo root with train.py/test.py pointing at the real code, and a tiny Vimeo-layout dataset."""
    root = tmp_path_factory.mktemp('vfsr_run')
    scratch_repo(root)
    make_tiny_vimeo(root / 'datasets' / 'tiny_vimeo')
    return root


def write_options(workdir, name, replace=(), **changes):
    """A copy of the tiny EDVR options with top-level sections updated: merged one level deep, or replaced whole
    for the keys named in ``replace``."""
    opt = yaml.safe_load(EDVR_OPTIONS.read_text())
    opt['name'] = name
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(opt.get(key), dict) and key not in replace:
            opt[key].update(value)
        else:
            opt[key] = value
    path = workdir / f'{name}.yml'
    path.write_text(yaml.safe_dump(opt))
    return path


def test_edvr_trains_validates_checkpoints_and_resumes_on_cpu(workdir):
    options = write_options(workdir, 'edvr_resume')
    first = run_python(workdir, 'train.py', '-opt', options.name, '--force_yml', 'train:total_iter=4')
    assert 'Validation tiny_vimeo_val' in first.stdout + first.stderr
    experiment = workdir / 'experiments' / 'edvr_resume'
    assert (experiment / 'training_states' / '4.state').is_file()
    assert (experiment / 'models' / 'net_g_4.pth').is_file()
    assert any((workdir / 'tb_logger' / 'edvr_resume').iterdir()), 'tensorboard events are written'

    resumed = run_python(workdir, 'train.py', '-opt', options.name, '--auto_resume')
    log = resumed.stdout + resumed.stderr
    assert 'Resuming training from epoch: 1, iter: 4.' in log
    assert 'iter:       6' in log and 'iter:       2' not in log
    assert (experiment / 'training_states' / '8.state').is_file()
    final = torch.load(experiment / 'models' / 'net_g_8.pth', weights_only=True)['params']
    after_four = torch.load(experiment / 'models' / 'net_g_4.pth', weights_only=True)['params']
    assert any(not torch.equal(final[key], after_four[key]) for key in final)


def test_test_py_reports_metrics_for_a_trained_checkpoint(workdir):
    options = write_options(workdir, 'edvr_for_test')
    run_python(workdir, 'train.py', '-opt', options.name, '--force_yml', 'train:total_iter=2')
    checkpoint = workdir / 'experiments' / 'edvr_for_test' / 'models' / 'net_g_latest.pth'
    test_options = write_options(
        workdir, 'edvr_test_run', replace=('datasets',), path={'pretrain_network_g': str(checkpoint)},
        datasets={'test': yaml.safe_load(EDVR_OPTIONS.read_text())['datasets']['val']})
    result = run_python(workdir, 'test.py', '-opt', test_options.name)
    assert '# psnr:' in result.stdout + result.stderr
    assert list((workdir / 'results' / 'edvr_test_run').glob('test_*.log'))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize('launcher', ['torchrun', 'torch.distributed.launch'])
def test_two_cpu_processes_train_in_lockstep_with_gloo(workdir, launcher):
    name = f'edvr_ddp_{launcher.replace(".", "_")}'
    options = write_options(workdir, name, logger={'save_checkpoint_freq': 100, 'use_tb_logger': False})
    out_dir = workdir / f'probe_{name}'
    out_dir.mkdir()
    probe = REPO_ROOT / 'tests' / 'helpers' / 'distributed_train_probe.py'
    module = 'torch.distributed.run' if launcher == 'torchrun' else 'torch.distributed.launch'
    run_python(workdir, '-m', module, '--nproc_per_node=2', f'--master_port={free_port()}', str(probe),
               '-opt', options.name, '--launcher', 'pytorch', '--force_yml', 'train:total_iter=4',
               VFSR_PROBE_OUT=str(out_dir))
    final = [torch.load(out_dir / f'final_rank{rank}.pth', weights_only=True) for rank in (0, 1)]
    initial = torch.load(out_dir / 'initial_rank0.pth', weights_only=True)
    assert all(torch.equal(final[0][key], final[1][key]) for key in final[0])
    assert any(not torch.equal(final[0][key], initial[key]) for key in initial)


def test_slurm_launcher_trains_with_gloo(workdir, tmp_path):
    """One slurm task on this machine; ``scontrol`` (slurm's own tool, absent here) answers with this host."""
    (tmp_path / 'scontrol').write_text('#!/bin/sh\necho 127.0.0.1\n')
    (tmp_path / 'scontrol').chmod(0o755)
    options = write_options(workdir, 'edvr_slurm', logger={'use_tb_logger': False},
                            dist_params={'backend': 'gloo', 'port': free_port()})
    result = run_python(workdir, 'train.py', '-opt', options.name, '--launcher', 'slurm', '--force_yml',
                        'train:total_iter=2', SLURM_PROCID='0', SLURM_NTASKS='1', SLURM_NODELIST='node1',
                        PATH=f'{tmp_path}:{os.environ["PATH"]}')
    assert 'Validation tiny_vimeo_val' in result.stdout + result.stderr
    assert (workdir / 'experiments' / 'edvr_slurm' / 'models' / 'net_g_latest.pth').is_file()
