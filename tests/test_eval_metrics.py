"""vfsr_eval's metrics on constructed cases whose answer is known, through BasicSR's real METRIC_REGISTRY and
``calculate_metric``. Networks that need weights (LPIPS, ArcFace) load random weights the tests write in the real
files' layout, through the real loading path; the face detector is vfsr_restore's MTCNN (its weights ship with
facenet-pytorch)."""
import json

import vfsr_compat  # noqa: F401  (before basicsr)

import cv2
import numpy as np
import pytest
import torch
import torchvision
from basicsr.metrics import calculate_metric

import vfsr_eval  # noqa: F401  (registers the metrics)
from vfsr_arch.lpips_arch import ALEXNET_SLICE_CHANNELS, VGG16_SLICE_CHANNELS
from vfsr_data.face_landmarks import align_face, template_for_size
from vfsr_eval.clip_scoring import ClipInputError, score_clip
from vfsr_eval.landmark_jitter_metric import landmark_jitter
from vfsr_face.astronaut import ASTRONAUT_LANDMARKS, astronaut_bgr


def metric(metric_type, img, img2=None, **opts) -> float:
    return float(calculate_metric({'img': img, 'img2': img2}, dict(type=metric_type, **opts)))


def noisy(image: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def shifted(image: np.ndarray, dx: int, dy: int = 0) -> np.ndarray:
    return cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, dy]]), image.shape[1::-1],
                          borderMode=cv2.BORDER_REFLECT)


@pytest.fixture(scope='module')
def face() -> np.ndarray:
    """The astronaut's face aligned to the FFHQ template at 128x128 (BGR uint8), as KEEP's test crops are."""
    return align_face(astronaut_bgr(), ASTRONAUT_LANDMARKS, 128)


@pytest.fixture(scope='module')
def other_face() -> np.ndarray:
    """Another subject framed the same way: the cat photograph scikit-image ships, at the same size."""
    import skimage.data

    return cv2.resize(cv2.cvtColor(skimage.data.chelsea(), cv2.COLOR_RGB2BGR)[:, 60:360], (128, 128))


# ----------------------------------------------------------------------------------------------------------------
# LPIPS
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def lpips_weights(tmp_path_factory):
    """Random stand-ins for torchvision's VGG16 / AlexNet trunks and the v0.1 heads, in the real files' layout."""
    folder = tmp_path_factory.mktemp('lpips')
    torch.manual_seed(0)
    trunks = {'vgg': (torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs['D']), VGG16_SLICE_CHANNELS),
              'alex': (torchvision.models.AlexNet().features, ALEXNET_SLICE_CHANNELS)}
    for net, (features, channels) in trunks.items():
        torch.save({f'features.{k}': v for k, v in features.state_dict().items()}, folder / f'{net}_trunk.pth')
        torch.save({f'lin{i}.model.1.weight': torch.rand(1, c, 1, 1) for i, c in enumerate(channels)},
                   folder / f'{net}.pth')
    return folder


@pytest.mark.parametrize('net', ['vgg', 'alex'])
def test_lpips_is_zero_for_identical_images_and_grows_with_noise(net, lpips_weights, face):
    opts = dict(net=net, trunk_weights_path=str(lpips_weights / f'{net}_trunk.pth'),
                lpips_weights_path=str(lpips_weights / f'{net}.pth'), device='cpu')
    assert metric('calculate_lpips', face, face, **opts) == 0
    slight, strong = (metric('calculate_lpips', noisy(face, sigma), face, **opts) for sigma in (4, 30))
    assert 0 < slight < strong
    assert metric('calculate_lpips', shifted(face, 1), face, **opts) > 0


def test_lpips_missing_weights_name_the_file(tmp_path, face):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pth.*download\.pytorch\.org"):
        metric('calculate_lpips', face, face, net='alex', trunk_weights_path=str(tmp_path / 'nowhere.pth'))


# ----------------------------------------------------------------------------------------------------------------
# IDS, sigma_IDS
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def arcface_weights(tmp_path_factory):
    """facexlib's IR-SE50 ArcFace with random weights, saved as a plain state_dict like the released file."""
    from facexlib.recognition.arcface_arch import Backbone

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('arcface') / 'recognition_arcface_ir_se50.pth'
    torch.save(Backbone(num_layers=50, drop_ratio=0.6, mode='ir_se').state_dict(), path)
    return str(path)


def test_ids_is_one_for_the_same_face_and_lower_for_noise_and_another_subject(arcface_weights, face, other_face):
    opts = dict(arcface_weights_path=arcface_weights, device='cpu')
    assert metric('calculate_ids', face, face, **opts) == pytest.approx(1, abs=1e-5)
    slight, strong = (metric('calculate_ids', noisy(face, sigma), face, **opts) for sigma in (5, 40))
    swapped = metric('calculate_ids', other_face, face, **opts)
    assert 1 > slight > strong and slight > swapped


def test_sigma_ids_is_zero_for_a_constant_clip_and_positive_for_a_varying_one(arcface_weights, face):
    opts = dict(type='calculate_sigma_ids', arcface_weights_path=arcface_weights, device='cpu')
    constant = [noisy(face, 10)] * 3
    assert calculate_metric({'img': constant, 'img2': [face] * 3}, opts) == pytest.approx(0, abs=1e-6)
    varying = [face, noisy(face, 10), noisy(face, 40)]
    assert calculate_metric({'img': varying, 'img2': [face] * 3}, opts) > 0.001


def test_ids_with_detected_landmarks_is_one_for_the_same_face(arcface_weights, big_face):
    opts = dict(arcface_weights_path=arcface_weights, face_crop='detect', device='cpu')
    assert metric('calculate_ids', big_face, big_face, **opts) == pytest.approx(1, abs=1e-5)
    assert metric('calculate_ids', shifted(big_face, 6, 4), big_face, **opts) < 1 - 1e-4


def test_ids_missing_weights_name_the_file_and_where_it_is_published(tmp_path, face):
    with pytest.raises(FileNotFoundError, match=r'absent\.pth.*xinntao/facexlib'):
        metric('calculate_ids', face, face, arcface_weights_path=str(tmp_path / 'absent.pth'), device='cpu')


# ----------------------------------------------------------------------------------------------------------------
# AKD, sigma_AKD, landmark jitter (MTCNN)
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def big_face() -> np.ndarray:
    """A 256x256 aligned crop: MTCNN finds the face reliably at this size."""
    return align_face(astronaut_bgr(), ASTRONAUT_LANDMARKS, 256)


def test_akd_is_zero_for_identical_frames_and_follows_a_shift(big_face):
    opts = dict(detector='mtcnn', device='cpu')
    assert metric('calculate_akd', big_face, big_face, **opts) == 0
    moved = metric('calculate_akd', shifted(big_face, 4, 3), big_face, **opts)
    assert moved == pytest.approx(5, abs=1.5)  # the landmarks move with the face: |(4, 3)| = 5 pixels
    assert metric('calculate_akd', noisy(big_face, 20), big_face, **opts) > 0


def test_akd_landmarks_land_on_the_face(big_face):
    from vfsr_eval.face_keypoints import detect_landmarks

    found = detect_landmarks([big_face], detector='mtcnn', device='cpu')[0]
    assert np.abs(found - template_for_size(256)).max() < 12  # pixels, in a 256x256 crop


def test_sigma_akd_is_zero_for_a_constant_clip(big_face):
    clip = [shifted(big_face, 4)] * 3
    opts = dict(type='calculate_sigma_akd', device='cpu')
    assert calculate_metric({'img': clip, 'img2': [big_face] * 3}, opts) == pytest.approx(0, abs=1e-9)
    moving = [shifted(big_face, dx) for dx in (0, 4, 8)]
    assert calculate_metric({'img': moving, 'img2': [big_face] * 3}, opts) > 1


def test_akd_with_68_points_loads_the_fan_weights_by_path(big_face, tmp_path):
    from facexlib.alignment.awing_arch import FAN

    from vfsr_eval.face_keypoints import detect_landmarks

    torch.manual_seed(0)
    weights = tmp_path / 'alignment_WFLW_4HG.pth'
    torch.save({'state_dict': FAN(num_modules=4, num_landmarks=98, device='cpu').state_dict()}, weights)
    opts = dict(landmarks=68, alignment_weights_path=str(weights), device='cpu')
    assert detect_landmarks([big_face], **opts)[0].shape == (68, 2)
    assert metric('calculate_akd', big_face, big_face, **opts) == 0
    # the 256x256 crop follows the detected face, so the points follow the shift
    assert metric('calculate_akd', shifted(big_face, 8), big_face, **opts) == pytest.approx(8, abs=3)
    with pytest.raises(FileNotFoundError, match=r'absent\.pth.*alignment_WFLW_4HG'):
        metric('calculate_akd', big_face, big_face, landmarks=68, alignment_weights_path=str(tmp_path / 'absent.pth'))


def test_landmark_jitter_is_zero_for_still_and_steady_motion_and_grows_with_shake():
    still = np.repeat(ASTRONAUT_LANDMARKS[None], 6, axis=0)
    steady = still + np.arange(6)[:, None, None] * np.array([2.0, 1.0])
    shake = still + np.random.default_rng(0).normal(0, 2, (6, 1, 2))
    assert landmark_jitter(still) == 0
    assert landmark_jitter(steady) == pytest.approx(0, abs=1e-9)
    assert landmark_jitter(shake) > 1
    points_68 = np.random.default_rng(1).uniform(0, 100, (68, 2))
    steady_68 = points_68 + np.arange(5)[:, None, None] * np.array([1.0, 2.0])
    assert landmark_jitter(steady_68) == pytest.approx(0, abs=1e-9)
    assert landmark_jitter(steady_68 + np.random.default_rng(2).normal(0, 1, (5, 1, 2))) > 0.1


def test_landmark_jitter_of_detected_landmarks_needs_no_ground_truth(big_face):
    steady = [shifted(big_face, 2 * t) for t in range(4)]
    shaky = [shifted(big_face, dx) for dx in (0, 6, -2, 8)]
    opts = dict(type='calculate_landmark_jitter', device='cpu')
    assert calculate_metric({'img': steady, 'img2': None}, opts) < calculate_metric({'img': shaky, 'img2': None}, opts)


# ----------------------------------------------------------------------------------------------------------------
# Flow warping error (OpenCV DIS)
# ----------------------------------------------------------------------------------------------------------------
def warped_video(num_frames: int = 6) -> list[np.ndarray]:
    """One image moved by a known flow: 128x128 windows of the photograph sliding by (3, 2) pixels a frame."""
    image = astronaut_bgr()
    return [np.ascontiguousarray(image[40 + 2 * t:168 + 2 * t, 150 + 3 * t:278 + 3 * t]) for t in range(num_frames)]


def test_warping_error_is_near_zero_for_a_warped_image_and_higher_when_shuffled_or_flickering():
    frames = warped_video()
    shuffled = [frames[i] for i in (0, 5, 1, 4, 2, 3)]
    ordered = metric('calculate_warping_error', frames)
    flicker = metric('calculate_warping_error', [noisy(frame, 8, seed) for seed, frame in enumerate(frames)])
    # The strip entering at the frame's edge has no match and counts (Lai et al.'s code keeps it): ordered is small,
    # not zero.
    assert ordered < 5e-4 and flicker > 5 * ordered
    # Lai et al.'s setting: flows from the ground truth (the ordered video) applied to the evaluated one. (Flows of
    # the shuffled video itself would explain its bigger jumps: it is still one image moved rigidly.)
    assert metric('calculate_warping_error', shuffled, frames, flow_source='reference') > 100 * ordered
    assert metric('calculate_warping_error', frames, frames, flow_source='reference') == pytest.approx(ordered)


def occluding_square_video(num_frames: int = 3, step: float = 0.04):
    """A 10x10 textured square moving 4 px right a frame over a still textured background, with the whole frame
    brighter by ``step`` each frame; and the true flows: forward (t -> t+1) and backward (t+1 -> t)."""
    rng = np.random.default_rng(3)
    background = rng.uniform(0.2, 0.5, (32, 40, 3))
    square = rng.uniform(0.5, 0.8, (10, 10, 3))
    frames, flows = [], {}
    for t in range(num_frames):
        frame = background.copy()
        frame[11:21, 6 + 4 * t:16 + 4 * t] = square
        frames.append(np.round((frame + step * t) * 255).astype(np.uint8))
        if t:  # the square's pixels at t - 1 move by +4; at t, back by -4
            forward, backward = np.zeros((32, 40, 2), np.float32), np.zeros((32, 40, 2), np.float32)
            forward[11:21, 6 + 4 * (t - 1):16 + 4 * (t - 1), 0] = 4
            backward[11:21, 6 + 4 * t:16 + 4 * t, 0] = -4
            flows[t - 1, t], flows[t, t - 1] = forward, backward
    return frames, flows


def test_lai_occlusion_mask_leaves_out_the_covered_background_and_the_motion_boundaries():
    from vfsr_eval.warping_error_metric import lai_occlusion

    _, flows = occluding_square_video(2)
    expected = np.zeros((32, 40), bool)
    expected[11:21, 16:20] = True  # background at t covered by the square at t+1: the flows disagree
    expected[11:21, 5] = expected[11:21, 15] = True  # forward differences across the square's left / right edge
    expected[10, 6:16] = expected[20, 6:16] = True  # ... and across its top / bottom edge
    assert (lai_occlusion(flows[0, 1], flows[1, 0]) == expected).all()


@pytest.mark.parametrize('forward, backward, occluded', [
    ((0, 0), (0.6, 0), False), ((0, 0), (0.8, 0), True),  # |F + B|^2 against 0.5 for still pixels
    ((10, 0), (-8.6, 0), False), ((10, 0), (-8.4, 0), True),  # ... plus 0.01 (|F|^2 + |B|^2): about 2.2
])
def test_lai_forward_backward_thresholds(forward, backward, occluded):
    from vfsr_eval.warping_error_metric import inconsistent_flow

    uniform = [np.broadcast_to(np.float32(flow), (4, 4, 2)).copy() for flow in (forward, backward)]
    assert inconsistent_flow(*uniform)[1, 1] == occluded


@pytest.mark.parametrize('step, boundary', [(0.04, False), (0.05, True)])  # step^2 against 0.002 on still flow
def test_lai_motion_boundary_threshold(step, boundary):
    from vfsr_eval.warping_error_metric import motion_boundaries

    flow = np.zeros((4, 4, 2), np.float32)
    flow[:, :, 0] = step * np.arange(4)[::-1]  # F(x) - F(x + 1) = step along x, 0 along y
    assert motion_boundaries(flow)[1, 1] == boundary


def test_warping_error_known_answer_with_an_occluding_object():
    from vfsr_eval.warping_error_metric import warping_error

    frames, flows = occluding_square_video(3, step=0.04)
    ids = {id(frame): t for t, frame in enumerate(frames)}

    def true_flow(source, target):
        return flows[ids[id(source)], ids[id(target)]]

    # Off the mask every pixel matches up to the brightness step: E = step^2 (up to 8-bit rounding).
    steps = [(frames[t + 1].astype(np.float64) - frames[t]) / 255 for t in range(2)]
    assert warping_error(frames, frames, true_flow) == pytest.approx(0.04 ** 2, rel=0.03)
    # Unmasked, the covered background counts too: E is the mean over every pixel of the true warp's residual.
    residuals = []
    for t in range(2):
        warped = np.roll(frames[t + 1], -4, axis=1).astype(np.float64) / 255  # the square's pixels, 4 px on
        moved = np.zeros((32, 40), bool)
        moved[11:21, 6 + 4 * t:16 + 4 * t] = True
        residual = np.where(moved[..., None], frames[t] / 255 - warped, -steps[t])
        residuals.append(np.square(residual).mean())
    unmasked = warping_error(frames, frames, true_flow, occlusion_mask='none')
    assert unmasked == pytest.approx(np.mean(residuals), rel=1e-5) and unmasked > 3 * 0.04 ** 2


def test_warping_error_masks_an_occluding_object_with_estimated_flow():
    frames, _ = occluding_square_video(4, step=0)
    frames = [cv2.resize(frame, (160, 128), interpolation=cv2.INTER_NEAREST) for frame in frames]
    masked = metric('calculate_warping_error', frames)
    unmasked = metric('calculate_warping_error', frames, occlusion_mask='none')
    assert masked < unmasked / 3
    with pytest.raises(ValueError, match="occlusion_mask 'fb' is not 'lai' or 'none'"):
        metric('calculate_warping_error', frames, occlusion_mask='fb')


def test_warping_error_with_gmflow_loads_its_weights_by_path(tmp_path):
    from vfsr_arch.gmflow_arch import GMFlow

    torch.manual_seed(0)
    torch.save({'model': GMFlow().state_dict()}, tmp_path / 'gmflow.pth')  # the released file's layout
    frames = [np.ascontiguousarray(frame[:64, :64]) for frame in warped_video(2)]
    error = metric('calculate_warping_error', frames, flow='gmflow', gmflow_weights_path=str(tmp_path / 'gmflow.pth'),
                   device='cpu')
    assert np.isfinite(error) and error >= 0
    with pytest.raises(FileNotFoundError, match=r'absent\.pth'):
        metric('calculate_warping_error', frames, flow='gmflow', gmflow_weights_path=str(tmp_path / 'absent.pth'))
    with pytest.raises(ClipInputError, match='multiples of 16'):
        metric('calculate_warping_error', [frame[:60] for frame in frames], flow='gmflow',
               gmflow_weights_path=str(tmp_path / 'gmflow.pth'))


# ----------------------------------------------------------------------------------------------------------------
# Scoring clips: bad input is one line naming the clip and frame
# ----------------------------------------------------------------------------------------------------------------
PSNR = {'psnr': dict(type='calculate_psnr', crop_border=0)}


def test_score_clip_averages_frame_metrics_and_runs_clip_metrics_once(face):
    metrics = dict(PSNR, warp=dict(type='calculate_warping_error'))
    frames = [face, noisy(face, 5), noisy(face, 10)]
    scores = score_clip(frames, [face] * 3, metrics, 'clip_a')
    assert scores.per_frame['psnr'][0] == float('inf') or scores.per_frame['psnr'][0] > 99
    assert scores.values['psnr'] == pytest.approx(np.mean(scores.per_frame['psnr']))
    assert 'warp' in scores.values and 'warp' not in scores.per_frame
    real = score_clip(frames, None, metrics, 'real_video')
    assert set(real.values) == {'warp'}, 'without ground truth only reference-free metrics are computed'


def test_score_clip_refuses_missing_frames_other_sizes_and_faceless_frames(face):
    with pytest.raises(ClipInputError, match=r'^clip_b: 2 restored frames but 3 ground-truth frames$'):
        score_clip([face] * 2, [face] * 3, PSNR, 'clip_b')
    with pytest.raises(ClipInputError, match=r'^clip_c: frame 1: restored size 64x64 differs from ground truth '):
        score_clip([face, face[:64, :64]], [face, face], PSNR, 'clip_c')
    blank = np.full((128, 128, 3), 128, np.uint8)
    with pytest.raises(ClipInputError, match=r'^clip_d: akd: frame 1: no face detected in the restored frame'):
        score_clip([face, blank], [face, face], {'akd': dict(type='calculate_akd', detection_scale=2)}, 'clip_d')


def test_clip_metrics_refuse_a_single_image(face):
    with pytest.raises(ClipInputError, match='scores whole clips'):
        metric('calculate_warping_error', face)


def test_metrics_file_of_validation_and_test_py_is_standard_json(tmp_path):
    from vfsr_eval.clip_scoring import ClipScores
    from vfsr_eval.metrics_file import write_metrics_file

    def refuse(name):
        raise ValueError(f'not standard JSON: {name}')

    clips = [ClipScores('a', {'psnr': float('inf'), 'sigma': float('nan')}, undefined={'psnr': 'identical frames'}),
             ClipScores('b', {'psnr': 30.0, 'sigma': 0.5})]
    record = json.loads(write_metrics_file(tmp_path, 'set', 100, clips).read_text(), parse_constant=refuse)
    assert record['clips'] == {'a': {'psnr': None, 'sigma': None}, 'b': {'psnr': 30.0, 'sigma': 0.5}}
    assert record['metrics'] == {'psnr': None, 'sigma': None} and record['std'] == {'psnr': None, 'sigma': None}
    assert record['undefined']['clips'] == {'a': {'psnr': 'identical frames', 'sigma': 'nan'}}
    assert record['undefined']['metrics']['psnr'] == '1 of 2 clips have no finite value (a: identical frames)'
