"""Face detection on a real photograph: MTCNN (weights shipped in its wheel) finds the astronaut's face with its
five landmarks; RetinaFace without its weights file is a clear error naming the file."""
import vfsr_compat  # noqa: F401  (before facexlib)

import numpy as np
import pytest
import skimage.data
import torch

from vfsr_face.astronaut import ASTRONAUT_LANDMARKS
from vfsr_face.detection import DetectedFace, build_face_detector
from vfsr_io.checkpoint import CheckpointError, MissingCheckpointError


@pytest.fixture(scope='module')
def mtcnn():
    return build_face_detector('mtcnn')


def test_mtcnn_finds_the_astronaut_with_landmarks_on_eyes_nose_mouth(mtcnn):
    photo = skimage.data.astronaut()
    mirrored = np.ascontiguousarray(photo[:, ::-1])
    blank = np.full((96, 128, 3), 90, np.uint8)
    faces, mirrored_faces, blank_faces = mtcnn.detect([photo, mirrored, blank])

    assert len(faces) == 1 and isinstance(faces[0], DetectedFace)
    face = faces[0]
    assert face.box.shape == (4,) and face.landmarks.shape == (5, 2) and face.score > 0.95
    assert face.box.dtype == np.float32 and face.landmarks.dtype == np.float32
    # Every point within 4 px of the hand-measured landmarks (eye distance is 43 px), inside the box.
    assert np.abs(face.landmarks - ASTRONAUT_LANDMARKS).max() < 4
    assert (face.landmarks >= face.box[:2]).all() and (face.landmarks <= face.box[2:]).all()

    # Mirrored photo: the same face, and the order stays "as seen in the image" (left eye has the smaller x).
    assert len(mirrored_faces) == 1
    expected = ASTRONAUT_LANDMARKS.copy()
    expected[:, 0] = photo.shape[1] - 1 - expected[:, 0]
    expected = expected[[1, 0, 2, 4, 3]]
    assert np.abs(mirrored_faces[0].landmarks - expected).max() < 5
    assert blank_faces == []


def test_detect_rejects_non_rgb_uint8(mtcnn):
    with pytest.raises(ValueError, match='RGB uint8'):
        mtcnn.detect([np.zeros((32, 32), np.uint8)])


def test_retinaface_weights_errors_are_one_line_naming_the_file(tmp_path):
    with pytest.raises(MissingCheckpointError, match='detection_Resnet50_Final.pth.*file not found.*facexlib/releases'):
        build_face_detector('retinaface', weights_dir=tmp_path)
    weights = tmp_path / 'detection_Resnet50_Final.pth'
    weights.write_bytes(b'not a checkpoint')
    with pytest.raises(CheckpointError, match='RetinaFace weights .*not a PyTorch checkpoint'):
        build_face_detector('retinaface', weights_dir=tmp_path)
    torch.save({'conv.weight': torch.zeros(1)}, weights)
    with pytest.raises(CheckpointError, match='a checkpoint of a different network, not RetinaFace'):
        build_face_detector('retinaface', weights_dir=tmp_path)


def test_unknown_detector_is_named():
    with pytest.raises(ValueError, match="unknown face detector 'yolo'"):
        build_face_detector('yolo')


def test_mtcnn_stage_nets_see_power_of_two_batches_with_unchanged_rows(mtcnn):
    """R- and O-net run on batches padded to a power of two (a few shapes instead of one per candidate count, so
    the CPU backend's per-shape caches stop growing over a video); the real rows are what the net gives alone."""
    rnet = mtcnn.nets[1]
    candidates = torch.rand(5, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        padded = rnet(candidates)
        alone = rnet.net(candidates)
    assert [tuple(output.shape) for output in padded] == [tuple(output.shape) for output in alone] == [(5, 4), (5, 2)]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(padded, alone))
