"""Online blind degradation of a video clip, as KEEP trains on VFHQ: blur, noise, downsampling, real H.264.

One random draw of every parameter per clip, applied identically to all frames (a camera and an encoder do not
change between frames), in this order:

1. blur: one Gaussian kernel (``kernel_list`` iso/aniso with ``kernel_prob``, size ``blur_kernel_size``, sigmas
   from ``blur_x_sigma`` / ``blur_y_sigma``, rotation from ``blur_rotation_range``), built by basicsr's
   ``bivariate_Gaussian`` and applied with ``cv2.filter2D``;
2. Gaussian noise, sigma from ``noise_range`` (0-255 scale), gray (one channel for all) with ``gray_noise_prob``;
   the sigma and gray choice are per clip, the noise samples are fresh per frame; clipped to [0, 1];
3. ``scale``-times downsampling with ``cv2.resize``, mode drawn from ``resize_modes`` with ``resize_prob``;
4. Gaussian noise again (an independent draw of sigma and gray);
5. a real H.264 encode and decode of the whole clip with PyAV (``codec`` libx264, ``pix_fmt`` yuv420p, CRF drawn
   from ``crf_range``, inclusive, in memory). 4:2:0 chroma needs even sizes: odd frames are padded by one replicated
   row/column for the codec and cropped back, so the output keeps the downsampled size.
   ``compression_channel_order`` says which channel the encoder takes for red: ``official_bgr`` (default) hands it
   the frames with red and blue swapped, as the official data code hands its BGR arrays to PyAV as ``rgb24``, so the
   YUV matrix and the chroma subsampling act on swapped channels, the distribution the released KEEP was trained
   on; ``rgb`` encodes the true RGB frames (what a camera's encoder does).

Frames are RGB float32 in [0, 1], shape (T, H, W, 3); the output is (T, H // scale, W // scale, 3) in the same
convention, quantised to 8 bits by the codec. Randomness comes only from the ``numpy.random.Generator`` (or seed)
passed in, so a clip degraded twice with the same seed is bit-identical: the colour conversions and the codec run
in one thread (swscale's automatic threading changed a conversion now and then, and libx264's output follows its
thread count, which follows the number of cores).

Differences from the official KEEP data code, on purpose: the official draws the noise sigma per frame (we draw per
clip, the issue's "one draw per clip"); its CRF upper bound is exclusive (``randint(25, 45)``), ours inclusive; it
truncates to uint8 before encoding, we round. The official encodes at ``rate=1``; x264's rate control depends on
the frame rate, so ``fps`` defaults to 1 to give the official compression strength.
"""
import io
import math
from dataclasses import dataclass, fields

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter
from basicsr.data.degradations import bivariate_Gaussian

RESIZE_INTERPOLATIONS = {'area': cv2.INTER_AREA, 'linear': cv2.INTER_LINEAR, 'cubic': cv2.INTER_CUBIC}
GAUSSIAN_KERNEL_TYPES = ('iso', 'aniso')
# What the H.264 encoder is handed as rgb24: the frames with red and blue swapped (official), or the true RGB.
CHANNEL_ORDERS = ('official_bgr', 'rgb')


@dataclass
class VideoDegradationOptions:
    """Every range and probability of the degradation; the defaults are the official KEEP training settings."""
    scale: int = 4
    blur_kernel_size: int = 21
    kernel_list: tuple = ('iso', 'aniso')
    kernel_prob: tuple = (0.7, 0.3)
    blur_x_sigma: tuple = (2.0, 10.0)
    blur_y_sigma: tuple = (2.0, 10.0)
    blur_rotation_range: tuple = (-math.pi, math.pi)
    noise_range: tuple = (0.0, 10.0)
    gray_noise_prob: float = 0.5
    resize_modes: tuple = ('area', 'linear', 'cubic')
    resize_prob: tuple = (0.3, 0.3, 0.4)
    crf_range: tuple = (25, 45)
    codec: str = 'libx264'
    pix_fmt: str = 'yuv420p'
    fps: int = 1
    compression_channel_order: str = 'official_bgr'

    @classmethod
    def from_dict(cls, options: dict | None) -> 'VideoDegradationOptions':
        """Build from a dict of options (e.g. a YAML block); unknown keys are an error naming them."""
        options = dict(options or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f'unknown video degradation option(s) {unknown}; known: {sorted(known)}')
        return cls(**options)

    def __post_init__(self):
        for name in ('kernel_list', 'kernel_prob', 'resize_modes', 'resize_prob'):
            setattr(self, name, tuple(getattr(self, name)))
        bad_kernels = set(self.kernel_list) - set(GAUSSIAN_KERNEL_TYPES)
        if bad_kernels:
            raise ValueError(f'kernel_list has {sorted(bad_kernels)}; supported: {GAUSSIAN_KERNEL_TYPES}')
        bad_modes = set(self.resize_modes) - set(RESIZE_INTERPOLATIONS)
        if bad_modes:
            raise ValueError(f'resize_modes has {sorted(bad_modes)}; supported: {sorted(RESIZE_INTERPOLATIONS)}')
        if len(self.kernel_list) != len(self.kernel_prob) or len(self.resize_modes) != len(self.resize_prob):
            raise ValueError('kernel_prob / resize_prob need one probability per kernel type / resize mode')
        if self.blur_kernel_size % 2 == 0:
            raise ValueError(f'blur_kernel_size must be odd, got {self.blur_kernel_size}')
        if self.compression_channel_order not in CHANNEL_ORDERS:
            raise ValueError(f'compression_channel_order must be one of {CHANNEL_ORDERS}, got '
                             f'{self.compression_channel_order!r}')


@dataclass
class NoiseDraw:
    sigma: float  # 0-255 scale
    gray: bool


@dataclass
class DegradationDraw:
    """The random parameters of one clip's degradation."""
    kernel: np.ndarray
    noise_before: NoiseDraw
    resize_mode: str
    noise_after: NoiseDraw
    crf: int


def as_generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


class VideoDegradation:
    """Degrades a clip (T, H, W, 3) RGB float in [0, 1] to its low-quality version, one draw per clip."""

    def __init__(self, options: VideoDegradationOptions | dict | None = None):
        self.options = options if isinstance(options, VideoDegradationOptions) else \
            VideoDegradationOptions.from_dict(options)

    def __call__(self, frames: np.ndarray, rng: np.random.Generator | int | None = None) -> np.ndarray:
        rng = as_generator(rng)
        return self.apply(frames, self.draw(rng), rng)

    def draw(self, rng: np.random.Generator) -> DegradationDraw:
        opt = self.options
        kernel_type = opt.kernel_list[rng.choice(len(opt.kernel_list), p=normalised(opt.kernel_prob))]
        sigma_x = rng.uniform(*opt.blur_x_sigma)
        if kernel_type == 'iso':
            kernel = bivariate_Gaussian(opt.blur_kernel_size, sigma_x, sigma_x, 0, isotropic=True)
        else:
            sigma_y = rng.uniform(*opt.blur_y_sigma)
            theta = rng.uniform(*opt.blur_rotation_range)
            kernel = bivariate_Gaussian(opt.blur_kernel_size, sigma_x, sigma_y, theta, isotropic=False)
        noise_before = self._draw_noise(rng)
        resize_mode = opt.resize_modes[rng.choice(len(opt.resize_modes), p=normalised(opt.resize_prob))]
        noise_after = self._draw_noise(rng)
        crf = int(rng.integers(opt.crf_range[0], opt.crf_range[1], endpoint=True))
        return DegradationDraw(kernel.astype(np.float32), noise_before, resize_mode, noise_after, crf)

    def _draw_noise(self, rng: np.random.Generator) -> NoiseDraw:
        sigma = float(rng.uniform(*self.options.noise_range))
        return NoiseDraw(sigma, bool(rng.random() < self.options.gray_noise_prob))

    def apply(self, frames: np.ndarray, draw: DegradationDraw, rng: np.random.Generator) -> np.ndarray:
        """Apply one clip's draw; ``rng`` supplies the per-frame noise samples."""
        frames = np.asarray(frames, dtype=np.float32)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f'expected frames of shape (T, H, W, 3), got {frames.shape}')
        height, width = frames.shape[1:3]
        low_size = (width // self.options.scale, height // self.options.scale)
        if min(low_size) < 1:
            raise ValueError(f'frames of {height}x{width} are too small for scale {self.options.scale}')
        blurred = [blur(frame, draw.kernel) for frame in frames]
        noisy = [add_gaussian_noise(frame, draw.noise_before, rng) for frame in blurred]
        small = [cv2.resize(frame, low_size, interpolation=RESIZE_INTERPOLATIONS[draw.resize_mode]) for frame in noisy]
        small = np.stack([add_gaussian_noise(frame, draw.noise_after, rng) for frame in small])
        encoded = h264_round_trip(to_uint8(small), draw.crf, self.options.codec, self.options.pix_fmt, self.options.fps,
                                  self.options.compression_channel_order)
        return encoded.astype(np.float32) / 255.0


def normalised(probabilities) -> np.ndarray:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    return probabilities / probabilities.sum()


def blur(frame: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``cv2.filter2D`` (reflect-101 borders); a rank-one kernel (every isotropic Gaussian) runs as two 1-D passes,
    several times faster at 512x512 and equal up to float rounding."""
    left, singular_values, right = np.linalg.svd(kernel.astype(np.float64))
    if singular_values[1] > 1e-7 * singular_values[0]:
        return cv2.filter2D(frame, -1, kernel)
    column = (left[:, 0] * np.sqrt(singular_values[0])).astype(np.float32)
    row = (right[0] * np.sqrt(singular_values[0])).astype(np.float32)
    return cv2.sepFilter2D(frame, -1, row, column)


def add_gaussian_noise(frame: np.ndarray, noise: NoiseDraw, rng: np.random.Generator) -> np.ndarray:
    """Add N(0, sigma/255) noise, one sample shared by the channels when gray; clip to [0, 1]."""
    channels = 1 if noise.gray else frame.shape[-1]
    samples = rng.standard_normal((*frame.shape[:2], channels), dtype=np.float32) * (noise.sigma / 255.0)
    return np.clip(frame + samples, 0.0, 1.0)


def to_uint8(frames: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(frames * 255.0), 0, 255).astype(np.uint8)


def h264_round_trip(frames: np.ndarray, crf: int, codec: str = 'libx264', pix_fmt: str = 'yuv420p',
                    fps: int = 1, channel_order: str = 'rgb') -> np.ndarray:
    """Encode (T, H, W, 3) RGB uint8 frames into an in-memory MP4 and decode them back, same shape and dtype.

    Sizes that 4:2:0 chroma cannot hold (odd) are padded by one replicated row/column and cropped after decoding.
    ``channel_order='official_bgr'`` swaps red and blue before the encoder and back after the decoder (see
    :class:`VideoDegradationOptions`).
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f'expected uint8 frames of shape (T, H, W, 3), got {frames.dtype} {frames.shape}')
    num_frames, height, width = frames.shape[:3]
    swap_red_blue = channel_order == 'official_bgr'
    if swap_red_blue:
        frames = frames[..., ::-1]
    pad_bottom, pad_right = height % 2, width % 2
    if pad_bottom or pad_right:
        frames = np.pad(frames, ((0, 0), (0, pad_bottom), (0, pad_right), (0, 0)), mode='edge')
    # Colour conversions in one thread: swscale's automatic slice threading gave a different conversion now and then.
    reformatter = VideoReformatter()
    buffer = io.BytesIO()
    with av.open(buffer, mode='w', format='mp4') as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        stream.options = {'crf': str(crf)}
        single_threaded(stream)
        for frame in frames:
            rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format='rgb24')
            for packet in stream.encode(reformatter.reformat(rgb, format=pix_fmt, threads=1)):
                container.mux(packet)
        for packet in stream.encode():  # flush the encoder's delayed frames
            container.mux(packet)
    buffer.seek(0)
    with av.open(buffer, mode='r') as container:
        single_threaded(container.streams.video[0])
        decoded = np.stack([reformatter.reformat(frame, format='rgb24', threads=1).to_ndarray()
                            for frame in container.decode(video=0)])
    if len(decoded) != num_frames:
        raise RuntimeError(f'{codec} round trip returned {len(decoded)} frames for {num_frames}')
    decoded = decoded[:, :height, :width]
    return np.ascontiguousarray(decoded[..., ::-1]) if swap_red_blue else decoded


def single_threaded(stream) -> None:
    """One codec thread: libx264's default thread count follows the number of cores, and its output follows the
    thread count, so the same seed would give other LQ frames on another machine."""
    stream.codec_context.thread_count = 1
    stream.codec_context.thread_type = 'NONE'
