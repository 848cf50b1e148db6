"""Restore jobs: one at a time (one device), the others wait in a queue; each job has its own folder, removed when
it is cancelled or fails, or a while after it ends.

A job runs vfsr-restore itself: its arguments are parsed and checked by vfsr-restore's parser, its networks built
by vfsr-restore's functions, and :func:`vfsr_restore.pipeline.restore_file` restores the file, reporting each
decoded frame (the progress) and stopping at once when the job is cancelled."""
import itertools
import shutil
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from vfsr_app.views import TrackThumbnails
from vfsr_restore import cli as restore_cli

FINISHED = ('done', 'failed', 'cancelled')


class JobCancelled(Exception):
    """Raised from the pipeline's frame callback when the person cancels the job."""


@dataclass
class Progress:
    stage: str = 'waiting'
    done: int = 0
    total: int | None = None
    started: float | None = None  # time.monotonic() when the restore started

    def line(self) -> str:
        if self.stage != 'restoring' or self.started is None:
            return self.stage
        elapsed = time.monotonic() - self.started
        fps = self.done / elapsed if elapsed > 0 else 0.0
        text = f'restoring: frame {self.done}' + (f' of {self.total}' if self.total else '') + f', {fps:.1f} frames/s'
        if self.total and fps > 0:
            text += f', about {max(0.0, (self.total - self.done) / fps):.0f} s left'
        return text

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0


@dataclass
class Job:
    """What a person asked for (``restore_argv``: vfsr-restore's arguments after input and output) and how it
    went. ``results``: the files and pictures made, once ``state`` is 'done'."""
    id: str
    folder: Path
    input: Path
    output: Path
    restore_argv: list[str]
    after_restore: object = None  # callable(job) run in the worker after a successful restore (pictures, measures)
    span: tuple = (None, None)  # start and end seconds
    state: str = 'queued'
    error: str | None = None
    progress: Progress = field(default_factory=Progress)
    report: dict | None = None
    results: dict = field(default_factory=dict)
    finished_at: float | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)

    def check_cancelled(self) -> None:
        if self.cancel_requested.is_set():
            raise JobCancelled()


class JobQueue:
    """Runs jobs one after the other in a worker thread; removes a finished job's folder ``keep_seconds`` after
    it ends."""

    def __init__(self, device: str, keep_seconds: float):
        self.device = device
        self.keep_seconds = keep_seconds
        self.jobs: dict[str, Job] = {}
        self.waiting: list[Job] = []
        self.lock = threading.Condition()
        self.ids = itertools.count(1)
        self.networks = NetworkCache()
        self.worker = threading.Thread(target=self._work, name='vfsr-app-jobs', daemon=True)
        self.worker.start()

    def new_id(self) -> str:
        return f'{next(self.ids):04d}-{int(time.time() * 1000) % 10 ** 9:09d}'

    def submit(self, job: Job) -> None:
        with self.lock:
            self.jobs[job.id] = job
            self.waiting.append(job)
            self.lock.notify_all()

    def get(self, job_id: str | None) -> Job | None:
        return self.jobs.get(job_id) if job_id else None

    def position(self, job: Job) -> int:
        """How many jobs run or wait before ``job`` (0: it runs)."""
        with self.lock:
            if job not in self.waiting:
                return 0
            running = any(other.state == 'running' for other in self.jobs.values())
            return self.waiting.index(job) + running

    def cancel(self, job: Job) -> None:
        with self.lock:
            job.cancel_requested.set()
            if job in self.waiting:
                self.waiting.remove(job)
                self._finish(job, 'cancelled')

    def _work(self) -> None:
        while True:
            with self.lock:
                while not self.waiting:
                    if not self.lock.wait(timeout=30):
                        self._remove_expired()
                job = self.waiting.pop(0)
                job.state = 'running'
            self._run(job)
            with self.lock:
                self._remove_expired()

    def _run(self, job: Job) -> None:
        try:
            job.progress = Progress('loading the networks')
            job.report = self.restore(job)
            job.check_cancelled()
            if job.after_restore is not None:
                job.after_restore(job)
            job.check_cancelled()
            state = 'done'
        except JobCancelled:
            state = 'cancelled'
        except (ValueError, OSError, ImportError) as error:  # MediaError, CheckpointError, bad options
            job.error = str(error)
            state = 'failed'
        except Exception as error:  # noqa: BLE001 (one bad job must not stop the server)
            traceback.print_exc(file=sys.stderr)
            job.error = f'internal error ({type(error).__name__}: {error}); the server goes on'
            state = 'failed'
        with self.lock:
            self._finish(job, state)

    def restore(self, job: Job) -> dict:
        """vfsr-restore with ``job``'s arguments, through the pipeline's frame callback."""
        from vfsr_restore.pipeline import restore_file

        parser = restore_cli.build_parser()
        parser.error = _raise_value_error  # a bad option is the job's error, not the server's exit
        args = parser.parse_args([str(job.input), '-o', str(job.output), '--device', self.device, '--no-progress',
                                  '--overwrite', '--compare', *job.restore_argv])
        restore_cli.check_arguments(args, parser)
        settings = restore_cli.restore_settings(args)
        restore_cli.check_weights(args)
        detector, restorer, (upsampler, face_mask) = self.networks.get(args, settings)
        restorer = job.results['tracks'] = TrackThumbnails(restorer)
        job.check_cancelled()
        job.progress = Progress('restoring', started=time.monotonic())

        def on_frame(done: int, total: int | None) -> None:
            job.progress.done, job.progress.total = done, total
            job.check_cancelled()
        return restore_file(job.input, job.output, settings, detector, restorer, progress=False, upsampler=upsampler,
                            face_mask=face_mask, on_frame=on_frame)

    def _finish(self, job: Job, state: str) -> None:
        job.state, job.finished_at = state, time.monotonic()
        job.progress.stage = state
        if state != 'done':  # nothing of a cancelled or failed job stays behind
            shutil.rmtree(job.folder, ignore_errors=True)
            if job.progress.started is not None:
                self.networks.forget()  # a stopped video may have left track state in them
        self.lock.notify_all()

    def _remove_expired(self) -> None:
        now = time.monotonic()
        for job_id, job in list(self.jobs.items()):
            if job.finished_at is not None and now - job.finished_at > self.keep_seconds:
                shutil.rmtree(job.folder, ignore_errors=True)
                del self.jobs[job_id]


def _raise_value_error(message: str):
    raise ValueError(message)


class NetworkCache:
    """The networks of the last job, reused while the next job asks for the same ones (loading KEEP takes
    seconds); vfsr-restore also reuses them across the files of one run."""

    NETWORK_ARGS = ('model', 'opt', 'weights', 'weights_dir', 'device', 'precision', 'fidelity', 'max_length',
                    'keep_restart', 'detector', 'detector_batch', 'min_score', 'background_weights',
                    'background_tile', 'mask', 'mask_weights', 'mask_ema', 'random_weights', 'seed', 'compile')

    def __init__(self):
        self.key, self.networks = None, None

    def forget(self) -> None:
        self.key, self.networks = None, None

    def get(self, args, settings):
        key = tuple(getattr(args, name) for name in self.NETWORK_ARGS)
        if key != self.key:
            self.key, self.networks = None, None  # the old networks are freed before the new ones load
            self.networks = restore_cli.build_networks(args, settings)
            self.key = key
        return self.networks
