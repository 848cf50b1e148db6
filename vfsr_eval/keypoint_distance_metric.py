"""Average keypoint distance (AKD, lower is better) and its temporal spread sigma_AKD (KEEP paper, Metrics).

AKD of a frame is the mean over the landmarks of the Euclidean distance, in pixels of the frame, between the
landmarks detected on the restored face and on the ground-truth face; a clip's AKD is the mean over its frames,
sigma_AKD the (population) standard deviation over its frames. The detector is an option (``detector: mtcnn``, the
offline default, or ``retinaface``), and so is the point set (``landmarks: 5``, the detector's, or ``68``, from
facexlib's AWing FAN with ``alignment_weights_path``); figures from different detectors, point sets or image sizes
are not comparable (public AKD code uses MediaPipe's 478 points or FAN's 68; the KEEP paper does not say which).
"""
import numpy as np
from basicsr.utils.registry import METRIC_REGISTRY

from vfsr_eval.clip_scoring import clip_metric, require_clip
from vfsr_eval.face_keypoints import FAN_WEIGHTS, clip_landmarks


def keypoint_distances(frames, references, **detector_opts) -> np.ndarray:
    """(T, ) mean landmark distance of each restored frame to its ground truth, pixels."""
    restored = clip_landmarks(frames, role='restored', **detector_opts)
    truth = clip_landmarks(references, role='ground-truth', **detector_opts)
    return np.linalg.norm(restored - truth, axis=-1).mean(axis=-1)


@METRIC_REGISTRY.register()
def calculate_akd(img: np.ndarray, img2: np.ndarray, detector: str = 'mtcnn', detector_weights_dir: str = 'weights',
                  detection_scale: float = 1, device: str | None = None, landmarks: int = 5,
                  alignment_weights_path: str = FAN_WEIGHTS) -> float:
    """AKD of one (H, W, 3) BGR uint8 frame pair, pixels (0 for identical frames).

    Options: ``detector`` (``mtcnn`` or ``retinaface``), ``detector_weights_dir`` (RetinaFace's weights folder),
    ``detection_scale`` (enlarge small faces before detecting), ``device``, ``landmarks`` (5 or 68),
    ``alignment_weights_path`` (facexlib's ``alignment_WFLW_4HG.pth``, for 68 points).
    """
    return float(keypoint_distances([img], [img2], detector=detector, detector_weights_dir=detector_weights_dir,
                                    detection_scale=detection_scale, device=device, landmarks=landmarks,
                                    alignment_weights_path=alignment_weights_path)[0])


@METRIC_REGISTRY.register()
@clip_metric
def calculate_sigma_akd(img, img2, detector: str = 'mtcnn', detector_weights_dir: str = 'weights',
                        detection_scale: float = 1, device: str | None = None, landmarks: int = 5,
                        alignment_weights_path: str = FAN_WEIGHTS) -> float:
    """sigma_AKD of a clip: the standard deviation over its frames of the per-frame AKD, pixels.

    ``img`` / ``img2``: lists of (H, W, 3) BGR uint8 frames. Same options as ``calculate_akd``.
    """
    require_clip(img, 'sigma_AKD')
    return float(np.std(keypoint_distances(img, img2, detector=detector, detector_weights_dir=detector_weights_dir,
                                           detection_scale=detection_scale, device=device, landmarks=landmarks,
                                           alignment_weights_path=alignment_weights_path)))
