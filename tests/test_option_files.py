"""Every shipped option file names registered types and keywords the classes accept (checked as train.py does)."""
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from vfsr_cli import check_options, load_options, referenced_paths

OPTION_FILES = sorted((REPO_ROOT / 'options').glob('*.yml')) + sorted((REPO_ROOT / 'tests' / 'options').glob('*.yml'))


def create_referenced_paths(opt: dict, root: Path) -> None:
    """Stand-ins for the data and weights an option file points to (they are the user's to provide)."""
    for _, _, value, kind in referenced_paths(opt):
        path = root / value
        if kind == 'folder':
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()


@pytest.mark.parametrize('path', OPTION_FILES, ids=lambda path: path.name)
def test_option_file_is_valid(path, tmp_path, monkeypatch):
    opt = load_options(str(path))
    create_referenced_paths(opt, tmp_path)
    monkeypatch.chdir(tmp_path)
    check_options(opt, is_train='train' in opt)
