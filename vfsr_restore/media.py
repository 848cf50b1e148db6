"""Media in and out with PyAV only (no system ffmpeg): videos, a folder of frames, or one image.

Input is recognised by its content, never by its extension: OpenCV's image-signature check for a single image, PyAV
for everything else (any container/codec FFmpeg decodes). Frames come out *upright* (the stream's rotation metadata
applied, exactly, by quarter turns) as RGB uint8 with their presentation timestamps; the writer turns them back and
stores the same rotation metadata, so players show the output as they showed the input.

Output video is encoded in segments (:class:`SegmentEncoder`, one mp4 per run of frames, video only, timestamps in
the input stream's own time base) and muxed at the end (:func:`mux_video`) with the input's audio streams: copied
packet for packet, re-encoded to AAC only when the output container cannot hold the codec. Every frame keeps its
timestamp (variable frame rate included) and the duration is the input's.
"""
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from vfsr_data.clip_frames import IMAGE_EXTENSIONS

# Audio codecs each output container family can hold; anything else is re-encoded to AAC (Opus for WebM).
AUDIO_CODECS_BY_FORMAT = {
    'mp4': {'aac', 'mp3', 'alac', 'ac3', 'eac3', 'opus', 'flac', 'mp2'},
    'mov': {'aac', 'mp3', 'alac', 'ac3', 'eac3', 'pcm_s16le', 'pcm_s16be', 'pcm_s24le', 'pcm_f32le', 'mp2'},
    'webm': {'opus', 'vorbis'},
}
# Video encoders that take x264-style rate control options.
CRF_CODECS = {'libx264', 'libx265', 'h264', 'hevc'}
# x264's and x265's bitstreams depend on their thread layout, which on auto follows the machine's cores (and the
# process's CPU affinity); pinned, the same frames give the same bytes on any machine, so resumed and uninterrupted
# runs agree. Other encoders are not promised to (resume says so).
PINNED_ENCODER_THREADS = {'libx264': {'threads': '4'}, 'libx265': {'x265-params': 'pools=4:frame-threads=2'}}
# Audio kept before a trimmed start (and an encoder's priming before time 0): at least one packet of any codec
# (AAC 1024-2112 samples, Opus's recommended 80 ms), so the decoder's first kept sample is clean.
AUDIO_PREROLL = Fraction(1, 10)
# Frame rate given to a folder of frames or an image (they carry no timing).
DEFAULT_FRAMES_FPS = Fraction(25)


class MediaError(ValueError):
    """Input or output media that cannot be used; the message names the file and the problem."""


@dataclass
class Frame:
    """One decoded frame: ``image`` upright RGB uint8 (H, W, 3); ``pts`` and ``duration`` in ``MediaInfo.time_base``
    units; ``index`` counts from the input's first frame."""
    index: int
    image: np.ndarray
    pts: int
    duration: int


@dataclass
class MediaInfo:
    """What the pipeline and the writer need to know of an input."""
    path: Path
    kind: str  # 'video', 'frames' (a folder of images) or 'image'
    width: int  # upright size
    height: int
    time_base: Fraction
    rate: Fraction  # average frame rate (nominal for frames and images)
    rotation: int = 0  # PyAV's display rotation in degrees (0, 90, 180, 270)
    frame_count: int | None = None  # from the container; None when unknown before decoding
    start_pts: int = 0  # the first frame's timestamp: --start/--end count from it
    audio_codecs: list[str] = field(default_factory=list)
    frame_files: list[Path] = field(default_factory=list)

    @property
    def quarter_turns(self) -> int:
        """np.rot90 turns that make a stored frame upright."""
        return (self.rotation // 90) % 4


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3): gray is repeated, alpha dropped, 16-bit scaled to 8-bit."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise MediaError(f'{path}: not a readable image (corrupt or unsupported)')
    if image.dtype == np.uint16:
        image = (image.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif image.dtype != np.uint8:
        raise MediaError(f'{path}: unsupported image sample type {image.dtype} (use 8- or 16-bit images)')
    if image.ndim == 2:
        image = image[:, :, None]
    channels = image.shape[2]
    if channels == 1:
        return np.repeat(image, 3, axis=2)
    if channels in (3, 4):
        return cv2.cvtColor(image[:, :, :3], cv2.COLOR_BGR2RGB)
    raise MediaError(f'{path}: unsupported number of channels {channels}')


def probe(path: str | Path) -> MediaInfo:
    """Recognise ``path`` by its content (a folder of frames, an image, or a video) and describe it."""
    path = Path(path)
    if path.is_dir():
        return _probe_frames_folder(path)
    if not path.is_file():
        raise MediaError(f'{path}: no such file or folder')
    if path.stat().st_size == 0:
        raise MediaError(f'{path}: empty file')
    if cv2.haveImageReader(str(path)):
        image = read_image(path)
        return MediaInfo(path, 'image', image.shape[1], image.shape[0], 1 / DEFAULT_FRAMES_FPS, DEFAULT_FRAMES_FPS,
                         frame_count=1)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f'{path}: no video stream (container {container.format.name})')
            stream = container.streams.video[0]
            first = next(container.decode(stream), None)
            if first is None:
                raise MediaError(f'{path}: the video stream has no decodable frame')
            rotation = int(round(first.rotation or 0)) % 360
            if rotation % 90:
                raise MediaError(f'{path}: rotation {rotation} degrees is not a quarter turn (not supported)')
            width, height = (first.height, first.width) if rotation in (90, 270) else (first.width, first.height)
            rate = stream.average_rate or stream.guessed_rate or DEFAULT_FRAMES_FPS
            return MediaInfo(path, 'video', width, height, stream.time_base or 1 / Fraction(rate), Fraction(rate),
                             rotation, stream.frames or None, first.pts or 0,
                             [audio.codec_context.name for audio in container.streams.audio])
    except av.FFmpegError as error:
        raise MediaError(f'{path}: not a video or image PyAV can read ({_ffmpeg_reason(error)})') from None


def _probe_frames_folder(path: Path) -> MediaInfo:
    files = sorted(file for file in path.iterdir() if file.suffix.lower() in IMAGE_EXTENSIONS and file.is_file())
    if not files:
        raise MediaError(f'{path}: folder has no image files ({", ".join(IMAGE_EXTENSIONS)})')
    first = read_image(files[0])
    return MediaInfo(path, 'frames', first.shape[1], first.shape[0], 1 / DEFAULT_FRAMES_FPS, DEFAULT_FRAMES_FPS,
                     frame_count=len(files), frame_files=files)


def _ffmpeg_reason(error: Exception) -> str:
    return getattr(error, 'strerror', None) or str(error).splitlines()[0]


def read_frames(info: MediaInfo, start: float | None = None, end: float | None = None) -> Iterator[Frame]:
    """Decode the frames of ``info`` whose time (seconds from the first frame) is in [start, end), upright RGB,
    in presentation order. Frames of a folder must all have the size of the first."""
    index = 0
    for image, pts, duration in _decoded(info):
        time = float((pts - info.start_pts) * info.time_base)
        if end is not None and time >= end:
            return
        if start is None or time >= start:
            if image.shape[:2] != (info.height, info.width):
                raise MediaError(f'{info.path}: frame {index} is {image.shape[1]}x{image.shape[0]}, the first frame '
                                 f'is {info.width}x{info.height} (all frames must have one size)')
            yield Frame(index, image, pts, duration)
        index += 1


def _decoded(info: MediaInfo) -> Iterator[tuple[np.ndarray, int, int]]:
    if info.kind == 'image':
        yield read_image(info.path), 0, 1
        return
    if info.kind == 'frames':
        for index, file in enumerate(info.frame_files):
            yield read_image(file), index, 1
        return
    nominal = max(1, round(1 / (info.rate * info.time_base)))
    try:
        with av.open(str(info.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = 'AUTO'
            next_pts = 0
            for frame in container.decode(stream):
                pts = frame.pts if frame.pts is not None else next_pts
                next_pts = pts + nominal
                image = frame.to_ndarray(format='rgb24')
                yield np.ascontiguousarray(np.rot90(image, info.quarter_turns)), pts, frame.duration or nominal
    except av.FFmpegError as error:
        raise MediaError(f'{info.path}: decoding failed ({_ffmpeg_reason(error)}); the file may be truncated') from None


def encoder_pixel_format(pix_fmt: str, width: int, height: int) -> str:
    """``pix_fmt``, or yuv444p when a chroma-subsampled format cannot hold an odd width or height (the output size
    is never changed to suit the encoder)."""
    if (width % 2 or height % 2) and pix_fmt.startswith(('yuv420', 'yuv422', 'nv12')):
        warnings.warn(f'output size {width}x{height} is odd, which {pix_fmt} cannot hold: encoding yuv444p',
                      stacklevel=2)
        return 'yuv444p'
    return pix_fmt


@dataclass
class EncoderSettings:
    """Video encoder choice: codec, constant rate factor, preset, pixel format."""
    codec: str = 'libx264'
    crf: int = 17
    preset: str = 'medium'
    pix_fmt: str = 'yuv420p'


class SegmentEncoder:
    """Encode upright RGB frames into ``path`` (mp4, video only), frames stored turned back to the input's
    orientation, with the input's timestamps and time base. Use as a context manager; on error the file is
    removed."""

    def __init__(self, path: Path, info: MediaInfo, width: int, height: int, settings: EncoderSettings):
        self.path, self.info = Path(path), info
        self.turns = info.quarter_turns
        stored_width, stored_height = (height, width) if self.turns % 2 else (width, height)
        self.container = av.open(str(self.path), 'w', format='mp4')
        try:
            self.stream = self.container.add_stream(settings.codec, rate=info.rate)
        except (av.FFmpegError, ValueError) as error:
            self.container.close()
            self.path.unlink(missing_ok=True)
            raise MediaError(f'--codec {settings.codec}: not an encoder PyAV provides ({error})') from None
        self.stream.width, self.stream.height = stored_width, stored_height
        self.stream.pix_fmt = encoder_pixel_format(settings.pix_fmt, stored_width, stored_height)
        self.stream.time_base = info.time_base
        self.stream.codec_context.time_base = info.time_base
        options = dict(PINNED_ENCODER_THREADS.get(self.stream.codec_context.name, {}))
        if settings.codec in CRF_CODECS:
            options.update(crf=str(settings.crf), preset=settings.preset)
        self.stream.options = options
        self.frame_duration = max(1, round(1 / (info.rate * info.time_base)))

    def __enter__(self):
        return self

    def write(self, image: np.ndarray, pts: int, duration: int | None = None) -> None:
        """Encode one upright RGB uint8 frame at ``pts`` (input time base)."""
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.rot90(image, -self.turns)), format='rgb24')
        frame.pts, frame.time_base = pts, self.info.time_base
        frame.duration = duration or self.frame_duration
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def __exit__(self, exc_type, exc, traceback):
        try:
            if exc_type is None:
                for packet in self.stream.encode():
                    self.container.mux(packet)
        finally:
            self.container.close()
            if exc_type is not None:
                self.path.unlink(missing_ok=True)


def reproducible_encoder(codec: str) -> bool:
    """Whether ``codec`` (a PyAV encoder name) gives the same bytes for the same frames in any process."""
    try:
        return av.codec.Codec(codec, 'w').name in PINNED_ENCODER_THREADS
    except (av.FFmpegError, ValueError):
        return False


def check_output_suffix(info: MediaInfo, output: Path) -> None:
    """A MediaError unless ``output``'s suffix names a container (video input) or an image format (image input)."""
    if info.kind == 'image' and Path(output).suffix.lower() not in IMAGE_EXTENSIONS:
        raise MediaError(f'{output}: an image input needs an image output ({", ".join(IMAGE_EXTENSIONS)})')
    if info.kind != 'image' and not output_format(Path(output)):
        raise MediaError(f'{output}: unknown video container suffix {Path(output).suffix!r} (use .mp4, .mov, .mkv, '
                         '.webm)')


def output_format(path: Path) -> str:
    """The container family of an output path, by its suffix (the output's name is the user's choice)."""
    suffix = path.suffix.lower()
    return {'.mp4': 'mp4', '.m4v': 'mp4', '.mov': 'mov', '.webm': 'webm', '.mkv': 'matroska'}.get(suffix, '')


def mux_video(segments: Sequence[Path], segment_pts: Sequence[Sequence[int]], last_duration: int, info: MediaInfo,
              output: Path, audio_from: Fraction, audio_to: Fraction | None = None) -> None:
    """Write ``output`` (container from its suffix) from the video ``segments``, concatenated without re-encoding,
    and the audio of ``info`` between ``audio_from`` and ``audio_to`` (seconds on the input's clock), moved so
    that ``audio_from`` is time 0: copied, or re-encoded where ``output``'s container cannot hold the codec.

    ``segment_pts``: the output timestamp (input time base) of every frame of each segment, in presentation
    order; they are written exactly (the segment files' own timestamps only give the order). ``last_duration``:
    the last frame's duration, so the output lasts as long as the input.
    """
    family = output_format(output)
    if not family:
        raise MediaError(f'{output}: unknown video container suffix {output.suffix!r} (use .mp4, .mov, .mkv, .webm)')
    with av.open(str(output), 'w', format=family) as out:
        video_packets = _segment_packets(out, segments, segment_pts, last_duration, info)
        audio_sources = [] if info.kind != 'video' else _audio_sources(out, info, family, audio_from, audio_to)
        streams = [video_packets] + audio_sources
        pending = [next(source, None) for source in streams]
        while any(packet is not None for packet in pending):
            # interleave by time: always write the earliest pending packet
            times = [math.inf if packet is None else float(packet.dts * packet.time_base) for packet in pending]
            choice = int(np.argmin(times))
            out.mux(pending[choice])
            pending[choice] = next(streams[choice], None)


def _segment_packets(out, segments: Sequence[Path], segment_pts: Sequence[Sequence[int]], last_duration: int,
                     info: MediaInfo) -> Iterator[av.Packet]:
    """Add the video stream to ``out``; the segments' packets with exact timestamps: each packet's rank among its
    segment's presentation times picks its timestamp from ``segment_pts``; decode timestamps are the sorted
    presentation times shifted by the largest reordering delay of the file, so they increase across joins."""
    orders, delay = [], 0
    for segment, pts in zip(segments, segment_pts):
        with av.open(str(segment)) as container:
            stored = [packet.pts for packet in container.demux(container.streams.video[0]) if packet.size]
        if len(stored) != len(pts):
            raise MediaError(f'{segment}: {len(stored)} packets for {len(pts)} frames (a damaged segment; delete it)')
        rank = {value: position for position, value in enumerate(sorted(stored))}
        order = [pts[rank[value]] for value in stored]
        delay = max(delay, max(sorted_pts - actual for sorted_pts, actual in zip(pts, order)))
        orders.append(order)
    with av.open(str(segments[0])) as first:
        video_out = out.add_stream_from_template(first.streams.video[0])
    video_out.time_base = info.time_base
    if info.rotation:
        video_out.set_display_rotation(info.rotation)
    all_pts = [value for pts in segment_pts for value in pts]
    durations = dict(zip(all_pts, np.diff(all_pts + [all_pts[-1] + last_duration]).tolist()))

    def packets():
        decode_index = 0
        for segment, order in zip(segments, orders):
            with av.open(str(segment)) as container:
                packets_with_data = (packet for packet in container.demux(container.streams.video[0]) if packet.size)
                for packet, pts in zip(packets_with_data, order):
                    packet.time_base = info.time_base
                    packet.pts, packet.dts = pts, all_pts[decode_index] - delay
                    packet.duration = durations[pts]
                    packet.stream = video_out
                    decode_index += 1
                    yield packet
    return packets()


def _audio_sources(out, info: MediaInfo, family: str, audio_from: Fraction, audio_to: Fraction | None):
    """One packet iterator per audio stream of the input."""
    sources = []
    for index, codec in enumerate(info.audio_codecs):
        allowed = AUDIO_CODECS_BY_FORMAT.get(family)
        if allowed is None or codec in allowed:
            sources.append(_copied_audio(out, info, index, audio_from, audio_to))
        else:
            target = 'libopus' if family == 'webm' else 'aac'
            warnings.warn(f'{info.path}: audio codec {codec} cannot go into a {family} file; re-encoding to {target}',
                          stacklevel=3)
            sources.append(_reencoded_audio(out, info, index, target, audio_from, audio_to))
    return sources


def _copied_audio(out, info: MediaInfo, index: int, audio_from: Fraction, audio_to: Fraction | None):
    """Packets overlapping [audio_from, audio_to) and those of the :data:`AUDIO_PREROLL` before, unchanged but for
    their timestamps (moved by ``audio_from``): the pre-roll (an encoder's priming packets, or the packets before a
    trimmed start) lies before time 0, where the decoder runs on it to start cleanly and players drop it (the mp4/mov
    edit list), as in the input."""
    container = av.open(str(info.path))
    stream = container.streams.audio[index]
    audio_out = out.add_stream_from_template(stream)
    shift = round(audio_from / stream.time_base)

    def packets():
        with container:
            for packet in container.demux(stream):
                if packet.pts is None or packet.size == 0:
                    continue
                start = packet.pts * stream.time_base
                if audio_to is not None and start >= audio_to:
                    break
                if start + (packet.duration or 0) * stream.time_base <= audio_from - AUDIO_PREROLL:
                    continue
                packet.pts -= shift
                packet.dts = (packet.dts if packet.dts is not None else packet.pts + shift) - shift
                packet.stream = audio_out
                yield packet
    return packets()


def _reencoded_audio(out, info: MediaInfo, index: int, codec: str, audio_from: Fraction, audio_to: Fraction | None):
    container = av.open(str(info.path))
    stream = container.streams.audio[index]
    rate = stream.codec_context.sample_rate
    audio_out = out.add_stream(codec, rate=48000 if codec == 'libopus' else rate)
    channels = stream.codec_context.channels  # a standard layout for the count (an input's may be unspecified)
    audio_out.layout = {1: 'mono', 2: 'stereo', 6: '5.1'}.get(channels, f'{channels}c')
    resampler = av.AudioResampler(format=audio_out.codec_context.codec.audio_formats[0].name,
                                  layout=audio_out.layout.name, rate=audio_out.rate)

    def packets():
        samples = 0

        def encode(frames):
            """Samples numbered from 0 (= ``audio_from``): the encoder's packets take their timestamps from them."""
            nonlocal samples
            for converted in frames:
                converted.pts, converted.time_base = samples, Fraction(1, audio_out.rate)
                samples += converted.samples
                yield from audio_out.encode(converted)

        with container:
            for frame in container.decode(stream):
                time = frame.pts * frame.time_base if frame.pts is not None else Fraction(0)
                if audio_to is not None and time >= audio_to:
                    break
                kept = _samples_between(frame, audio_from - time, None if audio_to is None else audio_to - time)
                if kept is not None:
                    yield from encode(resampler.resample(kept))
            yield from encode(resampler.resample(None))
            yield from audio_out.encode(None)
    return packets()


def _samples_between(frame: av.AudioFrame, start: Fraction, end: Fraction | None) -> av.AudioFrame | None:
    """The samples of ``frame`` from ``start`` to ``end`` seconds after its first (the whole frame, or None when
    nothing is left), with no timestamp."""
    first = max(0, round(start * frame.sample_rate))
    last = frame.samples if end is None else min(frame.samples, round(end * frame.sample_rate))
    if last <= first:
        return None
    if (first, last) == (0, frame.samples):
        frame.pts = None
        return frame
    samples = frame.to_ndarray()
    channels = 1 if frame.format.is_planar else len(frame.layout.channels)  # packed: samples interleaved
    part = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, first * channels:last * channels]),
                                      format=frame.format.name, layout=frame.layout.name)
    part.sample_rate = frame.sample_rate
    return part


def write_image(path: Path, image: np.ndarray) -> None:
    """Write an RGB uint8 image (format from ``path``'s suffix)."""
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise MediaError(f'{path}: cannot write an image with this suffix (use .png, .jpg, ...)')
