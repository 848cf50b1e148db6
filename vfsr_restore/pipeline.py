"""The restore loop: decode -> detect -> track -> plan -> crop -> restore -> paste -> encode, streaming.

Only a window of frames is held: a frame waits until its face plan is final (the planner's lookahead) and its
faces are restored (KEEP emits whole chunks), then it is composited, encoded and dropped; decoding runs ahead in a
worker thread and encoding runs behind in another. Peak memory therefore depends on the frame size, the lookahead
and the chunk length, never on the length of the video.

Resume: the output is encoded in segments of ``segment_frames`` frames (``.<output name>.vfsr-work/``) with a small
manifest. Every segment restarts smoothing and the restorer from a clean state and takes the open tracks from the
manifest, so rerunning the same command after a crash skips the finished segments and the final file is identical
to an uninterrupted run's. The final file is muxed under a temporary name and renamed; the work folder is then removed.
"""
import hashlib
import itertools
import json
import os
import queue
import resource
import shutil
import threading
import time
import warnings
from collections import defaultdict, deque
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import torch

from vfsr_restore.compositing import Compositor, warp_crop
from vfsr_restore.face_detection import DetectedFace
from vfsr_restore.face_plan import FacePlanner, PlannedFace
from vfsr_restore.media import (
    EncoderSettings,
    Frame,
    MediaError,
    MediaInfo,
    SegmentEncoder,
    mux_video,
    output_format,
    probe,
    read_frames,
    write_image,
)
from vfsr_restore.tracking import FaceSelection, FaceTracker, SceneCutDetector

MANIFEST_VERSION = 1
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


@dataclass
class PendingFrame:
    frame: Frame
    planned: list[PlannedFace] | None = None
    matrices: dict[int, np.ndarray] = field(default_factory=dict)
    restored: dict[int, np.ndarray] = field(default_factory=dict)

    def ready(self) -> bool:
        return self.planned is not None and all(face.track_id in self.restored for face in self.planned)


class SegmentRestorer:
    """Restore one segment of frames and feed the composited frames to ``emit``. Tracks (ids), the face selection and
    the scene-cut reference continue from the previous segment (``carried``); smoothing and the restorer's state
    start afresh."""

    def __init__(self, settings: RestoreSettings, detector, restorer, info: MediaInfo, timer: StageTimer,
                 carried: dict | None, emit, upsampler=None):
        self.settings, self.detector, self.restorer, self.info, self.timer = settings, detector, restorer, info, timer
        self.tracker = FaceTracker(settings.min_face_size, settings.max_gap)
        self.selection = FaceSelection(settings.faces)
        self.cuts = SceneCutDetector(settings.scene_threshold)
        if carried:  # what the previous segment hands on: open tracks (stable ids), chosen face, last image
            self.tracker.load_state(carried['tracker'])
            self.selection.current = carried['selected']
            self.cuts.is_cut(carried['last_image'])
        self.planner = FacePlanner(settings.smoothing, settings.sigma, settings.ema, settings.max_gap, settings.fade)
        self.compositor = Compositor(settings.upscale, upsampler)
        self.detect_scale = detection_scale(info.width, info.height, settings.detect_max_side, settings.min_face_size)
        detector.search_down_to(settings.min_face_size * self.detect_scale)
        self.emit = emit
        self.batch: list[Frame] = []
        self.pending: dict[int, PendingFrame] = {}
        self.order: deque[int] = deque()
        self.active_tracks: set[int] = set()
        self.track_ranges: dict[int, list[int]] = {}
        self.scene_cuts: list[int] = []
        self.faces_restored = 0

    def push(self, frame: Frame) -> None:
        self.pending[frame.index] = PendingFrame(frame)
        self.order.append(frame.index)
        self.batch.append(frame)
        if len(self.batch) >= self.settings.detector_batch:
            self._detect_batch()

    def finish(self) -> None:
        self._detect_batch()
        self._apply_plans(self.planner.flush())
        for track in sorted(self.active_tracks):
            self._end_track(track)
        self.active_tracks = set()
        self._emit_ready()
        if self.pending:
            raise RuntimeError(f'frames {sorted(self.pending)[:5]} were never restored (internal error)')

    # ------------------------------------------------------------------------------------------------ stages
    def _detect_batch(self) -> None:
        if not self.batch:
            return
        with self.timer.timed('track'):
            cuts = [self.cuts.is_cut(frame.image) for frame in self.batch]
        # every detect_every-th frame, the first frame of each scene and the last one before a cut seen in this
        # batch (a track cannot be interpolated past its scene); tracks bridge the others
        wanted = [position for position, (frame, cut) in enumerate(zip(self.batch, cuts))
                  if cut or frame.index % self.settings.detect_every == 0 or any(cuts[position + 1:position + 2])]
        detections: list[list[DetectedFace]] = [[] for _ in self.batch]
        with self.timer.timed('detect'):
            found = self.detector.detect([self._detection_image(self.batch[position].image) for position in wanted])
            for position, faces in zip(wanted, found):
                detections[position] = [rescaled_face(face, 1 / self.detect_scale) for face in faces]
        for frame, faces, cut in zip(self.batch, detections, cuts):
            with self.timer.timed('track'):
                if cut:
                    self.scene_cuts.append(frame.index)
                    self.tracker.reset()
                    self.selection.reset()
                tracked = self.tracker.update(frame.index, faces)
                chosen = self.selection.select(tracked, set(self.tracker.tracks), self.info.width, self.info.height)
                plans = self.planner.push(frame.index, {track: face.landmarks for track, face in chosen.items()}, cut)
            self._apply_plans(plans)
        self.batch = []

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
                first_last = self.track_ranges.setdefault(face.track_id, [frame_index, frame_index])
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
                                          self.restorer.crop_size, face.alpha)
                output = np.clip(canvas.round(), 0, 255).astype(np.uint8)
            self.faces_restored += len(record.planned)
            self.emit(record, output)

    def _end_track(self, track: int) -> None:
        with self.timer.timed('restore'):
            results = self.restorer.end_track(track)
        self._collect(results)


def detection_scale(width: int, height: int, max_side: int, min_face_size: float, smallest: float = 12) -> float:
    """The factor frames are shrunk by for detection: down to ``max_side`` pixels on the long side, but never so far
    that a face of ``min_face_size`` becomes smaller than ``smallest`` pixels (the detector's limit)."""
    return min(1.0, max(max_side / max(width, height), smallest / max(min_face_size, smallest)))


def rescaled_face(face: DetectedFace, factor: float) -> DetectedFace:
    """A detection in an image resized by 1/``factor`` moved back to the full-size frame (pixel centres kept)."""
    if factor == 1:
        return face
    box = (face.box + 0.5) * factor - 0.5
    return DetectedFace(box.astype(np.float32), ((face.landmarks + 0.5) * factor - 0.5).astype(np.float32), face.score)


def side_by_side(original: np.ndarray, restored: np.ndarray) -> np.ndarray:
    """Input (upscaled with nearest neighbour, to see its pixels) beside the output."""
    height, width = restored.shape[:2]
    return np.hstack([cv2.resize(original, (width, height), interpolation=cv2.INTER_NEAREST), restored])


def debug_overlay(record: PendingFrame, output: np.ndarray, upscale: int) -> np.ndarray:
    """The output with each planned face's landmarks, crop outline and track id drawn on it."""
    image = output.copy()
    for face in record.planned:
        points = (face.landmarks + 0.5) * upscale - 0.5
        colour = tuple(int(c) for c in np.random.default_rng(face.track_id).integers(64, 256, 3))
        for x, y in points:
            cv2.circle(image, (int(round(x)), int(round(y))), max(1, upscale), colour, -1)
        x0, y0 = points.min(axis=0) - 10 * upscale
        x1, y1 = points.max(axis=0) + 10 * upscale
        cv2.rectangle(image, (int(x0), int(y0)), (int(x1), int(y1)), colour, 1)
        label = f'{face.track_id}' + ('' if face.detected else '*') + ('' if face.alpha >= 1 else f' {face.alpha:.2f}')
        cv2.putText(image, label, (int(x0), max(10, int(y0) - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1)
    return image


def settings_fingerprint(info: MediaInfo, settings: RestoreSettings) -> str:
    """A hash of the input file (size, mtime) and every setting that changes the output; resume needs it equal."""
    stat = info.path.stat()
    content = {'input': str(info.path.resolve()), 'size': stat.st_size, 'mtime': stat.st_mtime_ns,
               'settings': asdict(settings), 'version': MANIFEST_VERSION}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


def write_json_atomic(path: Path, content: dict) -> None:
    partial = path.with_name(f'.{path.name}.partial-{os.getpid()}')
    partial.write_text(json.dumps(content, indent=1))
    partial.replace(path)


def output_paths(output: Path, settings: RestoreSettings) -> dict[str, Path]:
    """The files one run writes: the restored video, optionally the comparison and debug videos."""
    paths = {'restored': output}
    if settings.compare:
        paths['compare'] = output.with_name(f'{output.stem}_compare{output.suffix}')
    if settings.debug:
        paths['debug'] = output.with_name(f'{output.stem}_debug{output.suffix}')
    return paths


def restore_file(input_path: str | Path, output: str | Path, settings: RestoreSettings, detector, restorer,
                 report_path: str | Path | None = None, progress: bool = False, upsampler=None) -> dict:
    """Restore one input (video, frames folder or image) into ``output``; returns the report (also written as
    JSON to ``report_path``, default ``<output>.json``). ``upsampler``: Real-ESRGAN for the background, or None
    for Lanczos."""
    started = time.perf_counter()
    input_path, output = Path(input_path), Path(output)
    info = probe(input_path)
    timer = StageTimer()
    if info.kind == 'image':
        return _restore_image(info, output, settings, detector, restorer, upsampler, timer, report_path, started)
    if not output_format(output):
        raise MediaError(f'{output}: unknown video container suffix {output.suffix!r} (use .mp4, .mov, .mkv, .webm)')
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

    try:
        return _restore_video(info, output, settings, detector, restorer, upsampler, timer, report_path, progress,
                              started, work, manifest, done, outputs, width, height)
    except MediaError:
        shutil.rmtree(work, ignore_errors=True)  # the input itself is unusable: nothing to resume
        raise


class CountedFrames:
    """Iterate ``frames`` lazily, remembering how many went by and the last one (``on_frame`` called for each)."""

    def __init__(self, frames, on_frame=None):
        self.frames, self.on_frame = frames, on_frame
        self.count, self.last = 0, None

    def __iter__(self):
        for frame in self.frames:
            self.count, self.last = self.count + 1, frame
            if self.on_frame is not None:
                self.on_frame()
            yield frame


def _restore_video(info, output, settings, detector, restorer, upsampler, timer, report_path, progress, started,
                   work, manifest, done, outputs, width, height) -> dict:
    """Stream the frames segment by segment (finished segments are only decoded), then mux and report."""
    manifest_path = work / 'manifest.json'
    iterator = iter(threaded(_timed_frames(read_frames(info, settings.start, settings.end), timer)))
    segment_index, frames_in, first_pts, carried = 0, 0, None, None
    bar = _progress_bar(progress, info, info.path)
    while (first := next(iterator, None)) is not None:
        first_pts = first.pts if first_pts is None else first_pts
        segment = CountedFrames(itertools.chain([first], itertools.islice(iterator, settings.segment_frames - 1)),
                                on_frame=bar.update if bar is not None else None)
        if segment_index in done:
            for _ in segment:  # finished before a crash: decoded only, to reach the next segment
                pass
            carried = {'tracker': done[segment_index]['tracker'], 'selected': done[segment_index]['selected']}
        else:
            record = _restore_segment(segment_index, segment, first_pts, work, outputs, info, settings,
                                      detector, restorer, upsampler, timer, carried, width, height)
            carried = {'tracker': record['tracker'], 'selected': record['selected']}
            manifest['segments'].append(record)
            write_json_atomic(manifest_path, manifest)
        carried['last_image'] = segment.last.image
        frames_in += segment.count
        segment_index += 1
    if bar is not None:
        bar.close()
    if frames_in == 0:
        raise MediaError(f'{info.path}: no frame between --start and --end' if settings.start or settings.end
                         else f'{info.path}: no decodable frame')
    segments = sorted(manifest['segments'], key=lambda segment: segment['index'])
    with timer.timed('mux'):
        audio_from = first_pts * info.time_base
        audio_to = None if settings.end is None else info.start_pts * info.time_base + Fraction(settings.end)
        for kind, path in outputs.items():
            partial = path.with_name(f'.{path.stem}.partial-{os.getpid()}{path.suffix}')
            try:
                mux_video([work / segment['files'][kind] for segment in segments],
                          [segment['pts'] for segment in segments], segments[-1]['last_duration'], info, partial,
                          audio_from, audio_to)
                partial.replace(path)
            finally:
                partial.unlink(missing_ok=True)
    report = _report(info, settings, segments, frames_in, outputs, timer, started, width, height)
    write_json_atomic(Path(report_path) if report_path else output.with_name(output.name + '.json'), report)
    shutil.rmtree(work, ignore_errors=True)
    return report


def _timed_frames(frames, timer: StageTimer):
    while True:
        start = time.perf_counter()
        frame = next(frames, None)
        timer.add('decode', time.perf_counter() - start)
        if frame is None:
            return
        yield frame


def _progress_bar(progress: bool, info: MediaInfo, path: Path):
    if not progress:
        return None
    from tqdm import tqdm
    return tqdm(total=info.frame_count, unit='frame', desc=path.name, dynamic_ncols=True)


def _restore_segment(segment_index, segment_frames: CountedFrames, first_pts, work, outputs, info, settings, detector,
                     restorer, upsampler, timer, carried, width, height) -> dict:
    """Restore and encode one segment's frames (read as they come) into its files, named in the returned manifest
    record."""
    files = {kind: f'{kind}_{segment_index:05d}.mp4' for kind in outputs}
    partials = {kind: work / f'.{name}.partial' for kind, name in files.items()}
    sizes = {'restored': (width, height), 'compare': (2 * width, height), 'debug': (width, height)}
    encoders = {kind: SegmentEncoder(partials[kind], info, *sizes[kind], settings.encoder) for kind in outputs}
    worker = EncodeWorker(timer)
    pts_list: list[int] = []

    def emit(record: PendingFrame, output: np.ndarray):
        pts = record.frame.pts - first_pts
        pts_list.append(pts)
        images = {'restored': output}
        if 'compare' in outputs:
            images['compare'] = side_by_side(record.frame.image, output)
        if 'debug' in outputs:
            images['debug'] = debug_overlay(record, output, settings.upscale)
        duration = record.frame.duration
        worker.submit(lambda: [encoders[kind].write(image, pts, duration) for kind, image in images.items()])

    segment = SegmentRestorer(settings, detector, restorer, info, timer, carried, emit, upsampler)
    first_frame = None
    try:
        for frame in segment_frames:
            first_frame = frame.index if first_frame is None else first_frame
            segment.push(frame)
        segment.finish()
        worker.close()
        for encoder in encoders.values():
            encoder.__exit__(None, None, None)
    except BaseException as error:
        for encoder in encoders.values():
            encoder.__exit__(type(error), error, None)
        for partial in partials.values():
            partial.unlink(missing_ok=True)
        raise
    for kind, partial in partials.items():
        partial.replace(work / files[kind])
    return {'index': segment_index, 'first_frame': first_frame, 'frames': segment_frames.count,
            'pts': pts_list, 'last_duration': segment_frames.last.duration, 'files': files,
            'tracker': segment.tracker.state(), 'selected': segment.selection.current, 'tracks': segment.track_ranges,
            'scene_cuts': segment.scene_cuts, 'faces_restored': segment.faces_restored}


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
        'peak_memory': peak_memory_mb(), 'warnings': [],
    }
    if faces == 0:
        message = f'{info.path}: no face found; the video was passed through (upscaled only)'
        warnings.warn(message, stacklevel=3)
        report['warnings'].append(message)
    return report


def _restore_image(info, output, settings, detector, restorer, upsampler, timer, report_path, started) -> dict:
    """One image: restored as a one-frame video would be, written as an image (format from ``output``)."""
    frame = next(read_frames(info))
    results = []
    segment = SegmentRestorer(settings, detector, restorer, info, timer, None,
                              lambda record, image: results.append((record, image)), upsampler)
    segment.push(frame)
    segment.finish()
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f'.{output.stem}.partial-{os.getpid()}{output.suffix}')
    try:
        write_image(partial, results[0][1])
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    segments = [{'pts': [0], 'tracks': segment.track_ranges, 'scene_cuts': [], 'faces_restored':
                 segment.faces_restored}]
    report = _report(info, settings, segments, 1, {'restored': output}, timer, started,
                     info.width * settings.upscale, info.height * settings.upscale)
    write_json_atomic(Path(report_path) if report_path else output.with_name(output.name + '.json'), report)
    return report
