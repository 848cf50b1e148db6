"""Identity similarity (IDS, higher is better) and its temporal spread sigma_IDS (KEEP paper, Metrics).

IDS of a frame is the cosine similarity of the ArcFace embeddings of the restored and the ground-truth face;
a clip's IDS is the mean over its frames, sigma_IDS the (population) standard deviation over its frames.

ArcFace: facexlib's IR-SE50 (``recognition_arcface_ir_se50.pth``, published at
https://github.com/xinntao/facexlib/releases/download/v0.1.0/recognition_arcface_ir_se50.pth; the InsightFace_Pytorch
IR-SE50 model that BFVR-STC's evaluation also uses), 112x112 RGB input in [-1, 1], 512-d unit embedding. The face is
warped to the 112x112 ArcFace five-point template from its landmarks: ``face_crop: ffhq`` (default) takes the
FFHQ-template landmarks, right for aligned crops such as KEEP's 512x512 VFHQ-Test faces; ``face_crop: detect`` runs
the face detector (MTCNN by default, as BFVR-STC aligns) on each frame.
"""
from functools import lru_cache

import cv2
import numpy as np
import torch
from basicsr.utils.registry import METRIC_REGISTRY

from vfsr_data.face_landmarks import template_for_size
from vfsr_eval.clip_scoring import FrameError, clip_metric, require_clip
from vfsr_eval.face_keypoints import clip_landmarks
from vfsr_eval.metric_inputs import FrameResultCache, bgr_to_tensor, metric_device
from vfsr_io.checkpoint import load_network_weights

ARCFACE_URL = 'https://github.com/xinntao/facexlib/releases/download/v0.1.0/recognition_arcface_ir_se50.pth'
DEFAULT_ARCFACE_WEIGHTS = 'weights/facexlib/recognition_arcface_ir_se50.pth'
# InsightFace's 112x112 five-point template (same point order as ours).
ARCFACE_TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                                 [70.7299, 92.2041]], dtype=np.float32)
EMBEDDING_CACHE = FrameResultCache()


@lru_cache(maxsize=2)
def arcface_network(weights_path: str, device: torch.device) -> torch.nn.Module:
    from facexlib.recognition.arcface_arch import Backbone

    network = Backbone(num_layers=50, drop_ratio=0.6, mode='ir_se')
    load_network_weights(network, weights_path, wrapper_keys=(), published_at=ARCFACE_URL, what='ArcFace weights')
    return network.eval().requires_grad_(False).to(device)


def face_landmarks_for_identity(frame: np.ndarray, face_crop: str, role: str, detector_opts: dict) -> np.ndarray:
    if face_crop == 'ffhq':
        height, width = frame.shape[:2]
        if height != width:
            raise FrameError(f"face_crop 'ffhq' needs square FFHQ-aligned faces, the {role} frame is {width}x{height};"
                             " use face_crop: detect")
        return template_for_size(height)
    if face_crop == 'detect':
        return clip_landmarks([frame], role=role, **detector_opts)[0].astype(np.float32)
    raise ValueError(f"face_crop {face_crop!r} is not 'ffhq' or 'detect'")


def identity_embedding(frame: np.ndarray, role: str, arcface_weights_path: str = DEFAULT_ARCFACE_WEIGHTS,
                       face_crop: str = 'ffhq', device: str | None = None, **detector_opts) -> np.ndarray:
    """(512, ) unit ArcFace embedding of the face in an (H, W, 3) BGR uint8 frame."""
    device = metric_device(device)
    key = (str(arcface_weights_path), face_crop, str(device), tuple(sorted(detector_opts.items())))

    def embed(image: np.ndarray) -> np.ndarray:
        landmarks = face_landmarks_for_identity(image, face_crop, role, dict(detector_opts, device=device.type))
        matrix = cv2.estimateAffinePartial2D(landmarks, ARCFACE_TEMPLATE_112, method=cv2.LMEDS)[0]
        face = cv2.warpAffine(image, matrix, (112, 112), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        with torch.no_grad():
            return arcface_network(str(arcface_weights_path), device)(bgr_to_tensor([face], device))[0].cpu().numpy()

    return EMBEDDING_CACHE.get(key, frame, embed)


def identity_similarities(frames, references, **opts) -> np.ndarray:
    """(T, ) cosine similarity of each restored frame's embedding with its ground truth's."""
    values = []
    for index, (frame, reference) in enumerate(zip(frames, references)):
        try:
            restored = identity_embedding(frame, 'restored', **opts)
            truth = identity_embedding(reference, 'ground-truth', **opts)
        except FrameError as error:
            raise FrameError(error.reason, index) from None
        values.append(float(np.dot(restored, truth) / (np.linalg.norm(restored) * np.linalg.norm(truth))))
    return np.array(values)


@METRIC_REGISTRY.register()
def calculate_ids(img: np.ndarray, img2: np.ndarray, arcface_weights_path: str = DEFAULT_ARCFACE_WEIGHTS,
                  face_crop: str = 'ffhq', detector: str = 'mtcnn', detector_weights_dir: str = 'weights',
                  detection_scale: float = 1, device: str | None = None) -> float:
    """IDS of one (H, W, 3) BGR uint8 frame pair: cosine similarity of ArcFace embeddings, 1 for the same face.

    ``detector``, ``detector_weights_dir``, ``detection_scale`` apply with ``face_crop: detect`` (see
    :func:`vfsr_eval.face_keypoints.detect_landmarks`).
    """
    return float(identity_similarities([img], [img2], arcface_weights_path=arcface_weights_path, face_crop=face_crop,
                                       device=device, detector=detector, detector_weights_dir=detector_weights_dir,
                                       detection_scale=detection_scale)[0])


@METRIC_REGISTRY.register()
@clip_metric
def calculate_sigma_ids(img, img2, arcface_weights_path: str = DEFAULT_ARCFACE_WEIGHTS, face_crop: str = 'ffhq',
                        detector: str = 'mtcnn', detector_weights_dir: str = 'weights', detection_scale: float = 1,
                        device: str | None = None) -> float:
    """sigma_IDS of a clip: the standard deviation over its frames of the per-frame IDS (0 for a steady identity).

    ``img`` / ``img2``: lists of (H, W, 3) BGR uint8 frames. Same options as ``calculate_ids``.
    """
    require_clip(img, 'sigma_IDS')
    return float(np.std(identity_similarities(img, img2, arcface_weights_path=arcface_weights_path,
                                              face_crop=face_crop, device=device, detector=detector,
                                              detector_weights_dir=detector_weights_dir,
                                              detection_scale=detection_scale)))
