"""The README and docs run as written.

- Their data commands (``python -m datasets_prep...`` in README.md, docs/data.md and docs/training.md) run
  verbatim on tiny inputs made in the places the commands read, and the shipped option files' datasets are then
  built from the outputs (with the ``--force-yml`` overrides the docs show): the commands, the docs and the option
  files cannot drift apart.
- Their Python blocks run on a tiny configuration: the only change is the one substitution listed in
  ``TINY_CONFIGURATIONS`` (the released 512x512 KEEP becomes a 32x32 one), and each substitution must apply.
- ``KEEP.restore_video`` takes what the README says it takes, and the relative links of the docs resolve.

The commands run in this process through ``runpy`` (as ``python -m`` would), so they cost no interpreter start;
tests/test_docs_blocks.py runs every block as written in a fresh process.
"""
import vfsr_compat  # noqa: F401  (before basicsr)

# isort: split
import json
import pickle
import re
import runpy
import shlex
import sys
from pathlib import Path

import cv2
import pytest
import torch
from basicsr.data import build_dataset
from basicsr.utils.registry import ARCH_REGISTRY
from conftest import REPO_ROOT
from test_keep_arch import TINY

import vfsr_cli
from datasets_prep.make_demo_tufs import make_demo_tufs
from datasets_prep.make_synthetic_vfhq import make_synthetic_vfhq
from vfsr_face.astronaut import astronaut_bgr

DOCS_WITH_DATA_COMMANDS = ('README.md', 'docs/data.md', 'docs/training.md')
PYTHON_BLOCK_DOCS = ['README.md'] + sorted(f'docs/{path.name}' for path in (REPO_ROOT / 'docs').glob('*.md'))
# Option files whose datasets the data commands must produce (every split whose data is not an official download).
OPTION_FILES = ('options/train_vidface_tufs.yml', 'options/test_vidface_tufs.yml', 'options/train_edvr_tufs.yml',
                'options/train_keep_vfhq_stage1.yml', 'options/train_keep_vfhq_stage2.yml',
                'options/train_keep_vfhq_stage3.yml', 'options/demo_vidface.yml', 'options/test_bicubic_demo.yml',
                'options/demo_keep_stage1.yml', 'options/demo_keep_stage2.yml', 'options/demo_keep_stage3.yml',
                'tests/options/edvr_tiny_cpu.yml')
OFFICIAL_DOWNLOADS = ('VFHQ-Test', )  # validation splits of the KEEP training options: the official test set
# Python blocks: (pattern, replacement) making the released configuration tiny.
TINY_CONFIGURATIONS = [
    (r"released_keep = dict\([^)]*\)", f'released_keep = {TINY!r}'),
]
SKIP_MARK = '<!-- not run by tests'


def fenced_blocks(markdown: str, language: str) -> list[str]:
    """The code blocks of ``language``, except those right after a ``<!-- not run by tests: why -->`` line."""
    blocks = []
    for match in re.finditer(rf'^([^\n]*\n)?```{language}\n(.*?)^```', markdown, re.MULTILINE | re.DOTALL):
        if not (match.group(1) or '').startswith(SKIP_MARK):
            blocks.append(match.group(2))
    return blocks


def shell_commands(markdown: str) -> list[list[str]]:
    """The commands of the bash blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in fenced_blocks(markdown, 'bash'):
        for line in block.replace('\\\n', ' ').splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
    return commands


def make_tiny_inputs(root: Path) -> None:
    """What the data commands read, in the places they read it: TUFs-145K clips with the official landmark pickle,
    VFHQ raw clips with their annotations."""
    tufs = make_demo_tufs(root / 'tiny_tufs', num_train=2, num_val=1)
    dataset_root = root / 'datasets' / 'TUFS145K'
    dataset_root.mkdir(parents=True)
    (tufs / 'train').rename(dataset_root / 'train')
    (tufs / 'val').rename(dataset_root / 'test')
    (tufs / 'meta_info_train.txt').rename(dataset_root / 'meta_info_train.txt')
    (tufs / 'meta_info_val.txt').rename(dataset_root / 'meta_info_test.txt')
    landmarks = json.loads((tufs / 'landmarks.json').read_text())
    with open(root / 'tufs145k_lmk_norm.pickle', 'wb') as file:
        pickle.dump(landmarks, file)

    vfhq = make_synthetic_vfhq(root / 'tiny_vfhq', num_clips=2, num_frames=8, frame_size=128)
    (root / 'datasets' / 'VFHQ').mkdir(parents=True)
    (vfhq / 'frames').rename(root / 'datasets' / 'VFHQ' / 'raw')
    (vfhq / 'landmarks').rename(root / 'datasets' / 'VFHQ' / 'annotations')


def run_prep_command(words: list[str], monkeypatch) -> None:
    """``python -m datasets_prep.<script> ...`` in this process; it must succeed."""
    assert words[:2] == ['python', '-m'], words
    monkeypatch.setattr(sys, 'argv', [words[2], *words[3:]])
    monkeypatch.delitem(sys.modules, words[2], raising=False)  # run it afresh as __main__, as python -m does
    try:
        runpy.run_module(words[2], run_name='__main__')
    except SystemExit as stopped:
        assert stopped.code in (0, None), f'{shlex.join(words)} failed with exit code {stopped.code}'


def build_datasets(opt_path: str, force_yml: list[str] | None = None) -> int:
    """Build every dataset of an option file (as BasicSR's parse_options prepares them) and read its first sample;
    returns how many were built."""
    opt = vfsr_cli.load_options(str(REPO_ROOT / opt_path), force_yml)
    built = 0
    for phase, dataset_opt in opt['datasets'].items():
        roots = [value for name, value in dataset_opt.items() if name.startswith('dataroot') and value]
        if any(download in root for root in roots for download in OFFICIAL_DOWNLOADS):
            continue
        missing = [root for root in roots if not Path(root).exists()]
        assert not missing, f'{opt_path}: datasets.{phase} reads {missing}, which no command of the docs makes'
        dataset_opt = dict(dataset_opt, phase=phase.split('_')[0])
        if 'scale' in opt:
            dataset_opt['scale'] = opt['scale']
        dataset = build_dataset(dataset_opt)
        assert len(dataset) > 0 and dataset[0] is not None
        built += 1
    return built


def test_data_commands_make_what_the_option_files_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_tiny_inputs(tmp_path)
    commands = []
    for doc in DOCS_WITH_DATA_COMMANDS:
        for words in shell_commands((REPO_ROOT / doc).read_text()):
            if words not in commands:  # the README and docs/data.md share a few
                commands.append(words)
    prep = [words for words in commands if words[:2] == ['python', '-m'] and words[2].startswith('datasets_prep.')]
    trainings = [words for words in commands if words[:3] == ['python', 'train.py', '--opt'] and '--force-yml' in words]
    assert len(prep) >= 10 and len(trainings) >= 2
    for words in prep:
        run_prep_command(words, monkeypatch)
    built = sum(build_datasets(opt_path) for opt_path in OPTION_FILES)
    for words in trainings:  # the docs' --force_yml variants (LMDB) of the option files
        after = words[words.index('--force-yml') + 1:]
        force_yml = after[:next((i for i, word in enumerate(after) if word.startswith('--')), len(after))]
        built += build_datasets(words[3], force_yml)
    assert built >= len(OPTION_FILES) + len(trainings)


@pytest.fixture
def tiny_released_files(tmp_path):
    """What the README's Python blocks read: a tiny KEEP checkpoint where the released one goes, and a folder of
    aligned faces (the astronaut at the tiny size)."""
    torch.manual_seed(0)
    net = ARCH_REGISTRY.get('KEEP')(**TINY)
    (tmp_path / 'weights' / 'KEEP').mkdir(parents=True)
    torch.save({'params_ema': net.state_dict()}, tmp_path / 'weights' / 'KEEP' / 'KEEP-b76feb75.pth')
    (tmp_path / 'faces').mkdir()
    face = cv2.resize(astronaut_bgr()[60:380, 64:384], (TINY['img_size'], TINY['img_size']),
                      interpolation=cv2.INTER_AREA)
    for index in range(3):
        cv2.imwrite(str(tmp_path / 'faces' / f'{index:05d}.png'), face)
    return tmp_path


def python_blocks() -> list[tuple[str, int, str]]:
    return [(doc, index, block) for doc in PYTHON_BLOCK_DOCS if (REPO_ROOT / doc).is_file()
            for index, block in enumerate(fenced_blocks((REPO_ROOT / doc).read_text(), 'python'))]


def test_every_tiny_configuration_applies():
    """A substitution that no longer matches means the docs changed: update TINY_CONFIGURATIONS."""
    for pattern, _ in TINY_CONFIGURATIONS:
        assert any(re.search(pattern, block) for _, _, block in python_blocks()), pattern


@pytest.mark.parametrize('doc, index, block', python_blocks(), ids=lambda value: str(value)[:20])
def test_python_block_runs(doc, index, block, tiny_released_files, monkeypatch):
    for pattern, replacement in TINY_CONFIGURATIONS:
        block = re.sub(pattern, replacement, block)
    monkeypatch.chdir(tiny_released_files)
    exec(compile(block, f'{doc} python block {index + 1}', 'exec'), {'__name__': '__readme__'})
    if 'restored/' in block:
        assert len(list((tiny_released_files / 'restored').glob('*.png'))) == 3


def test_restore_video_takes_a_clip_or_frames_and_refuses_a_bare_frame_stack():
    torch.manual_seed(0)
    net = ARCH_REGISTRY.get('KEEP')(**TINY).eval()
    clip = torch.rand(1, 3, 3, TINY['img_size'], TINY['img_size']) * 2 - 1  # (b, T, 3, H, W)
    with torch.no_grad():
        from_clip = torch.stack(list(net.restore_video(clip, max_length=2)), dim=1)
        from_frames = torch.stack(list(net.restore_video(iter(clip.unbind(1)), max_length=2)), dim=1)
        whole = net(clip, need_upscale=False, max_length=2)
    assert from_clip.shape == clip.shape
    torch.testing.assert_close(from_clip, from_frames)
    torch.testing.assert_close(from_clip, whole)
    with pytest.raises(ValueError, match=r'pass frames\.unsqueeze\(0\)'):
        next(net.restore_video(clip[0]))



def test_relative_links_point_to_files():
    broken = []
    for doc in PYTHON_BLOCK_DOCS:
        path = REPO_ROOT / doc
        for target in re.findall(r'\]\(([^)#\s]+)(?:#[^)]*)?\)', path.read_text()):
            if not re.match(r'[a-z]+://', target) and not (path.parent / target).exists():
                broken.append(f'{doc}: {target}')
    assert broken == []
