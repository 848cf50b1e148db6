"""Print the papers' tables, every published cell beside ours: ``python -m vfsr_eval.tables``.

Tables (:mod:`vfsr_eval.paper_tables`): ``vidface`` (VidFace Table 1, Y and RGB), ``vidface_ablation`` (VidFace
Table 2), ``keep`` (KEEP Table 1, all eight rows), ``keep_ablation`` (KEEP Table 3). For every row it reads the
metrics JSON that ``test.py`` or ``vfsr-evaluate`` wrote for that method and test set, at the default places listed
there (relative to ``--root``), or where ``--run TABLE:METHOD[:TEST_SET]=PATH`` says. A figure our runs did not
produce prints as ``missing``, one that is not a finite number as ``undefined``; the footnotes name the choices the
papers leave open (colour space, split, sigma scale, averaging) and vfsr's. Examples::

    python -m vfsr_eval.tables                                    # all tables, runs found under the current folder
    python -m vfsr_eval.tables --table keep --run keep:EDVR=evaluation/VFHQ-Test/metrics_EDVR.json
    python -m vfsr_eval.tables --run vidface:VidFace:IJB-C=results/test_VidFace_IJBC/metrics_IJBC_test.json
"""
import argparse
import sys
from pathlib import Path

from vfsr_eval.metrics_file import format_number, read_metrics_file
from vfsr_eval.paper_tables import PAPER_TABLES, PaperTable

MISSING = 'missing'


class TablesError(ValueError):
    """A bad ``--run`` or an unreadable metrics file, in one line."""


def parse_runs(entries: list[str]) -> dict[tuple[str, str, str], Path]:
    """``TABLE:METHOD[:TEST_SET]=PATH`` -> {(table, method, test set): path}; the test set may be left out when the
    table has one."""
    runs = {}
    for entry in entries:
        target, separator, path = entry.partition('=')
        parts = target.split(':')
        if not separator or not path or len(parts) not in (2, 3):
            raise TablesError(f'--run {entry!r}: expected TABLE:METHOD[:TEST_SET]=PATH')
        table = PAPER_TABLES.get(parts[0])
        if table is None:
            raise TablesError(f'--run {entry!r}: unknown table {parts[0]!r}; tables: {", ".join(PAPER_TABLES)}')
        if parts[1] not in [row.method for row in table.rows]:
            raise TablesError(f'--run {entry!r}: {table.key} has no method {parts[1]!r}; methods: '
                              f'{", ".join(row.method for row in table.rows)}')
        test_sets = list(dict.fromkeys(column.test_set for column in table.columns))
        if len(parts) == 2 and len(test_sets) > 1:
            raise TablesError(f'--run {entry!r}: name the test set ({" or ".join(test_sets)})')
        test_set = parts[2] if len(parts) == 3 else test_sets[0]
        if test_set not in test_sets:
            raise TablesError(f'--run {entry!r}: {table.key} has no test set {test_set!r}; test sets: '
                              f'{", ".join(test_sets)}')
        if not Path(path).is_file():
            raise TablesError(f'--run {entry!r}: {path} does not exist')
        runs[(table.key, parts[1], test_set)] = Path(path)
    return runs


def find_run(table: PaperTable, method: str, test_set: str, root: Path, runs: dict) -> Path | None:
    if (table.key, method, test_set) in runs:
        return runs[(table.key, method, test_set)]
    row = next(row for row in table.rows if row.method == method)
    return next((root / path for path in row.runs.get(test_set, ()) if (root / path).is_file()), None)


def header(column) -> list[str]:
    if column.metric is None:
        return [column.label]
    arrow = '↑' if column.higher_is_better else '↓'
    return [f'{column.label} {arrow} paper', f'{column.label} {arrow} ours']


def render_table(table: PaperTable, root: Path, runs: dict) -> str:
    """The Markdown table: per column the paper's cell and ours; notes and the files ours come from below."""
    names = ['method'] + [name for column in table.columns for name in header(column)]
    lines = [f'### {table.title}', '', '| ' + ' | '.join(names) + ' |', '|---' * len(names) + '|']
    sources = []
    for row in table.rows:
        cells = [row.method]
        records = {}
        for column, published in zip(table.columns, row.published, strict=True):
            cells.append(published)
            if column.metric is None:
                continue
            if column.test_set not in records:
                path = find_run(table, row.method, column.test_set, root, runs)
                records[column.test_set] = read_metrics_file(path) if path else None
                if path:
                    sources.append(f'{row.method} / {column.test_set}: {path}')
            record = records[column.test_set]
            if record is None or column.metric not in record['metrics']:
                cells.append(MISSING)
                continue
            ours = record['metrics'][column.metric]
            cells.append(format_number(None if ours is None else ours * column.scale, column.digits))
        lines.append('| ' + ' | '.join(cells) + ' |')
    lines.append('')
    lines += [f'- {note}' for note in table.notes]
    lines += [f'- ours from {source}' for source in sources] or ['- no run of ours found']
    return '\n'.join(lines) + '\n'


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='python -m vfsr_eval.tables', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--table', choices=sorted(PAPER_TABLES), action='append',
                        help='which table (repeatable; default: all)')
    parser.add_argument('--root', default='.', help='folder the default run paths are relative to (default: .)')
    parser.add_argument('--run', action='append', default=[], metavar='TABLE:METHOD[:TEST_SET]=PATH',
                        help='the metrics JSON of one row (overrides the default place)')
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        runs = parse_runs(args.run)
        text = '\n'.join(render_table(PAPER_TABLES[key], Path(args.root), runs) for key in (args.table or PAPER_TABLES))
    except (TablesError, ValueError) as error:
        print(f'vfsr_eval.tables: error: {error}', file=sys.stderr)
        return 2
    print(text, end='')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
