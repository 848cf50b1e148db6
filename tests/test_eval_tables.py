"""``python -m vfsr_eval.tables`` on fabricated metrics files: every published cell as in our copy of the papers'
tables (``tests/data/paper_tables.md``), cell by cell, ours beside them, missing runs marked, ``--run`` overrides,
bad arguments in one line."""
import json
import re

import pytest
from conftest import REPO_ROOT, SHARED_DIR, TEST_DATA_DIR, run_python

from vfsr_eval.tables import main

KEEP_OURS = {'psnr': 28.5, 'ssim': 0.83, 'lpips': 0.15, 'ids': 0.81, 'akd': 7.25, 'sigma_ids': 0.0312,
             'sigma_akd': 2.5}


def write_metrics(path, metrics: dict):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({'dataset': 'x', 'iter': None, 'num_clips': 3, 'metrics': metrics}))
    return path


def test_tables_print_paper_and_ours_with_missing_rows(tmp_path, capsys):
    write_metrics(tmp_path / 'results/test_VidFace_TUFS145K/metrics_TUFS145K_test.json',
                  {'psnr_y': 30.123, 'ssim_y': 0.8765, 'psnr': 1.0})
    write_metrics(tmp_path / 'evaluation/VFHQ-Test/metrics_KEEP.json', KEEP_OURS)
    edvr = write_metrics(tmp_path / 'elsewhere.json', dict(KEEP_OURS, psnr=26.0))
    assert main(['--root', str(tmp_path), '--run', f'keep:EDVR={edvr}']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert ('| VidFace | 30.94 | 30.12 | 0.9181 | 0.8765 | 26.35 | missing | 0.8076 | missing | 29.46 | 1.00 | '
            '0.9026 | missing | 24.89 | missing | 0.7795 | missing |') in lines
    assert ('| Bicubic | 25.72 | missing | 0.7914 | missing | 23.86 | missing | 0.7029 | missing | 24.31 | missing | '
            '0.7631 | missing | 22.44 | missing | 0.6647 | missing |') in lines
    assert '| VidFace | T2T transformer | yes | yes | 29.46 | 1.00 |' in lines  # the ablation's RGB PSNR: same run
    assert ('| KEEP | 27.9994 | 28.5000 | 0.8267 | 0.8300 | 0.1619 | 0.1500 | 0.7960 | 0.8100 | 8.8182 | 7.2500 | '
            '3.6866 | 3.1200 | 3.2538 | 2.5000 |') in lines
    assert '| full model | 0.1619 | 0.1500 | 0.7960 | 0.8100 | 8.8182 | 7.2500 |' in lines
    assert lines.count('| CodeFormer | 24.6597 | missing | 0.7454 | missing | 0.2742 | missing | 0.6272 | missing '
                       '| 11.4983 | missing | 6.3726 | missing | 3.6927 | missing |') == 1
    assert any(line.startswith('| EDVR | 26.6051 | 26.0000 |') for line in lines)
    assert f'- ours from EDVR / VFHQ-Test: {edvr}' in lines


def test_tables_command_line(tmp_path):
    result = run_python(tmp_path, '-m', 'vfsr_eval.tables', '--table', 'vidface')
    assert result.stdout.startswith('### VidFace Table 1') and 'KEEP' not in result.stdout


def test_bad_arguments_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'broken.json').write_text('{"metrics": ')
    for args, message in ((['--run', 'keep:EDVR'], 'expected TABLE:METHOD[:TEST_SET]=PATH'),
                          (['--run', 'keep:EDRV=x.json'], "keep has no method 'EDRV'"),
                          (['--run', 'vidface:VidFace=x.json'], 'name the test set (TUFs-145K or IJB-C)'),
                          (['--run', 'keep:EDVR=absent.json'], 'absent.json does not exist'),
                          (['--run', 'keep:KEEP=broken.json'], 'broken.json: not a readable metrics JSON')):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.count('\n') == 1 and err.startswith('vfsr_eval.tables: error: ') and message in err, err


def markdown_tables(text: str, heading: str) -> dict[str, list[list[str]]]:
    """{heading text: rows of cells} for every table under a ``heading`` (``##`` or ``###``) line."""
    tables, title = {}, None
    for line in text.splitlines():
        if line.startswith(heading + ' '):
            title = line[len(heading) + 1:]
        elif line.startswith('|') and title is not None and not line.startswith('|---'):
            tables.setdefault(title, []).append([cell.strip() for cell in line.strip('|').split('|')])
    return tables


COPY_TO_PRINTED = {  # heading in tests/data/paper_tables.md -> the start of the printed title
    'VidFace (Gan et al. 2021), Table 1: 8x, TUFs-145K and IJB-C, PSNR / SSIM': 'VidFace Table 1',
    'VidFace, Table 2: ablation on TUFs-145K, PSNR (dB)': 'VidFace Table 2',
    'KEEP (Feng et al. 2024), Table 1: VFHQ-Test': 'KEEP Table 1',
    'KEEP, Table 3: ablation (LPIPS, IDS, AKD)': 'KEEP Table 3',
}


def test_every_published_cell_is_printed_as_in_the_papers_tables(tmp_path, capsys):
    assert main(['--root', str(tmp_path)]) == 0
    printed = markdown_tables(capsys.readouterr().out, '###')
    copy = markdown_tables((TEST_DATA_DIR / 'paper_tables.md').read_text(), '##')
    assert list(copy) == list(COPY_TO_PRINTED) and len(printed) == len(copy)
    compared = 0
    for heading, (header, *rows) in copy.items():
        title = next(title for title in printed if title.startswith(COPY_TO_PRINTED[heading]))
        printed_header, *printed_rows = printed[title]
        paper_columns = [re.sub(r' [↑↓] paper$', '', name) for name in printed_header[1:]
                         if not name.endswith(' ours')]
        assert paper_columns == header[1:], heading  # every column, in order, and no other
        assert [row[0] for row in printed_rows] == [row[0] for row in rows], heading  # every row, no other
        for row, printed_row in zip(rows, printed_rows):
            cells = dict(zip(printed_header, printed_row))
            for label, published in zip(header[1:], row[1:]):
                name = next(name for name in printed_header if re.fullmatch(rf'{re.escape(label)}( [↑↓] paper)?', name))
                assert cells[name] == published, (heading, row[0], label)
                ours = name.replace(' paper', ' ours')
                assert name == label or cells[ours] == 'missing', (heading, row[0], label)  # no run under tmp_path
                compared += 1
    assert compared == 4 * 8 + 3 * 4 + 8 * 7 + 3 * 3


def test_the_copy_of_the_papers_tables_is_the_shared_one():
    shared = SHARED_DIR / 'paper_tables.md'
    if not shared.is_file():
        pytest.skip(f'{shared} is not available')
    assert (TEST_DATA_DIR / 'paper_tables.md').read_text() == shared.read_text()


def test_footnotes_name_the_choices_the_papers_leave_open(tmp_path, capsys):
    assert main(['--root', str(tmp_path)]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith('- ')]
    for choice in ('Colour space:', 'Split:', 'sigma scale:', 'Averaging:'):
        assert any(line.startswith(f'- {choice}') for line in notes), choice


def test_undefined_and_small_figures_of_ours(tmp_path, capsys):
    write_metrics(tmp_path / 'evaluation/VFHQ-Test/metrics_KEEP.json', dict(KEEP_OURS, psnr=None, lpips=4.7e-5))
    assert main(['--root', str(tmp_path), '--table', 'keep']) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith('| KEEP |'))
    assert row.startswith('| KEEP | 27.9994 | undefined | 0.8267 | 0.8300 | 0.1619 | 4.70e-05 |')


def test_the_commands_of_docs_evaluate_run_as_written(tmp_path):
    """Every command of docs/evaluate.md's bash blocks not marked ``<!-- not run by tests: why -->``, each in a fresh
    process, from a folder holding no runs: it prints every table it names."""
    from test_readme import shell_commands

    commands = shell_commands((REPO_ROOT / 'docs' / 'evaluate.md').read_text())
    assert commands, 'docs/evaluate.md has no command that runs without data'
    for words in commands:
        assert words[:3] == ['python', '-m', 'vfsr_eval.tables'], f'not a command this test knows: {words}'
        printed = run_python(tmp_path, *words[1:]).stdout
        assert printed.count('### ') == (words.count('--table') or 4) and 'no run of ours found' in printed, words
