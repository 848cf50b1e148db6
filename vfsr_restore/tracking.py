"""Face tracks across frames: stable ids from box overlap and landmarks, face selection, scene-cut detection.

:class:`FaceTracker` links each frame's detections to the open tracks (greedy by overlap, IoU plus a landmark
term so that two overlapping faces keep their own ids), opens a track for every unmatched face at least
``min_face_size`` pixels tall/wide, and closes a track once it has been missing for more than ``max_gap`` frames
in a row (a gap of ``max_gap`` missed frames keeps the id, as :class:`~vfsr_restore.face_plan.FacePlanner` bridges
it). Ids count up over the whole video and are never reused. A scene cut (:class:`SceneCutDetector`) closes
every track at once.
"""
from dataclasses import dataclass

import cv2
import numpy as np

from vfsr_face.detection import DetectedFace


def box_iou(box_a: np.ndarray, box_b: np.ndarray) -> float:
    """Intersection over union of two x0, y0, x1, y1 boxes."""
    width = min(box_a[2], box_b[2]) - max(box_a[0], box_b[0])
    height = min(box_a[3], box_b[3]) - max(box_a[1], box_b[1])
    if width <= 0 or height <= 0:
        return 0.0
    intersection = width * height
    area = (box_a[2] - box_a[0]) * (box_a[3] - box_a[1]) + (box_b[2] - box_b[0]) * (box_b[3] - box_b[1])
    return float(intersection / (area - intersection))


@dataclass
class Track:
    """An open track: its id, the last face seen and when, and the frame it started."""
    id: int
    face: DetectedFace
    first_frame: int
    last_frame: int


class FaceTracker:
    """Link detections into tracks. ``update`` returns {track id: face} for one frame."""

    def __init__(self, min_face_size: float = 0.0, max_gap: int = 5, min_iou: float = 0.2):
        self.min_face_size = min_face_size
        self.max_gap = max_gap
        self.min_iou = min_iou
        self.tracks: dict[int, Track] = {}
        self.next_id = 1

    def reset(self) -> None:
        """Close every track (scene cut); ids keep counting."""
        self.tracks = {}

    def state(self) -> dict:
        """The open tracks and the next id, as plain JSON values (saved between resumable segments)."""
        return {'next_id': self.next_id, 'tracks': [
            {'id': track.id, 'box': track.face.box.tolist(), 'landmarks': track.face.landmarks.tolist(),
             'score': track.face.score, 'first_frame': track.first_frame, 'last_frame': track.last_frame}
            for track in self.tracks.values()]}

    def load_state(self, state: dict) -> None:
        """Continue from :meth:`state`."""
        self.next_id = state['next_id']
        self.tracks = {item['id']: Track(item['id'], DetectedFace(np.array(item['box'], np.float32),
                                                                   np.array(item['landmarks'], np.float32),
                                                                   item['score']),
                                         item['first_frame'], item['last_frame']) for item in state['tracks']}

    def update(self, frame_index: int, faces: list[DetectedFace]) -> dict[int, DetectedFace]:
        closed = [tid for tid, track in self.tracks.items() if frame_index - track.last_frame > self.max_gap + 1]
        for track_id in closed:
            del self.tracks[track_id]
        pairs = []
        for track in self.tracks.values():
            for face_index, face in enumerate(faces):
                similarity = self._similarity(track.face, face)
                if similarity > 0:
                    pairs.append((similarity, track.id, face_index))
        assigned: dict[int, DetectedFace] = {}
        used_faces = set()
        for _, track_id, face_index in sorted(pairs, key=lambda pair: (-pair[0], pair[1], pair[2])):
            if track_id in assigned or face_index in used_faces:
                continue
            assigned[track_id] = faces[face_index]
            used_faces.add(face_index)
            track = self.tracks[track_id]
            track.face, track.last_frame = faces[face_index], frame_index
        for face_index, face in enumerate(faces):
            if face_index in used_faces or face.size < self.min_face_size:
                continue
            track = Track(self.next_id, face, frame_index, frame_index)
            self.tracks[track.id] = track
            assigned[track.id] = face
            self.next_id += 1
        return dict(sorted(assigned.items()))

    def _similarity(self, previous: DetectedFace, face: DetectedFace) -> float:
        """Box IoU plus closeness of the landmarks (relative to the face size); 0 when too far to be the same face."""
        iou = box_iou(previous.box, face.box)
        scale = max(previous.size, 1.0)
        landmark_distance = float(np.linalg.norm(previous.landmarks - face.landmarks, axis=1).mean()) / scale
        if iou < self.min_iou and landmark_distance > 0.5:
            return 0.0
        return iou + max(0.0, 1.0 - landmark_distance)


class SceneCutDetector:
    """A cut where the colour histograms of consecutive frames differ by more than ``threshold`` (total variation
    distance of 16-bin hue/saturation/value histograms of a 64x64 thumbnail, in [0, 1])."""

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold
        self.previous: np.ndarray | None = None

    def reset(self) -> None:
        self.previous = None

    def is_cut(self, image: np.ndarray) -> bool:
        """Whether ``image`` (RGB uint8) starts a new scene (never for the first frame)."""
        hsv = cv2.cvtColor(cv2.resize(image, (64, 64), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2HSV)
        histogram = np.concatenate([np.histogram(hsv[..., channel], bins=16, range=(0, limit))[0]
                                    for channel, limit in ((0, 180), (1, 256), (2, 256))]).astype(np.float64)
        histogram /= histogram.sum() / 3
        previous, self.previous = self.previous, histogram
        return previous is not None and bool(0.5 * np.abs(histogram - previous).sum() / 3 > self.threshold)


class FaceSelection:
    """Which tracks to restore: ``all``, ``largest``, ``center`` or a list of track ids (``"1,3"``).

    ``largest`` / ``center`` pick one track and keep it until it ends (no switching between people while both are
    visible), then pick again among the faces of that frame.
    """

    def __init__(self, rule: str = 'all'):
        rule = rule.strip().lower()
        self.ids: set[int] | None = None
        if rule not in ('all', 'largest', 'center'):
            try:
                self.ids = {int(value) for value in rule.split(',') if value.strip()}
            except ValueError:
                raise ValueError(f"--faces {rule!r}: use all, largest, center or track ids like 1,3") from None
        self.rule = rule
        self.current: int | None = None

    def reset(self) -> None:
        self.current = None

    def select(self, faces: dict[int, DetectedFace], open_ids, width: int, height: int) -> dict[int, DetectedFace]:
        """The selected faces among one frame's ``faces`` ({track id: face}); ``open_ids``: the tracker's open
        tracks (a selected track stays selected through a short detection gap)."""
        if self.rule == 'all':
            return faces
        if self.ids is not None:
            return {track_id: face for track_id, face in faces.items() if track_id in self.ids}
        if self.current not in open_ids:
            self.current = None
        if self.current is None and faces:
            centre = np.array([width / 2, height / 2])

            def score(item):
                face = item[1]
                if self.rule == 'largest':
                    return -face.size
                return float(np.linalg.norm((face.box[:2] + face.box[2:]) / 2 - centre))
            self.current = min(faces.items(), key=score)[0]
        return {self.current: faces[self.current]} if self.current in faces else {}
