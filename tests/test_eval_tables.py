"""``python -m vfsr_eval.tables`` on fabricated metrics files: the expected rows, published numbers beside ours,
missing runs marked, ``--run`` overrides, bad arguments in one line."""
import json

from conftest import run_python

from vfsr_eval.tables import main

KEEP_OURS = {'psnr': 28.5, 'ssim': 0.83, 'lpips': 0.15, 'ids': 0.81, 'akd': 7.25, 'sigma_ids': 0.0312,
             'sigma_akd': 2.5}


def write_metrics(path, metrics: dict):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({'dataset': 'x', 'iter': None, 'num_clips': 3, 'metrics': metrics}))
    return path


def test_tables_print_paper_and_ours_with_missing_rows(tmp_path, capsys):
    write_metrics(tmp_path / 'results/test_VidFace_TUFS145K/metrics_TUFS145K_test.json',
                  {'psnr_y': 30.123, 'ssim_y': 0.8765, 'psnr_rgb': 1.0})
    write_metrics(tmp_path / 'evaluation/VFHQ-Test/metrics_KEEP.json', KEEP_OURS)
    edvr = write_metrics(tmp_path / 'elsewhere.json', dict(KEEP_OURS, psnr=26.0))
    assert main(['--root', str(tmp_path), '--run', f'keep:EDVR={edvr}']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert '| VidFace | 30.94 | 30.12 | — | 0.8765 | — | missing | — | missing |' in lines
    assert '| Bicubic | 25.72 | missing | 0.7914 | missing | 23.86 | missing | 0.7029 | missing |' in lines
    assert ('| KEEP | 27.9994 | 28.5000 | 0.8267 | 0.8300 | 0.1619 | 0.1500 | 0.7960 | 0.8100 | 8.8182 | 7.2500 | '
            '3.6866 | 3.1200 | 3.2538 | 2.5000 |') in lines
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
