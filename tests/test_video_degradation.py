"""Online blind video degradation: sizes, range, the real H.264 round trip, one draw per clip, determinism."""
import cv2
import numpy as np
import pytest
import skimage.data

import vfsr_data  # noqa: F401  (vfsr_compat before basicsr)

# isort: split
from basicsr.data.degradations import bivariate_Gaussian

from vfsr_data.video_degradation import VideoDegradation, VideoDegradationOptions, blur, h264_round_trip


def moving_face_clip(num_frames=6, size=64) -> np.ndarray:
    """(T, size, size, 3) RGB uint8: the astronaut photo panning by 2 px per frame (real texture, real motion)."""
    photo = cv2.resize(skimage.data.astronaut(), (2 * size, 2 * size), interpolation=cv2.INTER_AREA)
    return np.stack([photo[size // 2:size // 2 + size, 2 * t:2 * t + size] for t in range(num_frames)])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def test_output_size_dtype_and_range():
    clip = moving_face_clip().astype(np.float32) / 255
    lq = VideoDegradation()(clip, 0)
    assert lq.shape == (6, 16, 16, 3) and lq.dtype == np.float32
    assert lq.min() >= 0 and lq.max() <= 1
    np.testing.assert_allclose(lq * 255, np.rint(lq * 255), atol=1e-4)  # 8-bit frames out of the decoder


def test_odd_sizes_are_kept_through_the_codec():
    clip = np.random.default_rng(0).random((3, 36, 44, 3), dtype=np.float32)
    assert VideoDegradation()(clip, 1).shape == (3, 9, 11, 3)
    frames = moving_face_clip(3, 16)[:, :15, :13]
    assert h264_round_trip(frames, crf=20).shape == (3, 15, 13, 3)


def test_h264_round_trip_changes_frames_and_higher_crf_loses_more():
    clip = moving_face_clip(8, 64)
    psnrs = [psnr(h264_round_trip(clip, crf), clip) for crf in (25, 35, 45)]
    assert psnrs[0] < 60, 'the codec must really change the frames'
    assert psnrs[0] > psnrs[1] > psnrs[2], psnrs


def test_one_draw_per_clip_applies_identically_to_all_frames():
    # Identical frames, no noise and a lossless codec: any per-frame draw of blur or resize would show.
    frame = moving_face_clip(1, 64)[0].astype(np.float32) / 255
    clip = np.stack([frame] * 5)
    degradation = VideoDegradation({'noise_range': [0, 0], 'crf_range': [0, 0]})
    for seed in range(3):
        lq = degradation(clip, seed)
        assert all(np.array_equal(lq[0], other) for other in lq[1:])


def test_same_seed_same_clip_other_seed_other_clip():
    clip = moving_face_clip().astype(np.float32) / 255
    degradation = VideoDegradation()
    first, again = degradation(clip, np.random.default_rng(7)), degradation(clip, np.random.default_rng(7))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, degradation(clip, np.random.default_rng(8)))


def test_draws_stay_in_the_option_ranges():
    degradation = VideoDegradation({'crf_range': [30, 32], 'resize_modes': ['area', 'cubic'], 'resize_prob': [1, 0],
                                    'noise_range': [2, 3], 'kernel_list': ['iso'], 'kernel_prob': [1]})
    rng = np.random.default_rng(0)
    draws = [degradation.draw(rng) for _ in range(60)]
    assert {draw.crf for draw in draws} == {30, 31, 32}  # inclusive range
    assert {draw.resize_mode for draw in draws} == {'area'}
    assert all(2 <= draw.noise_before.sigma <= 3 and 2 <= draw.noise_after.sigma <= 3 for draw in draws)
    assert all(draw.kernel.shape == (21, 21) and abs(draw.kernel.sum() - 1) < 1e-5 for draw in draws)
    assert all(np.allclose(draw.kernel, draw.kernel.T, atol=1e-6) for draw in draws)  # isotropic


def test_official_defaults_and_bad_options():
    options = VideoDegradationOptions()
    assert (options.blur_kernel_size, options.kernel_prob, options.blur_x_sigma) == (21, (0.7, 0.3), (2.0, 10.0))
    assert (options.noise_range, options.gray_noise_prob, options.resize_prob) == ((0.0, 10.0), 0.5, (0.3, 0.3, 0.4))
    assert (options.crf_range, options.codec, options.pix_fmt) == ((25, 45), 'libx264', 'yuv420p')
    with pytest.raises(ValueError, match='crf_rang'):
        VideoDegradation({'crf_rang': [1, 2]})
    with pytest.raises(ValueError, match='plateau'):
        VideoDegradation({'kernel_list': ['plateau'], 'kernel_prob': [1]})


@pytest.mark.parametrize('sigma_x, sigma_y, theta', [(4.0, 4.0, 0.0), (2.0, 7.0, 0.0), (2.0, 7.0, 0.6)])
def test_blur_matches_filter2d_for_separable_and_rotated_kernels(sigma_x, sigma_y, theta):
    frame = np.random.default_rng(0).random((40, 48, 3), dtype=np.float32)
    kernel = bivariate_Gaussian(21, sigma_x, sigma_y, theta, isotropic=False).astype(np.float32)
    np.testing.assert_allclose(blur(frame, kernel), cv2.filter2D(frame, -1, kernel), atol=1e-5)


def checkerboard(channel: int, size: int = 32, frames: int = 3) -> np.ndarray:
    """(T, size, size, 3) uint8: one colour channel alternating 0/255 pixel by pixel, the others 0."""
    clip = np.zeros((frames, size, size, 3), np.uint8)
    clip[:, ::2, ::2, channel] = clip[:, 1::2, 1::2, channel] = 255
    return clip


def test_compression_channel_orders_differ_and_follow_their_definitions():
    # official_bgr is, by definition, the rgb round trip of the frames with red and blue swapped, swapped back.
    clip = moving_face_clip(6, 32)
    official = h264_round_trip(clip, 30, channel_order='official_bgr')
    assert np.array_equal(official, h264_round_trip(clip[..., ::-1], 30, channel_order='rgb')[..., ::-1])
    assert not np.array_equal(official, h264_round_trip(clip, 30, channel_order='rgb'))
    # rgb hands the encoder the true red: BT.601 luma keeps 0.299 of it (0.114 of blue) at full resolution while
    # 4:2:0 halves the chroma, so pixel-fine red detail survives better as red than as blue; official_bgr is the
    # other way round.
    red, blue = checkerboard(0), checkerboard(2)
    for order, better, worse in (('rgb', red, blue), ('official_bgr', blue, red)):
        assert psnr(h264_round_trip(better, 10, channel_order=order), better) > \
            psnr(h264_round_trip(worse, 10, channel_order=order), worse) + 1, order
    assert VideoDegradationOptions().compression_channel_order == 'official_bgr'  # the released KEEP's training
    with pytest.raises(ValueError, match='compression_channel_order'):
        VideoDegradationOptions(compression_channel_order='bgr')
