"""The command line shared by the ``datasets_prep`` scripts: ``--kebab-case`` flags (older spellings still accepted,
hidden from ``--help``), the module docstring and its examples as ``--help``, and expected problems (an existing
output, a missing folder, a bad path or setting) as one ``<script>: error: ...`` line with exit code 2."""
import argparse
import sys
from collections.abc import Callable
from pathlib import Path

# Problems a script expects from its input (a path that is missing, exists already, is of the wrong kind, data
# in the wrong format): reported in one line. Anything else is a bug and keeps its traceback.
EXPECTED_ERRORS = (OSError, ValueError)


class ScriptParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` for ``python -m datasets_prep.<script>``: its ``--help`` is the module docstring."""

    def __init__(self, script_file: str, doc: str):
        super().__init__(prog=f'python -m datasets_prep.{Path(script_file).stem}', description=doc,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
        self._required_flags: list[argparse.Action] = []

    def add_flag(self, name: str, *, old: tuple[str, ...] = (), required: bool = False, **kwargs):
        """``add_argument(name, ...)`` plus hidden aliases ``old`` (earlier spellings, still accepted).
        ``required`` is checked after parsing, so an alias satisfies it."""
        action = self.add_argument(name, **kwargs)
        alias_kwargs = {key: value for key, value in kwargs.items() if key not in ('help', 'default', 'metavar')}
        for alias in old:
            self.add_argument(alias, dest=action.dest, help=argparse.SUPPRESS, default=argparse.SUPPRESS,
                              **alias_kwargs)
        if required:
            self._required_flags.append(action)
        return action

    def format_usage(self) -> str:
        return self._with_required_shown(super().format_usage)

    def format_help(self) -> str:
        return self._with_required_shown(super().format_help)

    def _with_required_shown(self, format_text: Callable[[], str]) -> str:
        """Format with the required flags shown as required (argparse itself must not enforce them: an old
        spelling may stand for one)."""
        for action in self._required_flags:
            action.required = True
        try:
            return format_text()
        finally:
            for action in self._required_flags:
                action.required = False

    def add_old_positionals(self, *flags: str) -> None:
        """Accept the positional paths of earlier versions (``script IN OUT``) as the given flags."""
        self.add_argument('old_positionals', nargs='*', help=argparse.SUPPRESS)
        self._old_positional_flags = flags

    def parse_args(self, args=None, namespace=None):
        parsed = super().parse_args(args, namespace)
        positionals = getattr(parsed, 'old_positionals', None) or []
        if positionals:
            flags = self._old_positional_flags
            if len(positionals) > len(flags):
                self.error(f'unrecognized arguments: {" ".join(positionals[len(flags):])}')
            for flag, value in zip(flags, positionals):
                dest = flag.lstrip('-').replace('-', '_')
                if getattr(parsed, dest, None) is not None:
                    self.error(f'{flag} given twice (as a flag and as a positional path)')
                setattr(parsed, dest, value)
        missing = [action.option_strings[0] for action in self._required_flags
                   if getattr(parsed, action.dest, None) is None]
        if missing:
            self.error(f'the following arguments are required: {", ".join(missing)}')
        return parsed


def run_script(parser: ScriptParser, work: Callable[[argparse.Namespace], object]) -> None:
    """Parse the command line and run ``work(args)``; an expected problem ends the run in one line, exit code 2."""
    args = parser.parse_args()
    try:
        work(args)
    except EXPECTED_ERRORS as error:
        message = str(error) if not isinstance(error, OSError) or not error.filename else (
            f'{error.filename}: {error.strerror or error}')
        print(f'{parser.prog}: error: {message}', file=sys.stderr)
        raise SystemExit(2) from None
