"""The per-track face plan: short detection gaps are interpolated, landmarks smoothed within a track and a scene,
faces faded in and out where they appear or leave inside a scene; the tracker keeps ids through a gap."""
import numpy as np
import pytest

from vfsr_face.detection import DetectedFace
from vfsr_restore.face_plan import FacePlanner
from vfsr_restore.tracking import FaceSelection, FaceTracker

BASE = np.array([[10, 10], [20, 10], [15, 15], [11, 20], [19, 20]], np.float32)


def run(planner, observations, cuts=()):
    """Push {frame: {track: landmarks}} for frames 0..n-1, then flush; {frame: {track: PlannedFace}}."""
    plans = []
    for frame, tracks in enumerate(observations):
        plans += planner.push(frame, tracks, frame in cuts)
    plans += planner.flush()
    assert [frame for frame, _ in plans] == list(range(len(observations)))
    return {frame: {face.track_id: face for face in faces} for frame, faces in plans}


def test_gap_is_interpolated_and_a_leaving_face_fades_out():
    observations = [{1: BASE + frame} for frame in range(20)]
    for frame in (5, 6, 15, 16, 17, 18, 19):
        observations[frame] = {}
    plans = run(FacePlanner(smoothing='none', max_gap=3, fade=3), observations)
    assert not plans[5][1].detected and np.allclose(plans[5][1].landmarks, BASE + 5)  # linear through the gap
    assert np.allclose(plans[6][1].landmarks, BASE + 6)
    assert all(plans[frame][1].alpha == 1 for frame in range(11))  # present from the video's start: no fade-in
    assert [plans[frame][1].alpha for frame in (11, 12, 13, 14)] == [1.0, 0.75, 0.5, 0.25]  # leaves at frame 14
    assert all(plans[frame] == {} for frame in range(15, 20))


def test_face_appearing_inside_a_scene_fades_in_but_not_after_a_cut():
    observations = [{} for _ in range(6)] + [{1: BASE} for _ in range(6)] + [{2: BASE} for _ in range(6)]
    plans = run(FacePlanner(smoothing='none', fade=3), observations, cuts={12})
    assert [plans[frame][1].alpha for frame in range(6, 10)] == [0.25, 0.5, 0.75, 1.0]
    assert plans[11][1].alpha == 1.0  # the scene ends with the face on screen: no fade-out
    assert all(plans[frame][2].alpha == 1.0 for frame in range(12, 18))  # starts with its scene


def test_gaussian_smoothing_stays_inside_the_track_and_scene():
    rng = np.random.default_rng(0)
    jitter = rng.normal(0, 1, (16, 5, 2)).astype(np.float32)
    observations = [{1: BASE + jitter[frame]} for frame in range(8)] + [{2: BASE + 50 + jitter[frame]}
                                                                        for frame in range(8, 16)]
    plans = run(FacePlanner(smoothing='gaussian', sigma=2.0), observations, cuts={8})
    smoothed = np.stack([plans[frame][1].landmarks for frame in range(8)])
    assert np.abs(smoothed - BASE).mean() < 0.5 * np.abs(jitter[:8]).mean()
    assert np.abs(plans[8][2].landmarks - (BASE + 50)).max() < 3  # never pulled towards the other scene
    causal = run(FacePlanner(smoothing='causal', ema=0.5), observations, cuts={8})
    assert np.allclose(causal[1][1].landmarks, 0.5 * (BASE + jitter[1]) + 0.5 * (BASE + jitter[0]))
    with pytest.raises(ValueError, match='--smoothing'):
        FacePlanner(smoothing='median')


def face(x, y, size=30):
    return DetectedFace(np.array([x, y, x + size, y + size], np.float32), BASE * size / 20 + [x, y], 0.99)


def test_tracker_keeps_ids_through_gaps_and_selection_keeps_its_face():
    tracker = FaceTracker(max_gap=2)
    assert list(tracker.update(0, [face(0, 0), face(100, 0)])) == [1, 2]
    linked = tracker.update(1, [face(102, 1), face(2, 1)])  # listed in the other order
    assert linked[1].box[0] == 2 and linked[2].box[0] == 102
    assert list(tracker.update(2, [face(4, 2)])) == [1]  # track 2 missed frame 2, still open
    assert list(tracker.update(3, [face(104, 2), face(5, 2)])) == [1, 2]
    assert list(tracker.update(8, [face(104, 2)])) == [3]  # gap longer than max_gap: a new id
    selection = FaceSelection('largest')
    faces = {1: face(0, 0, 30), 2: face(100, 0, 40)}
    assert list(selection.select(faces, {1, 2}, 200, 100)) == [2]
    faces = {1: face(0, 0, 50), 2: face(100, 0, 40)}
    assert list(selection.select(faces, {1, 2}, 200, 100)) == [2]  # no switching while track 2 lives
    with pytest.raises(ValueError, match='--faces'):
        FaceSelection('everyone')


@pytest.mark.parametrize('missed', [4, 5])
def test_a_gap_of_max_gap_missed_frames_keeps_the_track_and_its_face(missed):
    """The tracker and the planner agree: up to ``max_gap`` missed frames in a row are one track, bridged."""
    tracker, planner, plans = FaceTracker(max_gap=5), FacePlanner(smoothing='none', max_gap=5, fade=3), []
    seen = [frame for frame in range(20) if not 5 <= frame < 5 + missed]
    for frame in range(20):
        tracked = tracker.update(frame, [face(frame, 0)] if frame in seen else [])
        plans += planner.push(frame, {track: detected.landmarks for track, detected in tracked.items()}, False)
    plans += planner.flush()
    assert {planned.track_id for _, faces in plans for planned in faces} == {1}
    assert all([planned.alpha for planned in faces] == [1.0] for _, faces in plans)  # no fade, no gap
