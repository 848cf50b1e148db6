"""The option check of train.py / test.py / vfsr-train / vfsr-test: every problem of a file is listed at once, one
line each starting with the command's name, exit code 2, and nothing is written or renamed (BasicSR would archive
the previous experiment folder). Missing weights files are all named at once, each with the full path looked at,
where it is published and which folder it goes in.

Most cases call ``vfsr_cli.run`` in this process (the code path of the scripts, without a second interpreter start);
one case runs the installed ``vfsr-train`` to show the same lines come out of the console script."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT

import vfsr_cli
from datasets_prep.make_tiny_vimeo import make_tiny_vimeo

EDVR_OPTIONS = REPO_ROOT / 'tests' / 'options' / 'edvr_tiny_cpu.yml'
BAD_FORCE_YML = ['--force-yml', 'trainn:total_iter=10', 'train:total_iter', 'train:ema_decay=0.99']
# One file with many problems, and the line each must give.
MANY_PROBLEMS = {
    'network_g': {'num_feats': 8},
    'datasets': {'train': {'num_framez': 7, 'dataroot_lq': 'datasets/TUFS145K/train_LR'}},
    'train': {'total_iters': 10},
    'val': {'metrics': {'psnr': {'type': 'psnr', 'crop_border': 0}}},
    'path': {'pretrain_network_g': 'weights/missing.pth'},
}
MANY_PROBLEMS_LINES = [  # after 'train.py: error: ' (vfsr-train: 'vfsr-train: error: ')
    "--force-yml trainn:total_iter=10: the top level has no section 'trainn'; did you mean train?",
    '--force-yml train:total_iter: expected KEY:SUBKEY=VALUE with one "=", e.g. train:total_iter=1000',
    "network_g.num_feats: EDVR takes no keyword 'num_feats'; did you mean num_feat, num_frame?",
    "datasets.train.dataroot_lq: folder 'datasets/TUFS145K/train_LR' does not exist (TUFs-145K, from "
    "the official VidFace repository: see docs/data.md (VidFace: TUFs-145K and IJB-C))",
    'datasets.train.num_framez: Vimeo90KDataset does not read this key; did you mean num_frame?',
    "path.pretrain_network_g 'weights/missing.pth': file not found; where to get it: see the weights table of "
    "README.md; put it in weights/ (looked for ",
    'train.total_iters: the model and trainer does not read this key; did you mean total_iter',
    "val.metrics.psnr.type: unknown metric type 'psnr'; did you mean calculate_psnr",
]


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
    """A run folder with the tiny Vimeo-layout dataset and an earlier experiment of the same name."""
    root = tmp_path_factory.mktemp('option_checks')
    make_tiny_vimeo(root / 'datasets' / 'tiny_vimeo')
    (root / 'experiments' / 'checked' / 'models').mkdir(parents=True)
    return root


def write_options(workdir: Path, changes: dict, name: str = 'checked') -> Path:
    """The tiny EDVR options, named ``name``, with sections updated one level deep (None removes a key)."""
    opt = yaml.safe_load(EDVR_OPTIONS.read_text())
    opt['name'] = name
    for key, value in changes.items():
        if value is None:
            del opt[key]
        elif isinstance(value, dict) and isinstance(opt.get(key), dict):
            for sub, sub_value in value.items():
                if sub_value is None:
                    del opt[key][sub]
                elif isinstance(sub_value, dict) and isinstance(opt[key].get(sub), dict):
                    opt[key][sub].update(sub_value)
                else:
                    opt[key][sub] = sub_value
        else:
            opt[key] = value
    path = workdir / f'{name}.yml'
    path.write_text(yaml.safe_dump(opt))
    return path


def files_under(root: Path) -> list[Path]:
    return sorted(root.rglob('*'))


def run_checked(workdir, monkeypatch, capsys, *args, is_train=True) -> list[str]:
    """``train.py *args`` (or ``test.py``) in ``workdir``; it must stop with exit code 2 having written nothing.
    Returns its stderr lines."""
    before = files_under(workdir)
    monkeypatch.chdir(workdir)
    monkeypatch.setattr(sys, 'argv', ['train.py' if is_train else 'test.py', *args])
    with pytest.raises(SystemExit) as stopped:
        vfsr_cli.run(str(workdir), is_train=is_train)
    assert stopped.value.code == 2
    assert files_under(workdir) == before, 'nothing is written, renamed or archived'
    return capsys.readouterr().err.strip().splitlines()


def test_every_problem_of_a_file_is_listed_at_once(workdir, monkeypatch, capsys):
    options = write_options(workdir, MANY_PROBLEMS)
    lines = run_checked(workdir, monkeypatch, capsys, '--opt', options.name, *BAD_FORCE_YML)
    errors = [line for line in lines if line.startswith('train.py: error: ')]
    assert len(errors) == len(MANY_PROBLEMS_LINES), lines
    for expected in MANY_PROBLEMS_LINES:
        assert any(line.startswith(f'train.py: error: {expected}') for line in errors), (expected, lines)
    assert all(line.startswith(('train.py: error: ', 'train.py: warning: ')) for line in lines), 'one line each'


@pytest.mark.parametrize('changes, force_yml, expected', [
    ({'model_type': 'EDVRModle'}, [], "model_type: unknown model type 'EDVRModle'; did you mean EDVRModel"),
    ({'network_g': {'type': 'EDVRR'}}, [], "network_g.type: unknown arch type 'EDVRR'; did you mean EDVR"),
    ({'train': {'pixel_opt': {'type': 'NoSuchLoss'}}}, [], "train.pixel_opt.type: unknown loss type 'NoSuchLoss'"),
    ({'train': {'pixel_opt': {'type': 'CharbonnierLoss', 'weight': 1}}}, [],
     "train.pixel_opt.weight: CharbonnierLoss takes no keyword 'weight'; did you mean loss_weight"),
    ({'train': {'optim_g': {'type': 'AdamX'}}}, [], "train.optim_g.type: 'AdamX' is not a torch.optim optimizer"),
    ({'network_g': {'type': 'KEEP', 'flownet_path': 'weights/GMFlow/missing.pth'}}, [],
     "network_g.flownet_path 'weights/GMFlow/missing.pth': file not found; where to get it: see the weights table "
     "of README.md; put it in weights/GMFlow/ (looked for "),
    ({'datasets': {'val': {'type': 'VideoClipTestDataset', 'dataroot_gt': 'datasets/VFHQ-Test/GT',
                           'dataroot_landmarks': 'datasets/VFHQ-Test/meta_info'}}}, [],
     "datasets.val.dataroot_landmarks: folder 'datasets/VFHQ-Test/meta_info' does not exist (VFHQ-Test: see "
     "docs/data.md (KEEP: VFHQ-Test))"),
    ({'datasets': {'train': {'meta_info_file': 'datasets/demo_tufs/meta_info_train.txt'}}}, [],
     "datasets.train.meta_info_file: file 'datasets/demo_tufs/meta_info_train.txt' does not exist (make it with: "
     "python -m datasets_prep.make_demo_tufs --output datasets/demo_tufs)"),
    ({}, ['--force-yml', 'train:scheduler:periods=[8'],
     '--force-yml train:scheduler:periods=[8: cannot read the value'),
    ({}, ['--force_yml', 'datasets:training:batch_size_per_gpu=2'],  # BasicSR's spelling, an alias
     "--force-yml datasets:training:batch_size_per_gpu=2: datasets has no section 'training'; did you mean train"),
    ({'datasets': {'train': {'io_backend': {'type': 'lmbd'}}}}, [],
     "datasets.train.io_backend.type: unknown backend 'lmbd'; one of disk, lmdb, memcached; did you mean lmdb"),
    ({'logger': None}, [], 'logger: missing; BasicSR needs it'),
    ({'val': {'val_freq': None}}, [], 'val.val_freq: missing; BasicSR needs it'),
    ({'logger': {'print_freqq': 2}}, [],
     "logger.print_freqq: BasicSR's logger does not read this key; did you mean print_freq"),
])
def test_each_problem_is_one_clear_line(workdir, monkeypatch, capsys, changes, force_yml, expected):
    options = write_options(workdir, changes)
    lines = run_checked(workdir, monkeypatch, capsys, '-opt', options.name, *force_yml)
    assert any(line.startswith(f'train.py: error: {expected}') for line in lines), lines


def test_mistyped_option_file_gets_a_did_you_mean(monkeypatch, capsys):
    lines = run_checked(REPO_ROOT / 'options', monkeypatch, capsys, '--opt', 'train_vidfac_tufs.yml')
    assert lines == ["train.py: error: --opt: option file 'train_vidfac_tufs.yml' does not exist; did you mean "
                     "train_vidface_tufs.yml, test_vidface_tufs.yml, train_edvr_tufs.yml?"]


def test_flags_that_do_not_apply_are_refused(workdir, monkeypatch, capsys):
    options = write_options(workdir, {})
    lines = run_checked(workdir, monkeypatch, capsys, '-opt', options.name, '--auto_resume', is_train=False)
    assert lines[-1] == 'test.py: error: unrecognized arguments: --auto_resume'


def test_unread_keys_warn_and_near_misses_are_errors(workdir):
    opt = yaml.safe_load(write_options(workdir, {'datasets': {'train': {'my_note': 'x', 'use_hflipp': True}},
                                                 'val': {'save_imgs': True}}).read_text())
    problems = vfsr_cli.Problems()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        vfsr_cli.check_options(opt, is_train=True, problems=problems)
    assert problems.errors == [
        'datasets.train.use_hflipp: Vimeo90KDataset does not read this key; did you mean use_hflip?',
        'val.save_imgs: BasicSR\'s validation does not read this key; did you mean save_img?']
    assert 'datasets.train.my_note: Vimeo90KDataset does not seem to read this key; it is ignored' in problems.warnings


def test_console_script_reports_the_same_lines(workdir):
    options = write_options(workdir, MANY_PROBLEMS, name='checked_console')
    before = files_under(workdir)
    script = Path(sys.executable).parent / 'vfsr-train'  # installed by `pip install -e .` beside this interpreter
    result = subprocess.run([str(script), '-opt', options.name, *BAD_FORCE_YML], cwd=workdir, capture_output=True,
                            text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith('vfsr-train: error: ')]
    assert len(errors) == len(MANY_PROBLEMS_LINES), result.stderr
    assert all(line.startswith(('vfsr-train: error: ', 'vfsr-train: warning: ')) for line in result.stderr.splitlines())
    assert files_under(workdir) == before


def test_option_file_that_is_not_yaml_is_one_line(workdir, monkeypatch, capsys):
    (workdir / 'broken.yml').write_text('name: broken\ntrain:\n  total_iter: [8\n')
    lines = run_checked(workdir, monkeypatch, capsys, '-opt', 'broken.yml')
    assert len(lines) == 1 and lines[0].startswith('train.py: error: --opt: broken.yml is not valid YAML (line ')


def test_missing_weights_are_all_named_with_full_path_link_and_folder(tmp_path, monkeypatch, capsys):
    """``vfsr-test --opt options/test_keep_vfhq.yml`` on a fresh clone: every weights file it needs is named at once,
    each with the full path looked at (relative to the current folder), where it is published and its folder."""
    lines = run_checked(tmp_path, monkeypatch, capsys, '--opt', str(REPO_ROOT / 'options' / 'test_keep_vfhq.yml'),
                        is_train=False)
    weights = [line for line in lines if ': file not found' in line]
    expected = {  # file -> where it is published
        'weights/KEEP/KEEP-b76feb75.pth': 'https://github.com/jnjaby/KEEP/releases/download/v1.0.0/KEEP-b76feb75.pth',
        'weights/LPIPS/vgg16-397923af.pth': 'https://download.pytorch.org/models/vgg16-397923af.pth',
        'weights/LPIPS/vgg.pth': 'the lpips pip package',
        'weights/facexlib/recognition_arcface_ir_se50.pth':
            'https://github.com/xinntao/facexlib/releases/download/v0.1.0/recognition_arcface_ir_se50.pth',
    }
    for path, published in expected.items():
        line = next((line for line in weights if f"'{path}': file not found" in line), None)
        assert line is not None, (path, lines)
        assert line.startswith('test.py: error: ')
        assert f'where to get it: {published}' in line
        assert f'put it in {Path(path).parent}/ (looked for {tmp_path / path}, relative to the current folder' in line
    assert all(line.startswith('test.py: error: ') for line in lines)


def test_missing_files_message_names_every_file_once_per_line(tmp_path, monkeypatch):
    from vfsr_io.checkpoint import missing_files_message
    monkeypatch.chdir(tmp_path)
    message = missing_files_message([
        ('KEEP weights', 'weights/KEEP/KEEP-b76feb75.pth', 'https://example.org/KEEP-b76feb75.pth', None),
        ('ArcFace weights', tmp_path / 'w' / 'arcface.pth', None, 'w/facexlib'),
    ])
    first, second = message.splitlines()
    assert first == ("KEEP weights 'weights/KEEP/KEEP-b76feb75.pth': file not found; where to get it: "
                     "https://example.org/KEEP-b76feb75.pth; put it in weights/KEEP/ (looked for "
                     f"{tmp_path}/weights/KEEP/KEEP-b76feb75.pth, relative to the current folder; "
                     "vfsr never downloads)")
    assert second == (f"ArcFace weights '{tmp_path}/w/arcface.pth': file not found; put it in w/facexlib/ "
                      f"(looked for {tmp_path}/w/arcface.pth; vfsr never downloads)")
