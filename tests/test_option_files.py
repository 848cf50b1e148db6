"""Every shipped option file names registered types and keywords the classes accept (checked as train.py does)."""
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from vfsr_cli import check_options, load_options

OPTION_FILES = sorted((REPO_ROOT / 'options').glob('*.yml')) + sorted((REPO_ROOT / 'tests' / 'options').glob('*.yml'))


def create_referenced_paths(opt: dict, root: Path) -> None:
    """Stand-ins for the data and weights an option file points to (they are the user's to provide)."""
    for dataset_opt in (opt.get('datasets') or {}).values():
        for name, value in dataset_opt.items():
            if name.startswith('dataroot') and value:
                (root / value).mkdir(parents=True, exist_ok=True)
            elif name == 'meta_info_file' and value:
                (root / value).parent.mkdir(parents=True, exist_ok=True)
                (root / value).touch()
    for name, value in (opt.get('path') or {}).items():
        if name.startswith('pretrain_network') and value:
            (root / value).parent.mkdir(parents=True, exist_ok=True)
            (root / value).touch()


@pytest.mark.parametrize('path', OPTION_FILES, ids=lambda path: path.name)
def test_option_file_is_valid(path, tmp_path, monkeypatch):
    opt = load_options(str(path))
    create_referenced_paths(opt, tmp_path)
    monkeypatch.chdir(tmp_path)
    check_options(opt, is_train='train' in opt)
