"""vfsr-restore end to end on generated videos (the astronaut's face moving over a background, with AAC audio):
frames, timestamps, duration, rotation and audio kept; size = input x upscale; tracks, scene cuts, trims, frame
folders and images; the geometry of crop + paste-back with an identity restorer."""
import json
import warnings
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from vfsr_face.synthetic_video import FacePath, VideoSpec, write_video
from vfsr_restore.cli import main

FAST = ['--model', 'identity', '--no-progress', '--min-face-size', '24', '--detector-batch', '12']


def video_facts(path):
    """Frame times (exact Fractions), frames (RGB), rotation, video duration, audio packets (bytes, pts)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        times = [frame.pts * frame.time_base for frame in frames]
        images = [np.rot90(frame.to_ndarray(format='rgb24'), (int(frame.rotation) // 90) % 4) for frame in frames]
        rotation = int(frames[0].rotation)
        duration = container.duration
    with av.open(str(path)) as container:
        audio = [(bytes(packet), packet.pts * packet.time_base) for stream in container.streams.audio
                 for packet in container.demux(stream) if packet.size]
    return {'times': times, 'images': images, 'rotation': rotation, 'duration': duration, 'audio': audio}


def restore(source, output, *extra):
    assert main([str(source), '-o', str(output), *FAST, *extra]) == 0
    return json.loads(output.with_name(output.name + '.json').read_text())


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp('videos')
    specs = {
        'one_face_rotated': VideoSpec(160, 120, 16, faces=[FacePath(44)], rotation=90),
        'vfr': VideoSpec(128, 96, 12, faces=[FacePath(40)],
                         pts=[0, 400, 800, 1500, 1900, 2300, 4000, 4400, 4800, 5100, 5600, 6000]),
        'two_faces': VideoSpec(192, 120, 14, faces=[FacePath(44, (0.25, 0.5), (0.3, 0.5)),
                                                    FacePath(44, (0.75, 0.5), (0.7, 0.45))]),
        'scene_cut': VideoSpec(160, 120, 16, faces=[FacePath(44)], scene_cut=8),
        'gap': VideoSpec(160, 120, 16, faces=[FacePath(44, first=0, last=9)]),
        'no_face': VideoSpec(128, 96, 8, faces=[]),
    }
    paths, landmarks = {}, {}
    for name, spec in specs.items():
        paths[name] = root / f'{name}.mp4'
        landmarks[name] = write_video(paths[name], spec)
    return paths, landmarks


def test_frames_timestamps_duration_rotation_audio_and_size_are_kept(videos, tmp_path):
    source = videos[0]['one_face_rotated']
    output = tmp_path / 'out.mp4'
    report = restore(source, output, '--upscale', '2')
    before, after = video_facts(source), video_facts(output)
    assert after['times'] == before['times'] and len(after['times']) == 16
    assert after['rotation'] == before['rotation'] == 90
    assert after['images'][0].shape == (240, 320, 3)  # upright: 160x120 input, x2
    assert after['audio'] == before['audio'] and len(after['audio']) > 5  # stream copy: same packets, same times
    assert abs(after['duration'] - before['duration']) <= 1000  # microseconds (container duration)
    assert report['frames_in'] == report['frames_out'] == 16
    assert report['output_size'] == [320, 240] and report['rotation'] == 90
    assert list(report['tracks']) == ['1'] and report['tracks']['1'] == {'first_frame': 0, 'last_frame': 15}
    assert set(report['stage_seconds']) >= {'decode', 'detect', 'restore', 'composite', 'encode'}
    assert report['peak_memory']['cpu_peak_rss_mb'] > 0
    assert not list(tmp_path.glob('.*'))  # no work folder or partial file left


def test_variable_frame_rate_keeps_every_timestamp(videos, tmp_path):
    output = tmp_path / 'vfr.mp4'
    restore(videos[0]['vfr'], output, '--segment-frames', '5')
    before, after = video_facts(videos[0]['vfr']), video_facts(output)
    assert after['times'] == before['times']
    assert after['times'][6] - after['times'][5] == Fraction(1700, 12800)
    assert after['audio'] == before['audio']


def test_two_faces_get_two_stable_tracks_and_debug_compare_videos(videos, tmp_path):
    output = tmp_path / 'two.mp4'
    report = restore(videos[0]['two_faces'], output, '--compare', '--debug')
    assert report['tracks'] == {'1': {'first_frame': 0, 'last_frame': 13}, '2': {'first_frame': 0, 'last_frame': 13}}
    assert report['faces_restored'] == 28
    compare = video_facts(tmp_path / 'two_compare.mp4')
    assert compare['images'][0].shape == (120, 384, 3) and len(compare['times']) == 14
    assert len(video_facts(tmp_path / 'two_debug.mp4')['times']) == 14
    # --faces largest / an id restore one track only
    report = restore(videos[0]['two_faces'], tmp_path / 'one.mp4', '--faces', '2')
    assert list(report['tracks']) == ['2']


def test_scene_cut_starts_new_tracks(videos, tmp_path):
    report = restore(videos[0]['scene_cut'], tmp_path / 'cut.mp4')
    assert report['scene_cuts'] == [8]
    assert report['tracks'] == {'1': {'first_frame': 0, 'last_frame': 7}, '2': {'first_frame': 8, 'last_frame': 15}}


def test_face_leaving_is_faded_out_and_no_face_video_passes_through(videos, tmp_path):
    report = restore(videos[0]['gap'], tmp_path / 'gap.mp4')
    assert report['tracks'] == {'1': {'first_frame': 0, 'last_frame': 9}}
    with pytest.warns(UserWarning, match='no face found'):
        report = restore(videos[0]['no_face'], tmp_path / 'none.mp4', '--upscale', '2')
    assert report['frames_out'] == 8 and report['tracks'] == {} and report['warnings']
    before, after = video_facts(videos[0]['no_face']), video_facts(tmp_path / 'none.mp4')
    assert after['times'] == before['times'] and after['audio'] == before['audio']
    upscaled = cv2.resize(before['images'][3], (256, 192), interpolation=cv2.INTER_LANCZOS4).astype(float)
    assert np.abs(after['images'][3] - upscaled).mean() < 3


def test_start_end_trim_keeps_audio_in_sync(videos, tmp_path):
    source = videos[0]['one_face_rotated']
    report = restore(source, tmp_path / 'trim.mp4', '--start', '0.2', '--end', '0.5')
    before, after = video_facts(source), video_facts(tmp_path / 'trim.mp4')
    kept = [time for time in before['times'] if Fraction(1, 5) <= time < Fraction(1, 2)]
    assert report['frames_out'] == len(after['times']) == len(kept) == 8
    assert after['times'] == [time - kept[0] for time in kept]
    # the audio packets are the input's packets around [0.2, 0.5), moved by the same 0.2 s as the video
    moved = {payload: time for payload, time in before['audio']}
    assert after['audio'] and all(moved[payload] - time == kept[0] for payload, time in after['audio'])
    assert min(time for _, time in after['audio']) <= 0 < max(time for _, time in after['audio'])


def test_identity_restorer_pastes_faces_back_exactly(videos, tmp_path):
    """Align to 512 and paste back with --upscale 1: the face regions match the input (PSNR >= 35 dB) with no shift
    (phase correlation < 0.1 px). Lossless encoding, so only the geometry is measured."""
    source, landmarks = videos[0]['one_face_rotated'], videos[1]['one_face_rotated']
    restore(source, tmp_path / 'id.mp4', '--crf', '0', '--pix-fmt', 'yuv444p', '--smoothing', 'none')
    before, after = video_facts(source), video_facts(tmp_path / 'id.mp4')
    for index in (0, 7, 15):
        x0, y0 = np.floor(landmarks[index][0].min(axis=0) - 12).astype(int)
        x1, y1 = np.ceil(landmarks[index][0].max(axis=0) + 12).astype(int)
        region_in = before['images'][index][y0:y1, x0:x1].astype(np.float64)
        region_out = after['images'][index][y0:y1, x0:x1].astype(np.float64)
        mse = np.mean((region_in - region_out) ** 2)
        assert 10 * np.log10(255 ** 2 / mse) >= 35
        gray_in, gray_out = (cv2.cvtColor(r.astype(np.float32), cv2.COLOR_RGB2GRAY) for r in (region_in, region_out))
        window = cv2.createHanningWindow(gray_in.shape[::-1], cv2.CV_32F)
        (shift_x, shift_y), _ = cv2.phaseCorrelate(gray_in, gray_out, window)
        assert np.hypot(shift_x, shift_y) < 0.1


def test_frames_folder_and_images(tmp_path):
    from vfsr_face.synthetic_video import render_frames

    folder = tmp_path / 'frames'
    folder.mkdir()
    for index, (image, _) in enumerate(render_frames(VideoSpec(128, 96, 6, faces=[FacePath(40)]))):
        cv2.imwrite(str(folder / f'{index:04d}.png'), image)
    report = restore(folder, tmp_path / 'frames.mp4', '--upscale', '2')
    assert report['frames_out'] == 6 and report['kind'] == 'frames'
    assert video_facts(tmp_path / 'frames.mp4')['images'][0].shape == (192, 256, 3)
    # one image, RGBA 16-bit: restored into an image of the requested size
    rgba16 = np.concatenate([image, np.full((96, 128, 1), 255, np.uint8)], axis=2).astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / 'face.png'), rgba16)
    report = restore(tmp_path / 'face.png', tmp_path / 'face_out.png', '--upscale', '2')
    assert cv2.imread(str(tmp_path / 'face_out.png')).shape == (192, 256, 3) and report['faces_restored'] == 1


def test_folder_of_videos_skips_existing_outputs(videos, tmp_path, capsys):
    folder = tmp_path / 'in'
    folder.mkdir()
    for name in ('vfr', 'no_face'):
        (folder / f'{name}.mp4').write_bytes(videos[0][name].read_bytes())
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'vfr.mp4').write_bytes(b'already there')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        assert main([str(folder), '-o', str(out), *FAST]) == 0
    assert (out / 'vfr.mp4').read_bytes() == b'already there'
    assert len(video_facts(out / 'no_face.mp4')['times']) == 8
    assert 'vfr.mp4 exists, skipped' in capsys.readouterr().err


def test_audio_the_output_container_cannot_hold_is_reencoded_to_aac(tmp_path):
    source = tmp_path / 'pcm.mkv'
    with av.open(str(source), 'w') as container:
        video = container.add_stream('libx264', rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, 'yuv420p'
        audio = container.add_stream('pcm_s16le', rate=8000, layout='mono')
        for index in range(10):
            container.mux(video.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * index, np.uint8),
                                                                  format='rgb24')))
        container.mux(video.encode())
        samples = (3000 * np.sin(np.arange(3200) / 5)).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(samples, format='s16', layout='mono')
        frame.sample_rate, frame.pts = 8000, 0
        container.mux(audio.encode(frame))
        container.mux(audio.encode())
    with pytest.warns(UserWarning):
        restore(source, tmp_path / 'out.mp4')
    with av.open(str(tmp_path / 'out.mp4')) as container:
        assert container.streams.audio[0].codec_context.name == 'aac'
        decoded = sum(frame.samples for frame in container.decode(audio=0))
    assert abs(decoded - 3200) <= 1024 * 2  # the same sound, give or take the AAC encoder's frame padding


def test_detecting_every_third_frame_still_restores_every_frame(videos, tmp_path):
    report = restore(videos[0]['scene_cut'], tmp_path / 'sparse.mp4', '--detect-every', '3')
    assert report['scene_cuts'] == [8]  # the cut frame is always detected
    assert report['tracks'] == {'1': {'first_frame': 0, 'last_frame': 7}, '2': {'first_frame': 8, 'last_frame': 15}}
    assert report['faces_restored'] == 16


def test_detecting_every_fourth_frame_keeps_the_face_to_the_last_frame(videos, tmp_path):
    """Frames 13-15 of 16 follow the last multiple of 4: the video's last frame is detected, so the track runs to
    its end instead of fading out early."""
    report = restore(videos[0]['one_face_rotated'], tmp_path / 'sparse.mp4', '--detect-every', '4')
    assert report['tracks'] == {'1': {'first_frame': 0, 'last_frame': 15}}
    assert report['faces_restored'] == 16


@pytest.mark.parametrize('size, upscale, face_top', [((128, 96), 1, 40), ((640, 360), 2, 40), ((640, 360), 2, 8)])
def test_debug_overlay_draws_the_crop_outline_and_a_label_inside_the_frame(size, upscale, face_top):
    """The outline is the square the restorer saw (the crop mapped back into the output), the label fits the frame
    even for a face at its top edge."""
    from vfsr_face.astronaut import ASTRONAUT_LANDMARKS
    from vfsr_restore.compositing import crop_matrix
    from vfsr_restore.face_plan import PlannedFace
    from vfsr_restore.media import Frame
    from vfsr_restore.pipeline import PendingFrame, debug_overlay

    width, height = size
    points = np.asarray(ASTRONAUT_LANDMARKS, np.float64)
    landmarks = (points - points.min(0)) / np.ptp(points[:, 0]) * 20 + [width / 4, face_top]
    crop = (64, 64)
    matrix = crop_matrix(landmarks, crop)
    record = PendingFrame(Frame(0, np.zeros((height, width, 3), np.uint8), 0, 1),
                          planned=[PlannedFace(3, landmarks, 0.5, detected=False)], matrices={3: matrix})
    output = np.zeros((height * upscale, width * upscale, 3), np.uint8)
    drawn = debug_overlay(record, output, upscale, crop).max(axis=2) > 0
    to_frame = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0], [64, 0], [64, 64], [0, 64]]) - 0.5
    outline = (corners @ to_frame[:, :2].T + to_frame[:, 2] + 0.5) * upscale - 0.5
    expected = np.zeros(drawn.shape, np.uint8)
    cv2.polylines(expected, [np.round(outline).astype(np.int32)], True, 1, 1)
    assert drawn[expected > 0].mean() > 0.7  # the label may cover a little of it
    crop_centre = (np.array([31.5, 31.5]) @ to_frame[:, :2].T + to_frame[:, 2] + 0.5) * upscale - 0.5
    assert not drawn[int(crop_centre[1]), int(crop_centre[0])]  # an outline, not a filled box
    assert drawn[0].sum() < drawn.shape[1] // 4  # the label's box is inside the frame, not cut by its top
