"""Every code block of README.md and docs/*.md runs as written, each as its own script in a fresh process, in a
fresh copy of the repository (its tracked files, the test's own virtual environment as ``.venv``), as a newcomer
would paste it:

- ``bash`` blocks run with ``bash -e`` (the venv's ``python`` and console scripts first on the PATH), ``python``
  blocks with the venv's python; ``yaml`` and ``json`` blocks must parse. Other blocks (layouts, BibTeX) are text.
- A block runs to its end with exit code 0, or up to the point where it needs a file a newcomer must fetch: there
  it must stop with a message that names the file. Those files are named by the block's ``curl``/``wget`` lines
  (which do not download here: the tests never do) and by a ``<!-- stops at a missing file: NAME, ... -->`` line
  above the block (datasets, and files made by runs not in the block: ``NAME (made by make demo)``). A block with
  such a mark must stop there.
- Files a newcomer brings themselves (``my_video.mp4``, ``in.mp4``: their own video) are made in the copy first.
- Long-running blocks are marked on the line above them, with the reason:
  ``<!-- shortened by tests: why -->`` runs the block after the substitutions in ``SHORTENED`` (each must apply to
  some marked block, and every marked block must be changed by one), ``<!-- dry run by tests: why -->`` runs its
  ``make`` commands as ``make -n`` (they install a venv or run this suite), ``<!-- not run by tests: why -->`` skips
  it (placeholders for the user's own data, a GPU machine, a cluster).

tests/test_readme.py runs the data commands on tiny inputs and the Python blocks on a tiny configuration in-process;
this test is the fresh-process check of the same text (import order, console scripts, messages).
"""
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT

from vfsr_face.synthetic_video import FacePath, VideoSpec, write_video

DOCS = ['README.md'] + sorted(f'docs/{path.name}' for path in (REPO_ROOT / 'docs').glob('*.md'))
NOT_RUN, SHORTENED_MARK, DRY_RUN, STOPS = ('<!-- not run by tests:', '<!-- shortened by tests:',
                                           '<!-- dry run by tests:', '<!-- stops at a missing file:')
# (what a long block says, what the test runs instead): the same commands on a shorter schedule.
SHORTENED = [
    (re.compile(r'^make demo\b.*$', re.MULTILINE), 'python demo.py --iters 2'),
    (re.compile(r'total_iter=500\b'), 'total_iter=4'),
    (re.compile(r'periods=\[500\]'), 'periods=[4]'),
    (re.compile(r'save_checkpoint_freq=100\b'), 'save_checkpoint_freq=2'),
    (re.compile(r'val_freq=100\b'), 'val_freq=2'),
    (re.compile(r'(demo_keep_stage\d\.yml)\s*(#.*)?$', re.MULTILINE),
     r'\1 --force-yml train:total_iter=2 logger:save_checkpoint_freq=2 logger:print_freq=1'),
]
USER_FILES = ('my_video.mp4', 'in.mp4')  # a newcomer's own video
DOWNLOAD_PRELUDE = '''
curl() { echo "docs test: not downloading (curl $*)" >&2; }
wget() { echo "docs test: not downloading (wget $*)" >&2; }
'''


@dataclass
class Block:
    doc: str
    index: int
    language: str
    code: str
    mark: str  # the HTML comment line above the fence, or ''

    @property
    def name(self) -> str:
        return f'{self.doc}:{self.index + 1}:{self.language}'

    def marked(self, mark: str) -> bool:
        return self.mark.startswith(mark)


def doc_blocks() -> list[Block]:
    blocks = []
    for doc in DOCS:
        text = (REPO_ROOT / doc).read_text()
        pattern = r'^([^\n]*)\n```(\w*)\n(.*?)^```'
        for index, match in enumerate(re.finditer(pattern, text, re.MULTILINE | re.DOTALL)):
            mark = match.group(1).strip() if match.group(1).strip().startswith('<!--') else ''
            blocks.append(Block(doc, index, match.group(2), match.group(3), mark))
    return blocks


BLOCKS = doc_blocks()
RUN_BLOCKS = [block for block in BLOCKS if block.language in ('bash', 'python') and not block.marked(NOT_RUN)]


def shortened(code: str) -> str:
    for pattern, replacement in SHORTENED:
        code = pattern.sub(replacement, code)
    return code


def downloads(code: str) -> list[str]:
    """The file names a block's curl/wget lines would fetch (``-o PATH``, ``-O PATH``, else the URL's last part)."""
    names = []
    for line in code.replace('\\\n', ' ').splitlines():
        for command in re.findall(r'(?:^|&&|;)\s*((?:curl|wget)\s[^;&]*)', line):
            target = re.search(r'\s-[oO]\s+(\S+)', command) or re.search(r'(\S+)\s*$', command)
            names.append(Path(target.group(1)).name)
    return names


def needed_files(block: Block) -> list[str]:
    names = downloads(block.code)
    if block.marked(STOPS):
        listed = re.sub(r'\s*\([^)]*\)', '', block.mark[len(STOPS):].removesuffix('-->'))  # (a note) is no name
        names += [name.strip() for name in listed.split(',') if name.strip()]
    return names


@pytest.fixture(scope='module')
def user_video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp('user') / 'video.mp4'
    write_video(path, VideoSpec(160, 120, 12, 25, [FacePath(40)]))
    return path


def fresh_copy(root: Path, user_video: Path) -> Path:
    """The repository's tracked files in ``root``, with this test's venv as ``.venv`` and the user's own files."""
    tracked = subprocess.run(['git', 'ls-files', '-z'], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    for name in tracked.decode().split('\0'):
        if name and (REPO_ROOT / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, root / name)
    (root / '.venv').symlink_to(sys.prefix)
    for name in USER_FILES:
        shutil.copy(user_video, root / name)
    return root


def run_block(block: Block, root: Path) -> subprocess.CompletedProcess:
    code = shortened(block.code) if block.marked(SHORTENED_MARK) else block.code
    if block.marked(DRY_RUN):
        code = re.sub(r'^make ', 'make -n ', code, flags=re.MULTILINE)
    # One thread per process, as tests/conftest.py's run_python: on 2 shared cores two threads that wait for each
    # other made a small run several times slower (docs/training.md).
    env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS='1',
               PATH=f'{Path(sys.executable).parent}{os.pathsep}{os.environ["PATH"]}')
    env.pop('VIRTUAL_ENV', None)
    if block.language == 'python':
        script = root / 'docs_block.py'
        script.write_text(code)
        command = [sys.executable, script.name]
    else:
        script = root / 'docs_block.sh'
        script.write_text(DOWNLOAD_PRELUDE + code)
        command = ['bash', '-e', '-o', 'pipefail', script.name]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize('block', RUN_BLOCKS, ids=lambda block: block.name)
def test_block_runs_as_written_in_a_fresh_process(block, tmp_path, user_video):
    root = fresh_copy(tmp_path, user_video)
    result = run_block(block, root)
    output = f'--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-5000:]}'
    needed = needed_files(block)
    if not needed:
        assert result.returncode == 0, f'{block.name} failed:\n{output}'
        return
    assert result.returncode != 0, f'{block.name} should stop where it needs {needed}, but ran to its end'
    assert any(name in result.stderr for name in needed), f'{block.name} stopped without naming {needed}:\n{output}'
    assert 'ModuleNotFoundError' not in result.stderr and 'ImportError' not in result.stderr, output


@pytest.mark.parametrize('block', [block for block in BLOCKS if block.language in ('yaml', 'json')],
                         ids=lambda block: block.name)
def test_data_block_parses(block):
    assert (json.loads if block.language == 'json' else yaml.safe_load)(block.code) is not None


def test_marks_say_why_and_substitutions_apply():
    marks = (NOT_RUN, SHORTENED_MARK, DRY_RUN, STOPS)
    for block in BLOCKS:
        if block.mark:
            assert block.mark.startswith(marks), f'{block.name}: unknown mark {block.mark!r}'
            reason = block.mark.split(':', 1)[1].removesuffix('-->').strip()
            assert reason, f'{block.name}: the mark must say why (or, for stops, which files)'
    marked = [block for block in BLOCKS if block.marked(SHORTENED_MARK)]
    for pattern, _ in SHORTENED:
        assert any(pattern.search(block.code) for block in marked), f'{pattern.pattern} shortens no marked block'
    for block in marked:
        assert shortened(block.code) != block.code, f'{block.name} is marked shortened but nothing changes it'
    for block in BLOCKS:
        if block.marked(DRY_RUN):
            commands = [line for line in block.code.splitlines() if line.strip() and not line.startswith('#')]
            assert all(line.startswith(('make ', '. ')) for line in commands), f'{block.name}: only make commands'


def test_every_code_block_is_run_parsed_or_text():
    """A block in a language the test neither runs nor parses would go unchecked."""
    languages = {block.language for block in BLOCKS}
    assert languages <= {'bash', 'python', 'yaml', 'json', '', 'bibtex'}, languages
