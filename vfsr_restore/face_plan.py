"""Where to restore a face in each frame: landmark smoothing per track, short gaps filled, fades at track ends.

:class:`FacePlanner` takes each frame's tracked landmarks and gives, ``lookahead`` frames later, the final plan of
that frame: per track, smoothed landmarks and a blending weight ``alpha``.

- Gaps: a track missing for at most ``max_gap`` frames between two detections is interpolated linearly (a missed
  detection must not make the restored face blink off).
- Smoothing: ``gaussian`` (a Gaussian of ``sigma`` frames over the track, truncated at 3 sigma and at the track's
  ends, as the official KEEP script but per track and never across a scene cut), ``causal`` (an exponential moving
  average with weight ``ema`` on the new frame, which needs no future frames) or ``none``.
- Fades: a face that appears or disappears inside a scene is blended in and out over ``fade`` frames instead of
  appearing at once; faces present at the start or end of a scene (or of the video) are not faded.

Memory: only the landmarks of the last ``2 * lookahead + 1`` frames are kept.
"""
import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class PlannedFace:
    """A face to restore in one frame: its track, smoothed landmarks (5, 2) and blend weight in (0, 1]."""
    track_id: int
    landmarks: np.ndarray
    alpha: float
    detected: bool


class FacePlanner:
    """Feed frames in order with :meth:`push`; each call returns the plans that became final, in frame order."""

    def __init__(self, smoothing: str = 'gaussian', sigma: float = 2.0, ema: float = 0.6, max_gap: int = 5,
                 fade: int = 3):
        if smoothing not in ('gaussian', 'causal', 'none'):
            raise ValueError(f'--smoothing {smoothing!r}: choose gaussian, causal or none')
        self.smoothing, self.sigma, self.ema = smoothing, sigma, ema
        self.max_gap, self.fade = max_gap, fade
        self.radius = math.ceil(3 * sigma) if smoothing == 'gaussian' and sigma > 0 else 0
        self.lookahead = max(self.radius, max_gap + 1 + fade)
        self.observations: OrderedDict[int, dict[int, np.ndarray]] = OrderedDict()
        self.scene_of: dict[int, int] = {}  # frame -> first frame of its scene
        self.first_seen: dict[int, int] = {}  # track -> first frame
        self.starts_scene: dict[int, bool] = {}  # track -> it appeared on the first frame of its scene
        self.causal_state: dict[int, tuple[int, np.ndarray]] = {}  # track -> (frame, smoothed landmarks)
        self.next_to_plan: int | None = None
        self.last_pushed: int | None = None
        self.ended = False

    def push(self, frame_index: int, landmarks: dict[int, np.ndarray], scene_cut: bool) -> list[
            tuple[int, list[PlannedFace]]]:
        """Add one frame's {track id: landmarks (5, 2)}; ``scene_cut``: this frame starts a new scene."""
        if self.next_to_plan is None:
            self.next_to_plan = frame_index
        self.observations[frame_index] = {track: np.asarray(points, np.float32) for track, points in landmarks.items()}
        previous_scene = self.scene_of.get(self.last_pushed) if self.last_pushed is not None else None
        self.scene_of[frame_index] = frame_index if scene_cut or previous_scene is None else previous_scene
        for track in landmarks:
            if track not in self.first_seen:
                self.first_seen[track] = frame_index
                self.starts_scene[track] = self.scene_of[frame_index] == frame_index
        self.last_pushed = frame_index
        ready = []
        while self.next_to_plan + self.lookahead <= frame_index:
            ready.append(self._plan_next())
        return ready

    def flush(self) -> list[tuple[int, list[PlannedFace]]]:
        """The plans of the remaining frames (end of the video or of a segment)."""
        self.ended = True
        ready = []
        while self.next_to_plan is not None and self.last_pushed is not None and self.next_to_plan <= self.last_pushed:
            ready.append(self._plan_next())
        return ready

    def state_dict(self) -> dict:
        """Everything the planner holds (the landmarks of its window, the tracks' first frames, the causal
        filter), as tensors and plain values."""
        return {'observations': {frame: {track: torch.from_numpy(points) for track, points in tracks.items()}
                                 for frame, tracks in self.observations.items()},
                'scene_of': dict(self.scene_of), 'first_seen': dict(self.first_seen),
                'starts_scene': dict(self.starts_scene),
                'causal_state': {track: (frame, torch.from_numpy(points))
                                 for track, (frame, points) in self.causal_state.items()},
                'next_to_plan': self.next_to_plan, 'last_pushed': self.last_pushed, 'ended': self.ended}

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict`."""
        self.observations = OrderedDict((frame, {track: points.numpy() for track, points in tracks.items()})
                                        for frame, tracks in state['observations'].items())
        self.scene_of, self.first_seen = dict(state['scene_of']), dict(state['first_seen'])
        self.starts_scene = dict(state['starts_scene'])
        self.causal_state = {track: (frame, points.numpy()) for track, (frame, points) in state['causal_state'].items()}
        self.next_to_plan, self.last_pushed, self.ended = state['next_to_plan'], state['last_pushed'], state['ended']

    # ------------------------------------------------------------------------------------------------ internals
    def _plan_next(self) -> tuple[int, list[PlannedFace]]:
        frame = self.next_to_plan
        tracks = sorted({track for frame_tracks in self._window(frame, self.max_gap + 1).values()
                         for track in frame_tracks})
        planned = []
        for track in tracks:
            points = self._points(track, frame)
            if points is None:
                continue
            smoothed = self._smooth(track, frame, points)
            alpha = self._fade_weight(track, frame)
            planned.append(PlannedFace(track, smoothed, alpha, track in self.observations[frame]))
        self.next_to_plan = frame + 1
        self._forget(frame)
        return frame, planned

    def _window(self, frame: int, radius: int) -> dict[int, dict[int, np.ndarray]]:
        return {index: self.observations[index] for index in range(frame - radius, frame + radius + 1)
                if index in self.observations and self.scene_of[index] == self.scene_of[frame]}

    def _points(self, track: int, frame: int) -> np.ndarray | None:
        """Observed landmarks, or linearly interpolated inside a gap of at most ``max_gap`` frames."""
        observed = self.observations.get(frame, {}).get(track)
        if observed is not None:
            return observed
        window = self._window(frame, self.max_gap + 1)
        before = [index for index in window if index < frame and track in window[index]]
        after = [index for index in window if index > frame and track in window[index]]
        if not before or not after or after[0] - before[-1] > self.max_gap + 1:
            return None
        start, end = before[-1], after[0]
        weight = (frame - start) / (end - start)
        return (1 - weight) * window[start][track] + weight * window[end][track]

    def _smooth(self, track: int, frame: int, points: np.ndarray) -> np.ndarray:
        if self.smoothing == 'causal':
            previous = self.causal_state.get(track)
            if previous is not None and previous[0] == frame - 1:
                points = self.ema * points + (1 - self.ema) * previous[1]
            self.causal_state[track] = (frame, points)
            return points
        if self.smoothing == 'none' or self.radius == 0:
            return points
        total, weights = np.zeros((5, 2), np.float64), 0.0
        for index in range(frame - self.radius, frame + self.radius + 1):
            if index not in self.observations or self.scene_of[index] != self.scene_of[frame]:
                continue
            neighbour = points if index == frame else self._points(track, index)
            if neighbour is None:
                continue
            weight = math.exp(-0.5 * ((index - frame) / self.sigma) ** 2)
            total += weight * neighbour
            weights += weight
        return (total / weights).astype(np.float32)

    def _fade_weight(self, track: int, frame: int) -> float:
        steps = self.fade + 1
        first = self.first_seen[track]
        fade_in = 1.0 if self.starts_scene[track] else min(1.0, (frame - first + 1) / steps)
        seen = [index for index in self._window(frame, self.lookahead) if index >= frame and
                track in self.observations[index]]
        last = seen[-1] if seen else frame
        if last >= frame + self.fade or not (self.ended or last + self.max_gap + 1 <= self.last_pushed):
            return fade_in
        # the track ends at `last`: fade out, unless its scene or the video ends there too
        scene_ends = last + 1 in self.scene_of and self.scene_of[last + 1] != self.scene_of[last]
        video_ends = self.ended and last == self.last_pushed
        fade_out = 1.0 if scene_ends or video_ends else min(1.0, (last - frame + 1) / steps)
        return float(min(fade_in, fade_out))

    def _forget(self, planned_frame: int) -> None:
        oldest_needed = planned_frame + 1 - max(self.radius, self.max_gap + 1)
        for index in [index for index in self.observations if index < oldest_needed]:
            del self.observations[index]
            self.scene_of.pop(index, None)
