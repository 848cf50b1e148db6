"""Landmark jitter (lower is better, no ground truth needed): how much the detected face landmarks shake from frame
to frame beyond smooth motion.

For landmarks l_t (five points, pixels) of frames t = 0..T-1, jitter is the mean over t = 1..T-2 and the points of
the length of the second difference ``l_{t-1} - 2 l_t + l_{t+1}`` (an acceleration: 0 for a still face and for a
face moving at constant speed), divided by the mean inter-ocular distance of the clip and given in percent, so that
clips of different resolution compare.
"""
import numpy as np
from basicsr.utils.registry import METRIC_REGISTRY

from vfsr_eval.clip_scoring import clip_metric, reference_free, require_clip
from vfsr_eval.face_keypoints import clip_landmarks


def landmark_jitter(landmarks: np.ndarray) -> float:
    """(T, 5, 2) landmarks, T >= 3 -> jitter in percent of the inter-ocular distance."""
    acceleration = landmarks[:-2] - 2 * landmarks[1:-1] + landmarks[2:]
    interocular = np.linalg.norm(landmarks[:, 1] - landmarks[:, 0], axis=-1).mean()
    return float(100 * np.linalg.norm(acceleration, axis=-1).mean() / interocular)


@METRIC_REGISTRY.register()
@reference_free
@clip_metric
def calculate_landmark_jitter(img, img2=None, detector: str = 'mtcnn', detector_weights_dir: str = 'weights',
                              detection_scale: float = 1, device: str | None = None) -> float:
    """Landmark jitter of a clip (``img``: list of (H, W, 3) BGR uint8 frames; ``img2`` is not used).

    Options as ``calculate_akd``.
    """
    require_clip(img, 'landmark jitter', min_frames=3)
    return landmark_jitter(clip_landmarks(img, detector=detector, detector_weights_dir=detector_weights_dir,
                                          detection_scale=detection_scale, device=device))
