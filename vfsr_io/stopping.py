"""Ctrl-C and SIGTERM stop a command with one line and exit code 130 or 143, wherever in Python they land.

CPython habits that get in the way, all seen on vfsr-restore:
- an interrupt raised inside a weakref callback or ``__del__`` is printed as "Exception ignored" and lost; the run
  then goes on to its end;
- one raised inside an import can surface as another error (a RuntimeError from a class body's ``__set_name__``);
- one that escapes an ``exec()`` of a string (dataclasses compile their methods so, during imports) leaves a note
  that makes the interpreter end by killing itself with SIGINT, whatever exit code the command returns.
"""
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

INTERRUPTED, TERMINATED = 130, 143
RESEND_AFTER_S = 0.05  # long enough for the unraisable hook to have returned


class Terminated(BaseException):
    """SIGTERM (a plain ``kill``, a scheduler's stop), raised like Ctrl-C's KeyboardInterrupt so that every cleanup
    on the way out runs."""


@contextmanager
def stop_signals() -> Iterator[None]:
    """Within: SIGTERM raises :class:`Terminated`; a stop that Python could not raise where it landed is raised
    again a moment later, in ordinary code. Outside the main thread (a caller's worker) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    lost: list[type[BaseException]] = []

    def raise_lost_stop(signum, frame):
        if lost:
            raise lost.pop()()

    def keep_lost_stop(unraisable) -> None:
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt | Terminated):
            lost.append(unraisable.exc_type)
            signal.setitimer(signal.ITIMER_REAL, RESEND_AFTER_S)  # raising here would only lose it again
        else:
            previous_hook(unraisable)

    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    previous_hook = sys.unraisablehook
    signal.signal(signal.SIGTERM, _raise_terminated)
    signal.signal(signal.SIGALRM, raise_lost_stop)
    sys.unraisablehook = keep_lost_stop
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        sys.unraisablehook = previous_hook
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextmanager
def stops_held() -> Iterator[None]:
    """Within (imports, in the main thread before any other thread starts): Ctrl-C and SIGTERM wait and land when
    it ends, so that they never surface as another error."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)


def stop_exit_code(stop: BaseException) -> int:
    """130 for Ctrl-C, 143 for SIGTERM. Call it first in the ``except`` that caught ``stop``: from then on, inside
    :func:`stop_signals`, another Ctrl-C or SIGTERM does not cut the goodbye short."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.setitimer(signal.ITIMER_REAL, 0)
    exec('')  # any exec() of a string clears CPython's note of an interrupt that escaped one
    return TERMINATED if isinstance(stop, Terminated) else INTERRUPTED


def _raise_terminated(signum, frame):
    raise Terminated()
