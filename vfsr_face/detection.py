"""Face detection for whole video frames: a box and five landmarks per face, batched over frames.

Two backends, chosen by name with :func:`build_face_detector`:

- ``mtcnn``: facenet-pytorch's MTCNN (P-, R-, O-net). Its pip wheel ships the weights
  (``facenet_pytorch/data/{pnet,rnet,onet}.pt``), so it works with no download at all. facenet-pytorch pins an old
  torch in its metadata, so it is installed with ``pip install --no-deps facenet-pytorch==2.6.0`` (``make install``
  does so); we build its networks without weights and load the shipped state_dicts ourselves, ``weights_only=True``.
- ``retinaface``: facexlib's RetinaFace ResNet-50 (more accurate on small and side faces), weights
  ``detection_Resnet50_Final.pth`` read from ``weights_dir`` (never downloaded).

Landmark order, both backends: eye on the image's left, eye on the image's right, nose tip, mouth corner on the
image's left, mouth corner on the image's right (the order of the FFHQ template in ``vfsr_data.face_landmarks``).
"""
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import vfsr_compat  # noqa: F401  (facexlib repairs and offline weights, before facexlib is imported)

import numpy as np
import torch

from vfsr_io.checkpoint import load_network_weights

FACENET_INSTALL = 'pip install --no-deps facenet-pytorch==2.6.0'
RETINAFACE_WEIGHTS = 'detection_Resnet50_Final.pth'
RETINAFACE_RELEASE = f'https://github.com/xinntao/facexlib/releases/download/v0.1.0/{RETINAFACE_WEIGHTS}'


@dataclass
class DetectedFace:
    """One face in one frame: ``box`` (4,) float32 x0, y0, x1, y1 in pixels; ``landmarks`` (5, 2) float32 pixels
    (left eye, right eye, nose, left mouth corner, right mouth corner, as seen in the image); detector ``score``."""

    box: np.ndarray
    landmarks: np.ndarray
    score: float

    @property
    def size(self) -> float:
        """The shorter side of the box in pixels."""
        return float(min(self.box[2] - self.box[0], self.box[3] - self.box[1]))


class FaceDetector:
    """Base of the detectors: ``detect`` takes RGB uint8 (H, W, 3) frames and gives the faces of each frame.

    Frames of one size are detected in batches of ``batch_size``; a batch of mixed sizes is split by size.
    """

    def __init__(self, device: str | torch.device = 'cpu', batch_size: int = 8, min_score: float = 0.9):
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.min_score = min_score

    def detect(self, images: Sequence[np.ndarray]) -> list[list[DetectedFace]]:
        """Faces of each RGB uint8 (H, W, 3) image, best score first."""
        results: list[list[DetectedFace] | None] = [None] * len(images)
        by_size: dict[tuple[int, ...], list[int]] = {}
        for index, image in enumerate(images):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f'face detection takes RGB uint8 (H, W, 3) images, got {image.dtype} {image.shape}')
            by_size.setdefault(image.shape, []).append(index)
        for indices in by_size.values():
            for start in range(0, len(indices), self.batch_size):
                batch = indices[start:start + self.batch_size]
                with torch.no_grad():
                    faces = self.detect_batch(np.stack([images[i] for i in batch]))
                for index, frame_faces in zip(batch, faces):
                    frame_faces = [face for face in frame_faces if face.score >= self.min_score]
                    results[index] = sorted(frame_faces, key=lambda face: -face.score)
        return results

    def detect_batch(self, images: np.ndarray) -> list[list[DetectedFace]]:
        """Faces of each image of a (N, H, W, 3) RGB uint8 batch (no score filtering)."""
        raise NotImplementedError

    def search_down_to(self, pixels: float) -> None:
        """Faces smaller than ``pixels`` need not be found (a detector may then skip work)."""


class PowerOfTwoBatch(torch.nn.Module):
    """Run ``net`` on its input batch padded with zeros to the next power of two, and return the real rows.

    MTCNN's R- and O-net see a different number of candidate boxes on every frame; the CPU backend (oneDNN) builds
    and caches a convolution primitive, with its buffers, per batch size, so on a long video the process kept
    growing (about 0.2 MB per frame of 320x180, measured). Rounding the batch up leaves a dozen sizes at most."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, batch: torch.Tensor):
        count = batch.shape[0]
        padded_count = 1 << max(0, count - 1).bit_length()
        if padded_count != count:
            batch = torch.cat([batch, batch.new_zeros(padded_count - count, *batch.shape[1:])])
        return tuple(output[:count] for output in self.net(batch))


class MTCNNDetector(FaceDetector):
    """facenet-pytorch's MTCNN with the weights its wheel ships. ``min_face_size``: the smallest face searched for
    (pixels; smaller values add pyramid levels and time)."""

    def __init__(self, device='cpu', batch_size: int = 8, min_score: float = 0.9, min_face_size: int = 20):
        super().__init__(device, batch_size, min_score)
        if importlib.util.find_spec('facenet_pytorch') is None:
            raise ModuleNotFoundError(f"face detector 'mtcnn' needs facenet-pytorch, not installed; install it "
                                      f'without its old torch pin: {FACENET_INSTALL}')
        from facenet_pytorch.models.mtcnn import ONet, PNet, RNet
        from facenet_pytorch.models.utils.detect_face import detect_face

        self._detect_face = detect_face
        data_dir = Path(importlib.util.find_spec('facenet_pytorch').submodule_search_locations[0]) / 'data'
        self.nets = []
        for name, net_class in (('pnet', PNet), ('rnet', RNet), ('onet', ONet)):
            net = net_class(pretrained=False)
            load_network_weights(net, data_dir / f'{name}.pt', wrapper_keys=(), what=f'MTCNN {name} weights',
                                 published_at=f'the facenet-pytorch wheel ({FACENET_INSTALL})')
            self.nets.append(net.eval().to(self.device))
        self.nets[1:] = [PowerOfTwoBatch(net) for net in self.nets[1:]]
        self.min_face_size = min_face_size
        # facenet-pytorch's defaults: stage thresholds and pyramid factor.
        self.thresholds = (0.6, 0.7, 0.7)
        self.factor = 0.709

    def search_down_to(self, pixels):
        self.min_face_size = max(12, round(pixels))  # MTCNN's smallest detectable face is 12 pixels

    def detect_batch(self, images):
        if min(images.shape[1:3]) < self.min_face_size:  # no pyramid level fits: no face can be found
            return [[] for _ in images]
        boxes, points = self._detect_face(images, self.min_face_size, *self.nets, self.thresholds, self.factor,
                                          self.device)
        return [[DetectedFace(box=np.asarray(box[:4], dtype=np.float32),
                              landmarks=np.asarray(landmarks, dtype=np.float32).reshape(5, 2), score=float(box[4]))
                 for box, landmarks in zip(frame_boxes, frame_points)]
                for frame_boxes, frame_points in zip(boxes, points)]


class RetinaFaceDetector(FaceDetector):
    """facexlib's RetinaFace (ResNet-50), weights ``detection_Resnet50_Final.pth`` in ``weights_dir``."""

    def __init__(self, weights_dir='weights', device='cpu', batch_size: int = 8, min_score: float = 0.9):
        super().__init__(device, batch_size, min_score)
        from facexlib.detection.retinaface import RetinaFace

        # Built here rather than by facexlib's init_detection_model so that the file goes through vfsr's loader:
        # a wrong or unsafe file is one line saying what it is, never PyTorch's raw error.
        weights = detector_weights('retinaface', weights_dir)
        self.net = RetinaFace(network_name='resnet50', half=False, device=self.device)
        load_network_weights(self.net, weights, wrapper_keys=(), what='RetinaFace weights',
                             published_at=f'{RETINAFACE_RELEASE} (put it in {weights.parent})')
        self.net.eval().to(self.device)

    def detect_batch(self, images):
        bgr = torch.from_numpy(np.ascontiguousarray(images[..., ::-1])).float().to(self.device)
        boxes, landmarks = self.net.batched_detect_faces(bgr, conf_threshold=self.min_score)
        return [[DetectedFace(box=np.asarray(box[:4], dtype=np.float32),
                              landmarks=np.asarray(points, dtype=np.float32).reshape(5, 2), score=float(box[4]))
                 for box, points in zip(frame_boxes, frame_points)]
                for frame_boxes, frame_points in zip(boxes, landmarks)]


def detector_weights(name: str, weights_dir='weights') -> Path | None:
    """The weights file detector ``name`` reads: RetinaFace's in ``weights_dir``/facexlib (or ``weights_dir``);
    None for MTCNN, whose weights ship inside facenet-pytorch."""
    if name != 'retinaface':
        return None
    weights_dir = Path(weights_dir)
    return (weights_dir / 'facexlib' if (weights_dir / 'facexlib').is_dir() else weights_dir) / RETINAFACE_WEIGHTS


def build_face_detector(name: str = 'mtcnn', weights_dir='weights', device='cpu', **kwargs) -> FaceDetector:
    """The detector called ``name`` (``mtcnn`` or ``retinaface``) on ``device``; ``kwargs`` go to its constructor
    (``batch_size``, ``min_score``; ``min_face_size`` for MTCNN)."""
    if name == 'mtcnn':
        return MTCNNDetector(device=device, **kwargs)
    if name == 'retinaface':
        return RetinaFaceDetector(weights_dir=weights_dir, device=device, **kwargs)
    raise ValueError(f"unknown face detector {name!r}; choose 'mtcnn' (no download) or 'retinaface'")
