"""vfsr_io.stopping: a Ctrl-C or SIGTERM that lands where CPython would lose it, turn it into another error or
into a death by SIGINT still ends the command with its one line and exit code 130 / 143.

Each case runs in a child process that sends itself the signal at the awkward place, deterministically."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from conftest import REPO_ROOT, default_sigint

COMMAND = '''
import gc, os, signal, sys, threading, time, weakref
from vfsr_io.stopping import Terminated, stop_exit_code, stop_signals, stops_held

class Thing:
    pass

def awkward_place():
{body}

def main():
    with stop_signals():
        try:
            awkward_place()
            for _ in range(500):  # 5 s in which the stop must land
                time.sleep(0.01)
            print('ran to the end')
            return 0
        except (KeyboardInterrupt, Terminated) as stop:
            code = stop_exit_code(stop)
            print('stopped', code)
            return code

sys.exit(main())
'''

SIGNALS = [(signal.SIGINT, 130), (signal.SIGTERM, 143)]


def run_child(tmp_path, body: str, signal_number: int) -> subprocess.CompletedProcess:
    """Run the command as ``python -m`` (as the console scripts run theirs)."""
    body = textwrap.indent(textwrap.dedent(body).replace('SIGNAL', str(int(signal_number))), '    ')
    (tmp_path / 'stopped_command.py').write_text(COMMAND.format(body=body))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), str(tmp_path)]))
    return subprocess.run([sys.executable, '-m', 'stopped_command'], env=env, capture_output=True, text=True,
                          timeout=60, preexec_fn=default_sigint)


@pytest.mark.parametrize('signal_number, code', SIGNALS)
def test_a_stop_inside_a_weakref_callback_is_not_lost(tmp_path, signal_number, code):
    """Python prints an exception raised in a weakref callback as "Exception ignored" and goes on."""
    result = run_child(tmp_path, '''
        thing = Thing()
        watcher = weakref.ref(thing, lambda ref: signal.raise_signal(SIGNAL))
        del thing
        gc.collect()
        ''', signal_number)
    assert (result.returncode, result.stdout, result.stderr) == (code, f'stopped {code}\n', '')


@pytest.mark.parametrize('signal_number, code', SIGNALS)
def test_a_stop_during_held_imports_lands_after_them(tmp_path, signal_number, code):
    result = run_child(tmp_path, '''
        with stops_held():
            os.kill(os.getpid(), SIGNAL)
            time.sleep(0.1)
            print('held')
        ''', signal_number)
    assert (result.returncode, result.stdout, result.stderr) == (code, f'held\nstopped {code}\n', '')


def test_an_interrupt_that_escaped_an_exec_still_exits_130(tmp_path):
    """CPython notes a KeyboardInterrupt that leaves an exec() of a string (as in dataclasses' generated methods
    during an import) and would end the process by SIGINT (-2) whatever its exit code."""
    result = run_child(tmp_path, '''
        threading.Timer(0.2, os.kill, (os.getpid(), SIGNAL)).start()
        exec('while True: pass')
        ''', signal.SIGINT)
    assert (result.returncode, result.stdout, result.stderr) == (130, 'stopped 130\n', '')
