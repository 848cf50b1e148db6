"""Flow warping error (Lai et al., ECCV 2018; lower is better, no ground truth needed): how much a video changes
between frames beyond what its motion explains, i.e. flicker.

For frames V_0..V_{T-1} (RGB in [0, 1]) and the optical flow F_t from frame t to frame t+1, frame t+1 is warped back
onto frame t, ``W_t(x) = V_{t+1}(x + F_t(x))`` (bilinear, coordinates clamped to the frame), and

    E_warp = 1 / (T - 1) * sum_t  sum_x M_t(x) ||V_t(x) - W_t(x)||^2 / (3 * sum_x M_t(x))

``occlusion_mask: lai`` (default): M_t is Lai et al.'s non-occlusion mask, as their evaluation code computes it
(``compute_flow_occlusion.py`` and ``utils.detect_occlusion`` of phoenix104104/fast_blind_video_consistency): a pixel
is dropped where forward and backward flow disagree (Ruder et al. 2016), with B_t the flow from frame t+1 to frame t
and ``B_w(x) = B_t(x + F_t(x))``,

    |F_t + B_w|^2 > 0.01 (|F_t|^2 + |B_w|^2) + 0.5,

or on a motion boundary, with the forward differences of F_t (``F(x) - F(x + 1)`` along x and y, 0 on the last
column / row),

    |dF/dx|^2 + |dF/dy|^2 > 0.01 |F_t|^2 + 0.002.

As in their code, pixels whose match falls outside the frame are kept (their warping clamps to the border), and a
frame pair with every pixel masked adds 0. ``occlusion_mask: none`` scores every pixel (M_t = 1), the form without
the mask; its figures are not comparable with papers that use Lai et al.'s code. Lai et al. estimate the flow on the
input video; with no input (real restored videos) we estimate it on the evaluated video itself (``flow_source:
self``), or on the ground truth when there is one (``flow_source: reference``).

Flow: OpenCV's DIS optical flow (``flow: dis``, medium preset, no weights), or GMFlow (``flow: gmflow`` with
``gmflow_weights_path``, the official ``gmflow_sintel-0c07dcb3.pth``; frame sides must be multiples of 16).
"""
from functools import lru_cache

import cv2
import numpy as np
import torch
from basicsr.utils.registry import METRIC_REGISTRY

from vfsr_eval.clip_scoring import ClipInputError, clip_metric, reference_free, require_clip
from vfsr_eval.metric_inputs import bgr_to_tensor, metric_device


def dis_flow(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(H, W, 2) float32 flow (dx, dy) from BGR uint8 ``source`` to ``target``: source(x) ~ target(x + flow)."""
    gray = [cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) for image in (source, target)]
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(gray[0], gray[1], None)


@lru_cache(maxsize=2)
def gmflow_estimator(weights_path: str, device: torch.device):
    from vfsr_arch.keep_arch import GMFlowEstimator

    return GMFlowEstimator(weights_path).to(device)


def gmflow_flow(source: np.ndarray, target: np.ndarray, weights_path: str, device: str | None) -> np.ndarray:
    device = metric_device(device)
    height, width = source.shape[:2]
    if height % 16 or width % 16:
        raise ClipInputError(f'flow gmflow needs frame sides that are multiples of 16, got {width}x{height}')
    flow = gmflow_estimator(weights_path, device)(bgr_to_tensor([source], device), bgr_to_tensor([target], device))
    return flow[0].permute(1, 2, 0).cpu().numpy()


def sample(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``image(x + flow(x))`` bilinearly, coordinates clamped to the image."""
    height, width = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return cv2.remap(image, grid_x + flow[..., 0], grid_y + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def inconsistent_flow(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """(H, W) bool: where the backward flow at the forward match does not undo the forward flow (Lai's thresholds)."""
    backward_at_match = sample(backward, forward)
    mismatch = np.square(forward + backward_at_match).sum(-1)
    magnitude = np.square(forward).sum(-1) + np.square(backward_at_match).sum(-1)
    return mismatch > 0.01 * magnitude + 0.5


def motion_boundaries(flow: np.ndarray) -> np.ndarray:
    """(H, W) bool: where the flow changes fast, by forward differences (Lai's thresholds)."""
    along_x, along_y = np.zeros_like(flow), np.zeros_like(flow)
    along_x[:, :-1] = flow[:, :-1] - flow[:, 1:]
    along_y[:-1] = flow[:-1] - flow[1:]
    gradient = np.square(along_x).sum(-1) + np.square(along_y).sum(-1)
    return gradient > 0.01 * np.square(flow).sum(-1) + 0.002


def lai_occlusion(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels Lai et al.'s warping error leaves out (occluded or on a motion boundary)."""
    return inconsistent_flow(forward, backward) | motion_boundaries(forward)


OCCLUSION_MASKS = ('lai', 'none')


def warping_error(frames, flow_frames, flow_fn, occlusion_mask: str = 'lai') -> float:
    """E_warp of ``frames`` (BGR uint8), with the flows estimated by ``flow_fn`` on ``flow_frames``."""
    errors = []
    for t in range(len(frames) - 1):
        forward = flow_fn(flow_frames[t], flow_frames[t + 1])
        current = frames[t].astype(np.float32) / 255
        warped = sample(frames[t + 1].astype(np.float32) / 255, forward)
        squared = np.square(current - warped).mean(-1)
        if occlusion_mask == 'lai':
            kept = ~lai_occlusion(forward, flow_fn(flow_frames[t + 1], flow_frames[t]))
            errors.append(float(squared[kept].sum() / max(kept.sum(), 1)))
        else:
            errors.append(float(squared.mean()))
    return float(np.mean(errors))


@METRIC_REGISTRY.register()
@reference_free
@clip_metric
def calculate_warping_error(img, img2=None, flow: str = 'dis', flow_source: str = 'self',
                            gmflow_weights_path: str = 'weights/GMFlow/gmflow_sintel-0c07dcb3.pth',
                            device: str | None = None, occlusion_mask: str = 'lai') -> float:
    """Flow warping error of a clip (``img``: list of (H, W, 3) BGR uint8 frames; ``img2``: its ground truth or
    None). Options: ``flow`` ``dis`` (default) or ``gmflow``; ``flow_source`` ``self`` or ``reference``;
    ``occlusion_mask`` ``lai`` (default) or ``none``."""
    require_clip(img, 'warping error', min_frames=2)
    if flow == 'dis':
        def flow_fn(source, target):
            return dis_flow(source, target)
    elif flow == 'gmflow':
        def flow_fn(source, target):
            return gmflow_flow(source, target, gmflow_weights_path, device)
    else:
        raise ValueError(f"warping error: flow {flow!r} is not 'dis' or 'gmflow'")
    if occlusion_mask not in OCCLUSION_MASKS:
        raise ValueError(f"warping error: occlusion_mask {occlusion_mask!r} is not 'lai' or 'none'")
    if flow_source not in ('self', 'reference'):
        raise ValueError(f"warping error: flow_source {flow_source!r} is not 'self' or 'reference'")
    if flow_source == 'reference' and img2 is None:
        raise ClipInputError("warping error: flow_source 'reference' needs ground-truth frames")
    return warping_error(img, img2 if flow_source == 'reference' else img, flow_fn, occlusion_mask)
