"""Five face landmarks per frame for the landmark metrics (AKD, sigma_AKD, landmark jitter) and for IDS's
``face_crop: detect``, from the face detector of ``vfsr_restore`` (``mtcnn``: offline, weights ship with
facenet-pytorch; ``retinaface``: facexlib's, ``detection_Resnet50_Final.pth`` under ``detector_weights_dir``).

Points, in order: eye on the image's left, eye on the image's right, nose tip, mouth corners (image left, right),
in pixels of the frame. When a frame has several faces, the largest box is the face (aligned test crops hold one).
"""
from functools import lru_cache

import cv2
import numpy as np

from vfsr_eval.clip_scoring import FrameError
from vfsr_eval.metric_inputs import FrameResultCache, metric_device

LANDMARK_CACHE = FrameResultCache()


@lru_cache(maxsize=4)
def face_detector(name: str, weights_dir: str, device: str):
    from vfsr_restore.face_detection import build_face_detector

    return build_face_detector(name, weights_dir=weights_dir, device=device)


def detect_landmarks(frames, detector: str = 'mtcnn', detector_weights_dir: str = 'weights',
                     detection_scale: float = 1, device: str | None = None) -> list[np.ndarray | None]:
    """(5, 2) float32 landmarks of the largest face in each (H, W, 3) BGR uint8 frame (None: no face), frames not
    seen before detected in one batch.

    ``detection_scale`` enlarges the frames before detection (small crops, such as 128x96 TUFs faces, are below
    what MTCNN finds well); the points are given back in the frame's own pixels.
    """
    key = (detector, str(detector_weights_dir), float(detection_scale), str(metric_device(device)))
    results = [LANDMARK_CACHE.lookup(key, frame) for frame in frames]
    unseen = [index for index, result in enumerate(results) if result is LANDMARK_CACHE.MISSING]
    if unseen:
        images = [frames[index] for index in unseen]
        if detection_scale != 1:
            images = [cv2.resize(image, None, fx=detection_scale, fy=detection_scale, interpolation=cv2.INTER_CUBIC)
                      for image in images]
        found = face_detector(*key[:2], key[3]).detect([np.ascontiguousarray(image[..., ::-1]) for image in images])
        for index, faces in zip(unseen, found):
            landmarks = None
            if faces:
                largest = max(faces, key=lambda face: (face.box[2] - face.box[0]) * (face.box[3] - face.box[1]))
                landmarks = largest.landmarks / detection_scale
            results[index] = LANDMARK_CACHE.store(key, frames[index], landmarks)
    return results


def clip_landmarks(frames, role: str = 'restored', **detector_opts) -> np.ndarray:
    """(T, 5, 2) float64 landmarks of every frame of a clip; a frame with no face is an error naming it
    (``role`` names the frames in it)."""
    points = detect_landmarks(frames, **detector_opts)
    detector = detector_opts.get('detector', 'mtcnn')
    for index, landmarks in enumerate(points):
        if landmarks is None:
            raise FrameError(f'no face detected in the {role} frame (detector {detector})', index)
    return np.stack(points).astype(np.float64)
