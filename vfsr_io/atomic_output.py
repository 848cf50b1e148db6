"""Outputs that appear whole or not at all: build under a hidden partial name beside the target, rename at the end.

An interrupted or failed run (exception, Ctrl-C) removes its partial output; a killed run leaves only a hidden
``.<stem>.partial-<pid><suffix>`` folder (or file), never a half-written target, and the next run starts afresh.
"""
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_directory(target: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a not-yet-existing partial path to build ``target`` (a folder, or a single file) in; on success it
    is renamed to ``target``.

    The partial path keeps ``target``'s suffix (LMDB writers insist on ``.lmdb``). An existing ``target`` is an
    error unless ``overwrite``, in which case it is replaced only after the new one is complete.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(f'{target} already exists; remove it or pass --overwrite')
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f'.{target.stem}.partial-{os.getpid()}{target.suffix}')
    remove(partial)
    try:
        yield partial
    except BaseException:
        remove(partial)
        raise
    if not partial.exists():
        raise RuntimeError(f'nothing was written to {partial} for {target}')
    if target.exists():
        retired = target.with_name(f'.{target.name}.retired-{os.getpid()}')
        target.rename(retired)
        partial.rename(target)
        remove(retired)
    else:
        partial.rename(target)


def write_text_atomically(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all: into a hidden partial file beside it, then renamed over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f'.{path.name}.partial-{os.getpid()}')
    try:
        partial.write_text(text)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def remove(path: Path) -> None:
    """Remove a folder tree or a file, if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
