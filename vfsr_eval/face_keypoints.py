"""Face landmarks per frame for the landmark metrics (AKD, sigma_AKD, landmark jitter) and for IDS's
``face_crop: detect``, from the face detector of ``vfsr_restore`` (``mtcnn``: offline, weights ship with
facenet-pytorch; ``retinaface``: facexlib's, ``detection_Resnet50_Final.pth`` under ``detector_weights_dir``).

Points (``landmarks: 5``, default), in order: eye on the image's left, eye on the image's right, nose tip, mouth
corners (image left, right), in pixels of the frame. ``landmarks: 68`` gives the 68 points of the iBUG/300-W
scheme: the detector's face box, cropped square (1.2x its longer side) to 256x256, goes through facexlib's AWing FAN
(98 WFLW heatmaps, ``alignment_WFLW_4HG.pth`` at ``alignment_weights_path``), decoded by :func:`heatmap_peaks` and
converted to 68 points by facexlib's ``landmark_98_to_68``. When a frame has several faces, the largest box is the
face (aligned test crops hold one).
"""
from functools import lru_cache

import cv2
import numpy as np

from vfsr_eval.clip_scoring import FrameError
from vfsr_eval.metric_inputs import FrameResultCache, metric_device
from vfsr_io.checkpoint import load_network_weights

LANDMARK_CACHE = FrameResultCache()
FAN_WEIGHTS = 'weights/facexlib/alignment_WFLW_4HG.pth'
FAN_URL = 'https://github.com/xinntao/facexlib/releases/download/v0.1.0/alignment_WFLW_4HG.pth'
FAN_INPUT = 256  # the AWing FAN's input side
FAN_CROP_SCALE = 1.2  # crop side / longer side of the face box


@lru_cache(maxsize=4)
def face_detector(name: str, weights_dir: str, device: str):
    from vfsr_face.detection import build_face_detector

    return build_face_detector(name, weights_dir=weights_dir, device=device)


@lru_cache(maxsize=2)
def fan_network(weights_path: str, device: str):
    from facexlib.alignment.awing_arch import FAN

    network = FAN(num_modules=4, num_landmarks=98, device=device)
    load_network_weights(network, weights_path, wrapper_keys=('state_dict', ), published_at=FAN_URL,
                         what='AWing FAN (68-point landmarks) weights')
    return network.eval().requires_grad_(False).to(device)


def heatmap_peaks(heatmaps: np.ndarray) -> np.ndarray:
    """(N, h, w) heatmaps -> (N, 2) x, y of each maximum, moved a quarter pixel towards the higher neighbour (the
    usual FAN decoding; ours, because facexlib's indexes past the map when a maximum lies on its last pixel)."""
    count, height, width = heatmaps.shape
    y, x = np.unravel_index(heatmaps.reshape(count, -1).argmax(axis=1), (height, width))
    rows = np.arange(count)
    step_x = heatmaps[rows, y, np.minimum(x + 1, width - 1)] - heatmaps[rows, y, np.maximum(x - 1, 0)]
    step_y = heatmaps[rows, np.minimum(y + 1, height - 1), x] - heatmaps[rows, np.maximum(y - 1, 0), x]
    return np.stack([x + 0.25 * np.sign(step_x), y + 0.25 * np.sign(step_y)], axis=1)


def landmarks_68(image: np.ndarray, box: np.ndarray, weights_path: str, device: str) -> np.ndarray:
    """(68, 2) landmarks of the face in ``box`` of an (H, W, 3) BGR uint8 image, in its pixels."""
    import torch
    from facexlib.alignment import landmark_98_to_68

    side = FAN_CROP_SCALE * float(max(box[2] - box[0], box[3] - box[1]))
    origin = (box[:2] + box[2:]) / 2 - side / 2
    scale = FAN_INPUT / side
    matrix = np.array([[scale, 0, -origin[0] * scale], [0, scale, -origin[1] * scale]])
    crop = cv2.warpAffine(image, matrix, (FAN_INPUT, FAN_INPUT), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    rgb = torch.from_numpy(np.ascontiguousarray(crop[..., ::-1].transpose(2, 0, 1))).float().div(255)
    with torch.no_grad():
        outputs, _ = fan_network(weights_path, device)(rgb[None].to(device))
    heatmaps = outputs[-1][0, :-1].cpu().numpy()  # 98 landmark maps; the last channel is the boundary map
    points = landmark_98_to_68(heatmap_peaks(heatmaps) * (FAN_INPUT / heatmaps.shape[-1]))
    return (points / scale + origin).astype(np.float32)


def detect_landmarks(frames, detector: str = 'mtcnn', detector_weights_dir: str = 'weights',
                     detection_scale: float = 1, device: str | None = None, landmarks: int = 5,
                     alignment_weights_path: str = FAN_WEIGHTS) -> list[np.ndarray | None]:
    """(5, 2) (or with ``landmarks: 68``, (68, 2)) float32 landmarks of the largest face in each (H, W, 3) BGR
    uint8 frame (None: no face), frames not seen before detected in one batch.

    ``detection_scale`` enlarges the frames before detection (small crops, such as 128x96 TUFs faces, are below
    what MTCNN finds well); the points are given back in the frame's own pixels.
    """
    if landmarks not in (5, 68):
        raise ValueError(f'landmarks must be 5 or 68, got {landmarks!r}')
    key = (detector, str(detector_weights_dir), float(detection_scale), str(metric_device(device)), landmarks,
           str(alignment_weights_path))
    results = [LANDMARK_CACHE.lookup(key, frame) for frame in frames]
    unseen = [index for index, result in enumerate(results) if result is LANDMARK_CACHE.MISSING]
    if unseen:
        images = [frames[index] for index in unseen]
        if detection_scale != 1:
            images = [cv2.resize(image, None, fx=detection_scale, fy=detection_scale, interpolation=cv2.INTER_CUBIC)
                      for image in images]
        found = face_detector(*key[:2], key[3]).detect([np.ascontiguousarray(image[..., ::-1]) for image in images])
        for index, faces in zip(unseen, found):
            points = None
            if faces:
                largest = max(faces, key=lambda face: (face.box[2] - face.box[0]) * (face.box[3] - face.box[1]))
                points = largest.landmarks / detection_scale
                if landmarks == 68:
                    points = landmarks_68(frames[index], largest.box / detection_scale, str(alignment_weights_path),
                                          key[3])
            results[index] = LANDMARK_CACHE.store(key, frames[index], points)
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
