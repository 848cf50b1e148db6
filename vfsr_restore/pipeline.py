"""The restore loop: decode -> detect -> track -> plan -> crop -> restore -> paste -> encode, streaming.

Only a window of frames is held: a frame waits until its face plan is final (the planner's lookahead) and its
faces are restored (KEEP emits whole chunks), then it is composited, encoded and dropped; decoding runs ahead in a
worker thread and encoding runs behind in another. Peak memory therefore depends on the frame size, the lookahead
and the chunk length, never on the length of the video.

Resume: the output is encoded in segments of at least ``segment_frames`` frames (``.<output name>.vfsr-work/``) with
a small manifest. One :class:`StreamRestorer` runs through the whole video (tracks, smoothing, KEEP's recursion and
the frames waiting for their faces go on across segments, so segment boundaries change no pixel); at each
boundary its state is saved beside the manifest (``state_<n>.pt``, tensors and plain values, read back weights-only).
Rerunning the same command after a crash decodes the finished segments' frames without restoring them, loads the
state and goes on, so the final file is identical to an uninterrupted run's. The final file is muxed under a temporary
name and renamed; the work folder is then removed.
"""
import contextlib
import hashlib
import itertools
import json
import queue
import resource
import shutil
import threading
import time
import warnings
from collections import defaultdict, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import torch

from vfsr_face.detection import DetectedFace
from vfsr_io.atomic_output import atomic_directory, write_text_atomically
from vfsr_io.checkpoint import read_checkpoint
from vfsr_restore.compositing import Compositor, warp_crop
from vfsr_restore.face_plan import FacePlanner, PlannedFace
from vfsr_restore.media import (
    EncoderSettings,
    Frame,
    MediaError,
    MediaInfo,
    SegmentEncoder,
    check_output_suffix,
    mux_video,
    probe,
    read_frames,
    reproducible_encoder,
    write_image,
)
from vfsr_restore.tracking import FaceSelection, FaceTracker, SceneCutDetector

MANIFEST_VERSION = 3
STAGES = ('decode', 'detect', 'track', 'restore', 'composite', 'encode', 'mux')


@dataclass
class RestoreSettings:
    """Everything that decides the output's pixels (the resume manifest is keyed on it) and the outputs made."""
    model: str = 'keep'
    upscale: int = 1
    faces: str = 'all'
    min_face_size: float = 24.0
    detector: str = 'mtcnn'
    detector_batch: int = 8
    detect_max_side: int = 640
    detect_every: int = 1
    min_score: float = 0.9
    smoothing: str = 'gaussian'
    sigma: float = 2.0
    ema: float = 0.6
    max_gap: int = 5
    fade: int = 3
    scene_threshold: float = 0.5
    start: float | None = None
    end: float | None = None
    segment_frames: int = 300
    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    compare: bool = False
    debug: bool = False
    fingerprint_extra: dict = field(default_factory=dict)  # network options, weights file, fidelity, ...


class StageTimer:
    """Seconds spent in each stage (threads add into their own stages)."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self.lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        with self.lock:
            self.seconds[stage] += seconds

    def timed(self, stage: str):
        timer = self

        class Context:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                timer.add(stage, time.perf_counter() - self.start)
        return Context()


def peak_memory_mb() -> dict:
    """Peak resident memory of this process (and CUDA memory when used), in MB."""
    peak = {'cpu_peak_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        peak['cuda_peak_allocated_mb'] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
    return peak


def threaded(iterator, maxsize: int = 8):
    """Run ``iterator`` in a worker thread, ``maxsize`` items ahead; its exceptions are raised in the caller."""
    items: queue.Queue = queue.Queue(maxsize)
    done = object()
    stop = threading.Event()

    def work():
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(done)
        except BaseException as error:  # noqa: BLE001 (handed to the consumer, which re-raises it)
            items.put(error)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


class EncodeWorker:
    """Encode frames in a worker thread (one job queue per segment's set of encoders)."""

    def __init__(self, timer: StageTimer, maxsize: int = 8):
        self.jobs: queue.Queue = queue.Queue(maxsize)
        self.timer = timer
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def _work(self):
        while True:
            job = self.jobs.get()
            if job is None:
                return
            if self.error is not None:
                continue
            try:
                start = time.perf_counter()
                job()
                self.timer.add('encode', time.perf_counter() - start)
            except BaseException as error:  # noqa: BLE001 (re-raised in the caller by check())
                self.error = error

    def submit(self, job) -> None:
        self.check()
        self.jobs.put(job)

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join()
        self.check()


class DetectionQueue:
    """Detection jobs, answered in the order they were submitted. On a GPU (``device`` not the CPU) each job runs in
    a worker thread, on its own CUDA stream, while the caller restores the faces of the batch before, so that
    neither the detector nor the restoring network waits for the other; on the CPU both would share the same cores,
    so a job runs at once in the caller's thread. The answers are the same either way."""

    def __init__(self, timed, device: torch.device):
        self.timed = timed
        self.executor = None if device.type == 'cpu' else ThreadPoolExecutor(1, thread_name_prefix='vfsr-detect')
        self.stream = torch.cuda.Stream(device) if device.type == 'cuda' else None
        self.jobs: deque[tuple[object, Future]] = deque()

    def submit(self, key, job) -> None:
        """Run ``job()`` (a detector call); ``key`` comes back with its answer from :meth:`done`."""
        future = Future()
        if self.executor is None:
            future.set_result(self._run(job))
        else:
            future = self.executor.submit(self._run, job)
        self.jobs.append((key, future))

    def done(self, wait_all: bool) -> Iterator[tuple[object, object]]:
        """(key, answer) of the jobs in submission order; without ``wait_all`` the newest job may stay in flight."""
        in_flight = 0 if wait_all or self.executor is None else 1
        while len(self.jobs) > in_flight:
            key, future = self.jobs.popleft()
            yield key, future.result()

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown()

    def _run(self, job):
        with self.timed():
            if self.stream is None:
                return job()
            with torch.cuda.stream(self.stream):
                return job()


@dataclass
class PendingFrame:
    frame: Frame
    planned: list[PlannedFace] | None = None
    matrices: dict[int, np.ndarray] = field(default_factory=dict)
    restored: dict[int, np.ndarray] = field(default_factory=dict)

    def ready(self) -> bool:
        return self.planned is not None and all(face.track_id in self.restored for face in self.planned)


class StreamRestorer:
    """Restore a stream of frames and feed the composited frames, in order, to ``emit``. One instance runs through
    the whole video, so segment boundaries change nothing; :meth:`state_dict` saves what it holds between two
    :meth:`push` calls (for resume), except the images of the frames still waiting, which a resumed run decodes
    again and hands to :meth:`load_state_dict`."""

    def __init__(self, settings: RestoreSettings, detector, restorer, info: MediaInfo, timer: StageTimer, emit,
                 upsampler=None, face_mask=None):
        self.settings, self.detector, self.restorer, self.info, self.timer = settings, detector, restorer, info, timer
        self.tracker = FaceTracker(settings.min_face_size, settings.max_gap)
        self.selection = FaceSelection(settings.faces)
        self.cuts = SceneCutDetector(settings.scene_threshold)
        self.planner = FacePlanner(settings.smoothing, settings.sigma, settings.ema, settings.max_gap, settings.fade)
        self.compositor = Compositor(settings.upscale, upsampler, face_mask)
        self.detect_scale = detection_scale(info.width, info.height, settings.detect_max_side, settings.min_face_size)
        detector.search_down_to(settings.min_face_size * self.detect_scale)
        self.emit = emit
        self.batch: list[tuple[Frame, bool]] = []  # frames not yet handed to the detector, with their scene cuts
        self.detections = DetectionQueue(lambda: timer.timed('detect'), detector.device)
        self.pending: dict[int, PendingFrame] = {}
        self.order: deque[int] = deque()
        self.active_tracks: set[int] = set()
        self.pushed = 0
        self.new_segment_report()

    def new_segment_report(self) -> dict:
        """What happened since the last call (track frame ranges, scene cuts, faces restored), for the report."""
        report = getattr(self, 'segment_report', None)
        self.segment_report = {'tracks': {}, 'scene_cuts': [], 'faces_restored': 0}
        return report

    def push(self, frame: Frame) -> None:
        self.pushed += 1
        self.pending[frame.index] = PendingFrame(frame)
        self.order.append(frame.index)
        with self.timer.timed('track'):
            cut = self.cuts.is_cut(frame.image)
        self.batch.append((frame, cut))
        if len(self.batch) > self.settings.detector_batch:  # the newest frame waits: it may be the video's last
            self._detect(self.batch[:-1], next_is_cut=cut, ends_video=False)
            self.batch = self.batch[-1:]
        self._track_detected(wait_all=False)

    def settle(self) -> None:
        """Take in the detections still in flight (before :meth:`state_dict`, which cannot hold them)."""
        self._track_detected(wait_all=True)

    def finish(self) -> None:
        self._detect(self.batch, next_is_cut=False, ends_video=True)
        self.batch = []
        self._track_detected(wait_all=True)
        self.detections.close()
        self._apply_plans(self.planner.flush())
        for track in sorted(self.active_tracks):
            self._end_track(track)
        self.active_tracks = set()
        self._emit_ready()
        if self.pending:
            raise RuntimeError(f'frames {sorted(self.pending)[:5]} were never restored (internal error)')

    def state_dict(self) -> dict:
        """Everything held between two pushes, as tensors and plain values (a weights-only file holds it); the
        waiting frames are named by index (``waiting``), their images are not saved."""
        def planned(faces):
            return None if faces is None else [
                {'track_id': face.track_id, 'landmarks': torch.from_numpy(face.landmarks), 'alpha': face.alpha,
                 'detected': face.detected} for face in faces]
        return {
            'pushed': self.pushed, 'waiting': list(self.order),
            'batch': [(frame.index, cut) for frame, cut in self.batch],
            'frames': {index: {'planned': planned(record.planned),
                               'matrices': {track: torch.from_numpy(matrix) for track, matrix in
                                            record.matrices.items()},
                               'restored': {track: torch.from_numpy(image) for track, image in
                                            record.restored.items()}} for index, record in self.pending.items()},
            'active_tracks': sorted(self.active_tracks), 'tracker': self.tracker.state(),
            'selected': self.selection.current,
            'scene_reference': None if self.cuts.previous is None else torch.from_numpy(self.cuts.previous),
            'planner': self.planner.state_dict(), 'restorer': self.restorer.state_dict(),
            'face_mask': self.compositor.face_mask.state_dict()}

    def load_state_dict(self, state: dict, frames: dict[int, Frame]) -> None:
        """Continue from :meth:`state_dict`; ``frames``: the decoded waiting frames by index."""
        self.pushed = state['pushed']
        self.order = deque(state['waiting'])
        self.pending = {}
        for index in self.order:
            saved = state['frames'][index]
            record = PendingFrame(frames[index])
            if saved['planned'] is not None:
                record.planned = [PlannedFace(face['track_id'], face['landmarks'].numpy(), face['alpha'],
                                              face['detected']) for face in saved['planned']]
            record.matrices = {track: matrix.numpy() for track, matrix in saved['matrices'].items()}
            record.restored = {track: image.numpy() for track, image in saved['restored'].items()}
            self.pending[index] = record
        self.batch = [(frames[index], cut) for index, cut in state['batch']]
        self.active_tracks = set(state['active_tracks'])
        self.tracker.load_state(state['tracker'])
        self.selection.current = state['selected']
        self.cuts.previous = None if state['scene_reference'] is None else state['scene_reference'].numpy()
        self.planner.load_state_dict(state['planner'])
        self.restorer.load_state_dict(state['restorer'])
        self.compositor.face_mask.load_state_dict(state['face_mask'])

    # ------------------------------------------------------------------------------------------------ stages
    def _detect(self, batch: list[tuple[Frame, bool]], next_is_cut: bool, ends_video: bool) -> None:
        """Hand ``batch`` ((frame, starts a scene) pairs) to the detector: every detect_every-th frame, the first
        frame of each scene, the last one before a cut and the video's last frame (a track cannot be interpolated
        past its scene or the video's end); tracks bridge the others."""
        if not batch:
            return
        cuts = [cut for _, cut in batch] + [next_is_cut]
        wanted = [position for position, (frame, cut) in enumerate(batch)
                  if cut or cuts[position + 1] or frame.index % self.settings.detect_every == 0
                  or (ends_video and position == len(batch) - 1)]
        images = [batch[position][0].image for position in wanted]
        self.detections.submit((batch, wanted), lambda: self.detector.detect(
            [self._detection_image(image) for image in images]))

    def _track_detected(self, wait_all: bool) -> None:
        """Track and plan the batches whose detections are done, in order."""
        for (batch, wanted), found in self.detections.done(wait_all):
            detections: list[list[DetectedFace]] = [[] for _ in batch]
            for position, faces in zip(wanted, found):
                detections[position] = [rescaled_face(face, 1 / self.detect_scale) for face in faces]
            for (frame, cut), faces in zip(batch, detections):
                with self.timer.timed('track'):
                    if cut:
                        self.segment_report['scene_cuts'].append(frame.index)
                        self.tracker.reset()
                        self.selection.reset()
                    tracked = self.tracker.update(frame.index, faces)
                    chosen = self.selection.select(tracked, set(self.tracker.tracks), self.info.width,
                                                   self.info.height)
                    plans = self.planner.push(frame.index, {track: face.landmarks for track, face in chosen.items()},
                                              cut)
                self._apply_plans(plans)

    def _detection_image(self, image: np.ndarray) -> np.ndarray:
        if self.detect_scale == 1:
            return image
        size = (round(image.shape[1] * self.detect_scale), round(image.shape[0] * self.detect_scale))
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)

    def _apply_plans(self, plans) -> None:
        for frame_index, planned in plans:
            record = self.pending[frame_index]
            record.planned = planned
            present = {face.track_id for face in planned}
            for track in sorted(self.active_tracks - present):
                self._end_track(track)
            self.active_tracks = present
            for face in planned:
                matrix = self.restorer.crop_matrix(face.landmarks)
                record.matrices[face.track_id] = matrix
                crop = warp_crop(record.frame.image, matrix, self.restorer.crop_size)
                first_last = self.segment_report['tracks'].setdefault(face.track_id, [frame_index, frame_index])
                first_last[1] = frame_index
                with self.timer.timed('restore'):
                    results = self.restorer.push(face.track_id, (frame_index, face.track_id), crop)
                self._collect(results)
            self._emit_ready()

    def _collect(self, results) -> None:
        for (frame_index, track), image in results:
            self.pending[frame_index].restored[track] = image

    def _emit_ready(self) -> None:
        while self.order and self.pending[self.order[0]].ready():
            record = self.pending.pop(self.order.popleft())
            with self.timer.timed('composite'):
                canvas = self.compositor.background(record.frame.image)
                for face in record.planned:
                    self.compositor.paste(canvas, record.restored[face.track_id], record.matrices[face.track_id],
                                          self.restorer.crop_size, face.alpha, face.track_id)
                self.compositor.face_mask.keep_tracks({face.track_id for face in record.planned})
                output = np.clip(canvas.round(), 0, 255).astype(np.uint8)
            self.segment_report['faces_restored'] += len(record.planned)
            self.emit(record, output)

    def _end_track(self, track: int) -> None:
        with self.timer.timed('restore'):
            results = self.restorer.end_track(track)
        self._collect(results)


def detection_scale(width: int, height: int, max_side: int, min_face_size: float, smallest: float = 12) -> float:
    """The factor frames are shrunk by for detection: down to ``max_side`` pixels on the long side, but never so far
    that a face of ``min_face_size`` becomes smaller than ``smallest`` pixels (the detector's limit)."""
    return min(1.0, max(max_side / max(width, height), smallest / max(min_face_size, smallest)))


def scaled_points(points: np.ndarray, factor: float) -> np.ndarray:
    """Pixel coordinates in an image resized by ``factor`` (pixel centres kept: -0.5 is the edge of both)."""
    return (points + 0.5) * factor - 0.5


def rescaled_face(face: DetectedFace, factor: float) -> DetectedFace:
    """A detection in an image resized by 1/``factor`` moved back to the full-size frame (pixel centres kept)."""
    if factor == 1:
        return face
    return DetectedFace(scaled_points(face.box, factor).astype(np.float32),
                        scaled_points(face.landmarks, factor).astype(np.float32), face.score)


def side_by_side(original: np.ndarray, restored: np.ndarray) -> np.ndarray:
    """Input (upscaled with nearest neighbour, to see its pixels) beside the output."""
    height, width = restored.shape[:2]
    return np.hstack([cv2.resize(original, (width, height), interpolation=cv2.INTER_NEAREST), restored])


def debug_overlay(record: PendingFrame, output: np.ndarray, upscale: int, crop_size: tuple[int, int]) -> np.ndarray:
    """The output with each planned face's crop outline (the square the restorer saw), landmarks and a label:
    track id, ``*`` where the landmarks were filled in between detections, the blend weight while fading."""
    image = output.copy()
    stroke = max(2, round(max(image.shape[:2]) / 240))  # lines and text a person can see at any video size
    width, height = crop_size
    for face in record.planned:
        colour = tuple(int(c) for c in np.random.default_rng(face.track_id).integers(96, 256, 3))
        to_frame = cv2.invertAffineTransform(record.matrices[face.track_id])
        corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64) - 0.5
        outline = scaled_points(corners @ to_frame[:, :2].T + to_frame[:, 2], upscale)
        cv2.polylines(image, [np.round(outline).astype(np.int32)], True, colour, stroke, cv2.LINE_AA)
        for x, y in scaled_points(face.landmarks, upscale):
            cv2.circle(image, (int(round(x)), int(round(y))), 2 * stroke, colour, -1, cv2.LINE_AA)
        label = f'{face.track_id}' + ('' if face.detected else '*') + ('' if face.alpha >= 1 else f' {face.alpha:.2f}')
        scale = 0.35 * stroke
        (text_width, text_height), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, stroke)
        box_height = text_height + baseline + stroke
        top, bottom = outline[np.argmin(outline[:, 1])], outline[np.argmax(outline[:, 1])]
        if top[1] - 2 * stroke - box_height >= 0:  # above the outline, else below it, else at the frame's top
            x, y = top[0], top[1] - 2 * stroke - baseline
        elif bottom[1] + 2 * stroke + box_height <= image.shape[0]:
            x, y = bottom[0], bottom[1] + 2 * stroke + text_height + stroke
        else:
            x, y = top[0], text_height + stroke
        x = int(np.clip(x, 0, max(0, image.shape[1] - text_width - 2 * stroke)))
        y = int(np.clip(y, text_height + stroke, image.shape[0] - baseline))
        cv2.rectangle(image, (x, y - text_height - stroke), (x + text_width + 2 * stroke, y + baseline), (0, 0, 0), -1)
        cv2.putText(image, label, (x + stroke, y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, stroke, cv2.LINE_AA)
    return image


def settings_fingerprint(info: MediaInfo, settings: RestoreSettings) -> str:
    """A hash of the input file (size, mtime) and every setting that changes the output; resume needs it equal."""
    stat = info.path.stat()
    content = {'input': str(info.path.resolve()), 'size': stat.st_size, 'mtime': stat.st_mtime_ns,
               'settings': asdict(settings), 'version': MANIFEST_VERSION}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


def output_paths(output: Path, settings: RestoreSettings) -> dict[str, Path]:
    """The files one run writes: the restored video, optionally the comparison and debug videos."""
    paths = {'restored': output}
    if settings.compare:
        paths['compare'] = output.with_name(f'{output.stem}_compare{output.suffix}')
    if settings.debug:
        paths['debug'] = output.with_name(f'{output.stem}_debug{output.suffix}')
    return paths


def restore_file(input_path: str | Path, output: str | Path, settings: RestoreSettings, detector, restorer,
                 report_path: str | Path | None = None, progress: bool = False, upsampler=None, face_mask=None,
                 on_frame=None) -> dict:
    """Restore one input (video, frames folder or image) into ``output``; returns the report (also written as
    JSON to ``report_path``, default ``<output>.json``). ``upsampler``: Real-ESRGAN for the background, or None
    for Lanczos; ``face_mask``: a :mod:`vfsr_face.mask` mask, or None for the template. ``on_frame(done,
    total)`` (videos) is called as each frame is decoded (``total``: the frames to restore, None when the container
    does not say); an exception it raises stops the restore there (a caller's cancel), as Ctrl-C does."""
    started = time.perf_counter()
    input_path, output = Path(input_path), Path(output)
    info = probe(input_path)
    check_output_suffix(info, output)
    timer = StageTimer()
    if info.kind == 'image':
        return _restore_image(info, output, settings, detector, restorer, upsampler, face_mask, timer, report_path,
                              started)
    width, height = info.width * settings.upscale, info.height * settings.upscale
    output.parent.mkdir(parents=True, exist_ok=True)
    work = output.with_name(f'.{output.name}.vfsr-work')
    manifest_path = work / 'manifest.json'
    fingerprint = settings_fingerprint(info, settings)
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
    if manifest is None or manifest.get('fingerprint') != fingerprint:
        shutil.rmtree(work, ignore_errors=True)
        manifest = {'fingerprint': fingerprint, 'segments': []}
    work.mkdir(parents=True, exist_ok=True)
    done = {segment['index']: segment for segment in manifest['segments']
            if all((work / name).is_file() for name in segment['files'].values())}
    manifest['segments'] = [done[index] for index in sorted(done)]
    outputs = output_paths(output, settings)

    # CPU kernels pick their summation order by thread count (1e-7 apart, a level of a pasted pixel): a resumed run
    # computes with the count the run it continues used
    manifest.setdefault('torch_threads', torch.get_num_threads())
    try:
        with torch_threads(manifest['torch_threads']):
            return _restore_video(info, output, settings, detector, restorer, (upsampler, face_mask), timer,
                                  report_path, (progress, on_frame), started, work, manifest, done, outputs, width,
                                  height)
    except MediaError:
        shutil.rmtree(work, ignore_errors=True)  # the input itself is unusable: nothing to resume
        raise


@contextlib.contextmanager
def torch_threads(count: int):
    """Run the block with ``count`` intra-op threads, then restore the process's count."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _restore_video(info, output, settings, detector, restorer, compositing, timer, report_path, progress, started,
                   work, manifest, done, outputs, width, height) -> dict:
    """Stream the frames through one :class:`StreamRestorer`, closing a segment (its files, the manifest and the
    stream's saved state) whenever at least ``segment_frames`` frames were written since the last; a resumed run
    decodes the frames the finished segments consumed, keeps the ones still waiting, and loads the saved state.
    Then mux and report. ``progress``: (show a bar, the ``on_frame`` callback of :func:`restore_file`)."""
    finished = [done[index] for index in itertools.takewhile(done.__contains__, itertools.count())]
    if finished and not finished[-1].get('final') and not (work / finished[-1]['state']).is_file():
        finished = []  # the saved state is gone: start again
    manifest['segments'] = finished
    progress, on_frame = progress
    total = frames_to_restore(info, settings.start, settings.end)
    bar = _progress_bar(progress, info.path, total)

    def each_frame():
        if bar is not None:
            bar.update()
        if on_frame is not None:
            on_frame(frames.count, total)
    frames = CountedFrames(threaded(_timed_frames(read_frames(info, settings.start, settings.end), timer)),
                           on_frame=each_frame)
    if not finished or not finished[-1]['final']:
        _stream_segments(frames, finished, work, manifest, outputs, info, settings, detector, restorer, compositing,
                         timer, width, height)
    if bar is not None:
        bar.close()
    segments = manifest['segments']
    frames_in = segments[-1]['consumed'] if segments else 0
    if frames_in == 0:
        raise MediaError(f'{info.path}: no frame between --start and --end' if settings.start or settings.end
                         else f'{info.path}: no decodable frame')
    with timer.timed('mux'):
        audio_from = manifest['first_pts'] * info.time_base
        audio_to = None if settings.end is None else info.start_pts * info.time_base + Fraction(settings.end)
        for kind, path in outputs.items():
            with atomic_directory(path, overwrite=True) as partial:
                mux_video([work / segment['files'][kind] for segment in segments],
                          [segment['pts'] for segment in segments], segments[-1]['last_duration'], info, partial,
                          audio_from, audio_to)
    report = _report(info, settings, segments, frames_in, outputs, timer, started, width, height)
    write_text_atomically(Path(report_path) if report_path else output.with_name(output.name + '.json'),
                          json.dumps(report, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    return report


class CountedFrames:
    """Iterate ``frames`` lazily, counting them (``on_frame`` called for each)."""

    def __init__(self, frames, on_frame=None):
        self.frames, self.on_frame = iter(frames), on_frame
        self.count = 0

    def __iter__(self):
        return self

    def __next__(self):
        frame = next(self.frames)
        self.count += 1
        if self.on_frame is not None:
            self.on_frame()
        return frame


def _stream_segments(frames: CountedFrames, finished, work, manifest, outputs, info, settings, detector, restorer,
                     compositing, timer, width, height) -> None:
    """Restore the frames after the ``finished`` segments into new segments, recorded in ``manifest``;
    ``compositing``: (upsampler, face_mask) of :class:`StreamRestorer`."""
    segment = None

    def emit(record: PendingFrame, image: np.ndarray):
        segment.write(record, image)

    stream = StreamRestorer(settings, detector, restorer, info, timer, emit, *compositing)
    if finished:  # resume: decode what the finished segments consumed, keeping the frames still waiting
        if not reproducible_encoder(settings.encoder.codec):
            warnings.warn(f'--codec {settings.encoder.codec} is not pinned to a thread layout: the resumed file may '
                          'differ in bytes (not in frames) from an uninterrupted run; libx264 and libx265 do not',
                          stacklevel=2)
        state = read_checkpoint(work / finished[-1]['state'], what='vfsr-restore saved state')
        waiting = set(state['waiting'])
        kept = {frame.index: frame for frame in itertools.islice(frames, state['pushed']) if frame.index in waiting}
        stream.load_state_dict(state, kept)
    first = next(frames, None)
    if first is None and not finished:
        return
    if 'first_pts' not in manifest:
        manifest['first_pts'] = first.pts
    frames = itertools.chain([] if first is None else [first], frames)
    index = len(finished)
    segment = SegmentWriter(index, work, outputs, info, settings, manifest['first_pts'], timer, width, height,
                            restorer.crop_size)
    try:
        for frame in frames:
            stream.push(frame)
            if segment.written >= settings.segment_frames:  # a quiet point: close the segment, save the state
                _close_segment(segment, stream, work, manifest, final=False)
                index += 1
                segment = SegmentWriter(index, work, outputs, info, settings, manifest['first_pts'], timer, width,
                                        height, restorer.crop_size)
        stream.finish()
        _close_segment(segment, stream, work, manifest, final=True)
    except BaseException:
        segment.abort()
        raise


def _close_segment(segment: 'SegmentWriter', stream: StreamRestorer, work: Path, manifest: dict, final: bool) -> None:
    """Finish ``segment``'s files, save the stream's state (not after the last segment) and record both in the
    manifest, atomically, in that order; then drop the previous segment's state."""
    stream.settle()
    record = segment.close()
    record.update(stream.new_segment_report(), consumed=stream.pushed, final=final, state=None)
    if not final:
        record['state'] = f'state_{segment.index:05d}.pt'
        partial = work / f'.{record["state"]}.partial'
        torch.save(stream.state_dict(), partial)
        partial.replace(work / record['state'])
    if record['frames'] or not manifest['segments']:
        manifest['segments'].append(record)
    elif final:  # nothing was written after the last close: that segment ends the video
        manifest['segments'][-1]['final'] = True
    write_text_atomically(work / 'manifest.json', json.dumps(manifest, indent=1))
    for older in manifest['segments'][:-1]:
        if older.get('state'):
            (work / older['state']).unlink(missing_ok=True)


def _timed_frames(frames, timer: StageTimer):
    while True:
        start = time.perf_counter()
        frame = next(frames, None)
        timer.add('decode', time.perf_counter() - start)
        if frame is None:
            return
        yield frame


def frames_to_restore(info: MediaInfo, start: float | None, end: float | None) -> int | None:
    """The container's frame count, or its estimate between --start and --end; None when it does not say."""
    total = info.frame_count
    if total is not None and (start or end is not None):
        trimmed_seconds = min(end if end is not None else float('inf'), total / info.rate) - (start or 0)
        total = max(0, min(total, round(trimmed_seconds * info.rate)))
    return total


def _progress_bar(progress: bool, path: Path, total: int | None):
    """A bar over the frames to restore."""
    if not progress:
        return None
    from tqdm import tqdm
    return tqdm(total=total, unit='frame', desc=path.name, dynamic_ncols=True)


class SegmentWriter:
    """The encoders of one segment's files (restored, and compare/debug when asked), fed by a worker thread."""

    def __init__(self, index, work: Path, outputs, info: MediaInfo, settings: RestoreSettings, first_pts: int,
                 timer: StageTimer, width: int, height: int, crop_size: tuple[int, int]):
        self.index, self.work, self.outputs, self.settings, self.first_pts = index, work, outputs, settings, first_pts
        self.crop_size = crop_size  # the restorer's, for the debug video's crop outlines
        self.files = {kind: f'{kind}_{index:05d}.mp4' for kind in outputs}
        self.partials = {kind: work / f'.{name}.partial' for kind, name in self.files.items()}
        sizes = {'restored': (width, height), 'compare': (2 * width, height), 'debug': (width, height)}
        self.encoders = {kind: SegmentEncoder(self.partials[kind], info, *sizes[kind], settings.encoder)
                         for kind in outputs}
        self.worker = EncodeWorker(timer)
        self.pts: list[int] = []
        self.first_frame, self.last_duration = None, None

    @property
    def written(self) -> int:
        return len(self.pts)

    def write(self, record: PendingFrame, output: np.ndarray) -> None:
        pts = record.frame.pts - self.first_pts
        self.pts.append(pts)
        self.first_frame = record.frame.index if self.first_frame is None else self.first_frame
        self.last_duration = record.frame.duration
        images = {'restored': output}
        if 'compare' in self.outputs:
            images['compare'] = side_by_side(record.frame.image, output)
        if 'debug' in self.outputs:
            images['debug'] = debug_overlay(record, output, self.settings.upscale, self.crop_size)
        encoders, duration = self.encoders, record.frame.duration
        self.worker.submit(lambda: [encoders[kind].write(image, pts, duration) for kind, image in images.items()])

    def close(self) -> dict:
        """Finish the files; the manifest record of the segment."""
        self.worker.close()
        for encoder in self.encoders.values():
            encoder.__exit__(None, None, None)
        for kind, partial in self.partials.items():
            if self.pts:
                partial.replace(self.work / self.files[kind])
            else:
                partial.unlink(missing_ok=True)
        return {'index': self.index, 'first_frame': self.first_frame, 'frames': len(self.pts), 'pts': self.pts,
                'last_duration': self.last_duration, 'files': self.files}

    def abort(self) -> None:
        """Stop after an error: the segment's partial files are removed."""
        try:
            self.worker.close()
        except Exception:  # noqa: BLE001 (the original error is the one to report)
            pass
        for encoder in self.encoders.values():
            try:
                encoder.__exit__(RuntimeError, RuntimeError('aborted'), None)
            except Exception:  # noqa: BLE001 (the original error is the one to report)
                pass
        for partial in self.partials.values():
            partial.unlink(missing_ok=True)


def _report(info, settings, segments, frames_in, outputs, timer, started, width, height) -> dict:
    tracks: dict[str, list[int]] = {}
    for segment in segments:
        for track, (first, last) in segment['tracks'].items():
            tracks.setdefault(str(track), [first, last])[1] = last
    frames_out = sum(len(segment['pts']) for segment in segments)
    faces = sum(segment['faces_restored'] for segment in segments)
    elapsed = time.perf_counter() - started
    report = {
        'input': str(info.path), 'kind': info.kind, 'outputs': {kind: str(path) for kind, path in outputs.items()},
        'model': settings.model, 'frames_in': frames_in, 'frames_out': frames_out,
        'input_size': [info.width, info.height], 'output_size': [width, height], 'upscale': settings.upscale,
        'input_fps': float(info.rate), 'rotation': info.rotation,
        'tracks': {track: {'first_frame': first, 'last_frame': last} for track, (first, last) in tracks.items()},
        'scene_cuts': [cut for segment in segments for cut in segment['scene_cuts']],
        'faces_restored': faces, 'seconds': round(elapsed, 3),
        'processing_fps': round(frames_out / elapsed, 3) if elapsed else None,
        'stage_seconds': {stage: round(timer.seconds.get(stage, 0.0), 3) for stage in STAGES},
        'peak_memory': peak_memory_mb(), 'torch_threads': torch.get_num_threads(), 'warnings': [],
    }
    if faces == 0:
        message = f'{info.path}: no face found; the video was passed through (upscaled only)'
        warnings.warn(message, stacklevel=3)
        report['warnings'].append(message)
    return report


def _restore_image(info, output, settings, detector, restorer, upsampler, face_mask, timer, report_path,
                   started) -> dict:
    """One image: restored as a one-frame video would be, written as an image (format from ``output``)."""
    frame = next(read_frames(info))
    results = []
    stream = StreamRestorer(settings, detector, restorer, info, timer,
                            lambda record, image: results.append((record, image)), upsampler, face_mask)
    stream.push(frame)
    stream.finish()
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(output, overwrite=True) as partial:
        write_image(partial, results[0][1])
    segments = [{'pts': [0], **stream.new_segment_report()}]
    report = _report(info, settings, segments, 1, {'restored': output}, timer, started,
                     info.width * settings.upscale, info.height * settings.upscale)
    write_text_atomically(Path(report_path) if report_path else output.with_name(output.name + '.json'),
                          json.dumps(report, indent=1))
    return report
