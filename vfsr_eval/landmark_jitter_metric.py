"""Landmark jitter (lower is better, no ground truth needed): how much the detected face landmarks shake from frame
to frame beyond smooth motion.

For landmarks l_t (five points, pixels) of frames t = 0..T-1, jitter is the mean over t = 1..T-2 and the points of
the length of the second difference ``l_{t-1} - 2 l_t + l_{t+1}`` (an acceleration: 0 for a still face and for a
face moving at constant speed), divided by the mean inter-ocular distance of the clip (eye points with 5 landmarks,
eye-contour centres with 68) and given in percent, so that clips of different resolution compare.
"""
import numpy as np
from basicsr.utils.registry import METRIC_REGISTRY

from vfsr_eval.clip_scoring import clip_metric, reference_free, require_clip
from vfsr_eval.face_keypoints import FAN_WEIGHTS, clip_landmarks


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, 2) centres of the eye on the image's left and right, from (T, 5, 2) or (T, 68, 2) landmarks."""
    if landmarks.shape[1] == 68:  # iBUG 300-W: points 36-41 and 42-47 outline the eyes
        return landmarks[:, 36:42].mean(axis=1), landmarks[:, 42:48].mean(axis=1)
    return landmarks[:, 0], landmarks[:, 1]


def landmark_jitter(landmarks: np.ndarray) -> float:
    """(T, 5 or 68, 2) landmarks, T >= 3 -> jitter in percent of the inter-ocular distance."""
    acceleration = landmarks[:-2] - 2 * landmarks[1:-1] + landmarks[2:]
    left_eye, right_eye = eye_centres(landmarks)
    interocular = np.linalg.norm(right_eye - left_eye, axis=-1).mean()
    return float(100 * np.linalg.norm(acceleration, axis=-1).mean() / interocular)


@METRIC_REGISTRY.register()
@reference_free
@clip_metric
def calculate_landmark_jitter(img, img2=None, detector: str = 'mtcnn', detector_weights_dir: str = 'weights',
                              detection_scale: float = 1, device: str | None = None, landmarks: int = 5,
                              alignment_weights_path: str = FAN_WEIGHTS) -> float:
    """Landmark jitter of a clip (``img``: list of (H, W, 3) BGR uint8 frames; ``img2`` is not used).

    Options as ``calculate_akd``.
    """
    require_clip(img, 'landmark jitter', min_frames=3)
    return landmark_jitter(clip_landmarks(img, detector=detector, detector_weights_dir=detector_weights_dir,
                                          detection_scale=detection_scale, device=device, landmarks=landmarks,
                                          alignment_weights_path=alignment_weights_path))
