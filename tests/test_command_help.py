"""Every command's ``--help`` works without other arguments and explains every flag: the console scripts of
setup.py, ``python train.py`` / ``python test.py`` and every ``python -m datasets_prep.<script>`` (these two kinds
also show examples). The prep scripts' expected problems end in one line with exit code 2, writing nothing.

They run in this process (``runpy`` as ``python -m`` / ``python script.py`` would, the console scripts through the
function setup.py names), so the whole list costs no interpreter start; tests/test_option_checks.py runs the
installed ``vfsr-train`` itself."""
import importlib
import re
import runpy
import sys
import warnings

import pytest
from conftest import REPO_ROOT

PREP_SCRIPTS = sorted(path.stem for path in (REPO_ROOT / 'datasets_prep').glob('*.py')
                      if "if __name__ == '__main__':" in path.read_text())
CONSOLE_SCRIPTS = re.findall(r"'([\w-]+)=([\w.]+):(\w+)'", (REPO_ROOT / 'setup.py').read_text())


def undocumented_flags(help_text: str) -> list[str]:
    """The flags of an argparse help whose entry has no explanation."""
    lines = help_text.split('options:', 1)[1].splitlines()
    undocumented = []
    for index, line in enumerate(lines):
        if not re.match(r'  -', line):
            continue
        entry = line.strip()
        explained_here = re.search(r'\S\s{2,}\S', entry) is not None
        following = lines[index + 1] if index + 1 < len(lines) else ''
        explained_below = re.match(r'\s{3,}\S', following) is not None and not following.strip().startswith('-')
        if not (explained_here or explained_below):
            undocumented.append(entry)
    return undocumented


def help_of(run, argv0: str, monkeypatch, capsys) -> str:
    monkeypatch.setattr(sys, 'argv', [argv0, '--help'])
    # A console entry point may install its own warning format; it must not outlive the test.
    monkeypatch.setattr(warnings, 'formatwarning', warnings.formatwarning)
    with pytest.raises(SystemExit) as stopped:
        run()
    assert stopped.value.code == 0
    return capsys.readouterr().out


def check_help(text: str) -> None:
    assert text.startswith('usage: ')
    assert undocumented_flags(text) == []


@pytest.mark.parametrize('script', PREP_SCRIPTS)
def test_prep_script_help(script, monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, f'datasets_prep.{script}', raising=False)  # afresh as __main__, as python -m
    text = help_of(lambda: runpy.run_module(f'datasets_prep.{script}', run_name='__main__'), script, monkeypatch,
                   capsys)
    check_help(text)
    assert re.search(rf'^\s+python -m datasets_prep\.{script} --', text, re.MULTILINE), 'the help shows an example'
    flags = re.findall(r'(?<![\w-])--[a-z0-9_-]+', text.split('options:', 1)[1])
    assert not [flag for flag in flags if '_' in flag], 'one flag style: --kebab-case'


@pytest.mark.parametrize('name, module, function', CONSOLE_SCRIPTS, ids=[name for name, _, _ in CONSOLE_SCRIPTS])
def test_console_script_help(name, module, function, monkeypatch, capsys):
    check_help(help_of(getattr(importlib.import_module(module), function), name, monkeypatch, capsys))


@pytest.mark.parametrize('script', ['train.py', 'test.py'])
def test_repo_script_help(script, monkeypatch, capsys):
    text = help_of(lambda: runpy.run_path(str(REPO_ROOT / script), run_name='__main__'), script, monkeypatch, capsys)
    check_help(text)
    assert re.search(rf'^examples:\n  {script} --opt ', text, re.MULTILINE)
    for flag in ('--opt', '--launcher', '--debug', '--local-rank', '--force-yml'):
        assert flag in text
    assert ('--auto-resume' in text) == (script == 'train.py'), 'resuming applies to training only'
    usage_and_examples = text.split('options:', 1)[0] + text.split('examples:', 1)[1].split('\n\n', 1)[0]
    assert not re.findall(r'(?<![\w-])--?[a-z]+_[a-z_]+', usage_and_examples), 'one flag style: --kebab-case'


@pytest.mark.parametrize('is_train', [True, False], ids=['train', 'test'])
def test_kebab_case_flags_and_basicsr_spellings_reach_basicsr_alike(is_train, monkeypatch):
    """``--opt X --auto-resume --force-yml ... --local-rank 0`` and BasicSR's ``-opt X --auto_resume --force_yml ...
    --local_rank 0`` give BasicSR's own ``parse_options`` the same options."""
    import basicsr.utils.options

    import vfsr_cli
    options = str(REPO_ROOT / 'tests' / 'options' / 'edvr_tiny_cpu.yml')
    resume = (['--auto-resume'], ['--auto_resume']) if is_train else ([], [])
    spellings = (['--opt', options, *resume[0], '--debug', '--local-rank', '0', '--force-yml', 'train:total_iter=3'],
                 ['-opt', options, *resume[1], '--debug', '--local_rank', '0', '--force_yml', 'train:total_iter=3'])
    parsed = []
    for argv in spellings:
        args = vfsr_cli.build_parser(is_train).parse_args(argv)
        monkeypatch.setattr(sys, 'argv', ['train.py', *vfsr_cli.basicsr_argv(args)])
        opt, _ = basicsr.utils.options.parse_options(str(REPO_ROOT), is_train=is_train)
        parsed.append(opt)
    kebab, basicsr_style = parsed
    assert kebab == basicsr_style
    assert kebab['train']['total_iter'] == 3 and kebab['name'].startswith('debug_')
    assert kebab['auto_resume'] == is_train


def run_prep(script: str, *args: str, monkeypatch, capsys) -> tuple[int, str]:
    """``python -m datasets_prep.<script> *args`` in this process: (exit code, stderr)."""
    monkeypatch.setattr(sys, 'argv', [script, *args])
    monkeypatch.delitem(sys.modules, f'datasets_prep.{script}', raising=False)
    try:
        runpy.run_module(f'datasets_prep.{script}', run_name='__main__')
        code = 0
    except SystemExit as stopped:
        code = stopped.code
    return code, capsys.readouterr().err


def test_prep_script_problems_are_one_line_with_exit_code_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run_prep('make_synthetic_vfhq', '--output', 'raw', '--clips', '1', '--frames', '2', '--frame-size', '64',
                    monkeypatch=monkeypatch, capsys=capsys)[0] == 0
    assert run_prep('make_degraded_testset', '--gt', 'raw/frames', '--output', 'lq', '--max-frames', '1',
                    monkeypatch=monkeypatch, capsys=capsys)[0] == 0
    cases = [
        (('make_synthetic_vfhq', '--output', 'raw'), 'raw already exists; remove it or pass --overwrite'),
        (('make_clip_lmdb', '--input', 'missing', '--output', 'out.lmdb'), 'clip root missing is not a folder'),
        (('make_clip_lmdb', '--input', 'raw/frames', '--output', 'out'), 'the LMDB path must end with .lmdb'),
        (('make_tufs_lmdb', 'missing', 'out.lmdb'), 'missing is not a folder'),
        (('align_vfhq_clips', '--frames', 'raw/frames', '--annotations', 'missing', '--output', 'aligned'),
         'annotation folder missing is not a folder'),
        (('convert_tufs_landmarks', '--input', 'missing.pickle', '--output', 'out.npz'),
         'missing.pickle: No such file or directory'),
        (('convert_tufs_landmarks', '--input', 'raw/landmarks/clip000.txt', '--output', 'out.npz'),
         'raw/landmarks/clip000.txt is not a readable pickle'),
        (('make_degraded_testset', '--gt', 'raw/frames', '--output', 'lq', '--max-frames', '1', '--seed', '1'),
         'lq was made with other settings (seed differ, see lq/degradation.json)'),
        (('make_degraded_testset', '--gt', 'raw/frames', '--output', 'lq2', '--options', '{crf'),
         '--options is not a JSON object'),
    ]
    before = sorted(tmp_path.rglob('*'))
    for (script, *args), message in cases:
        code, stderr = run_prep(script, *args, monkeypatch=monkeypatch, capsys=capsys)
        assert code == 2, (script, args, stderr)
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(f'python -m datasets_prep.{script}: error: {message}'), lines
    assert sorted(tmp_path.rglob('*')) == before, 'nothing is written'
