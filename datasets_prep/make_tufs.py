"""Build a TUFs-145K-layout test or training set from raw face videos (VoxCeleb2's ``<id>/<video>/<seq>.mp4`` or any
folder of videos), as VidFace's authors built TUFs-145K from VoxCeleb2.

For every video: faces are detected in every frame (``vfsr_restore``'s detector, MTCNN by default: no download) and
linked into tracks (``vfsr_restore.tracking.FaceTracker``); the longest track is the clip's face. Seven snapshots
are chosen from its frames, by face quality first, then pose variety; each is cropped around the face box, without
rotation (VidFace's snapshots are unaligned), and resized to the GT size 128x96 (H x W); its five detected
landmarks go through the same crop. Output: the official TUFs-145K release layout, so that
``--output datasets/TUFS145K`` is what ``options/*_tufs.yml`` read (``TUFS145KDataset`` / ``TUFS145KTestDataset``)::

    <output>/train/<clip>/<seq>/im1.png ... im7.png   GT 128x96, snapshots in time order (test/ the same)
    <output>/meta_info_train.txt, meta_info_test.txt  '<clip>/<seq>' a line; split by identity (the clip's first
                                                      '_' field), --test-fraction of the identities in test/
    <output>/landmarks.npz                            keys '<clip>/<seq>/imN.png', landmarks (N, 10) in [0, 1]
    <output>/snapshots.json                           where each snapshot comes from: split, video, frame, crop

``<clip>`` is the video's folder path relative to ``--videos`` with '/' replaced by '_' (VoxCeleb2:
``id00017_01dfn2spqyE``), ``<seq>`` the video's file stem (``00001``). Videos are recognised by extension
(``VIDEO_EXTENSIONS``: mp4, avi, mkv, mov, webm, m4v). Each sequence folder is written atomically and a rerun
skips those already done, in either split (resumable; a sequence keeps the split it was written in); the landmark,
meta_info and snapshot files are rewritten atomically at the end from every sequence present.

What the paper states, and what is approximated here: TUFs-145K keeps 7 snapshots per VoxCeleb2 clip chosen for
face quality and pose variety, GT 128x96 with 5 landmarks. The exact quality measure, pose estimator, crop margin
and detector are not published; vfsr uses: quality = detector score x sharpness (log of the variance of the
Laplacian of the face crop) x min(1, face size / 96 px), keeping the better half of the track's frames; pose =
(yaw, pitch, roll) proxies from the five landmarks (nose offset from the eye midpoint over the inter-ocular
distance, nose height between eyes and mouth, eye-line angle); then farthest-point sampling in pose space starting
from the best frame. Crop: the box centre, width ``--crop-scale`` (1.3) x the box width, height 4/3 of that.

Example::

    python -m datasets_prep.make_tufs --videos datasets/VoxCeleb2/test/mp4 --output datasets/TUFS145K
"""
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from datasets_prep.cli import ScriptParser, run_script
from datasets_prep.convert_tufs_landmarks import save_landmarks_npz
from vfsr_data.clip_frames import IMAGE_EXTENSIONS
from vfsr_io.atomic_output import atomic_directory, write_text_atomically

GT_HEIGHT, GT_WIDTH = 128, 96
NUM_SNAPSHOTS = 7
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mkv', '.mov', '.webm', '.m4v')
DETECTION_BATCH = 8
SPLITS = ('train', 'test')


@dataclass
class TrackedFace:
    """One frame of the chosen track: where the face is, how good it looks, its pose proxies."""
    frame: int
    box: np.ndarray  # (4,) x0, y0, x1, y1 pixels
    landmarks: np.ndarray  # (5, 2) pixels
    quality: float
    pose: np.ndarray  # (3,) yaw, pitch, roll proxies


def pose_proxies(landmarks: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll) proxies of five landmarks: nose offset from the eye midpoint over the inter-ocular
    distance, nose height between the eye line and the mouth line (0.5 frontal), eye-line angle in radians."""
    left_eye, right_eye, nose, mouth_left, mouth_right = landmarks
    eye_mid, mouth_mid = (left_eye + right_eye) / 2, (mouth_left + mouth_right) / 2
    interocular = max(float(np.linalg.norm(right_eye - left_eye)), 1e-6)
    yaw = (nose[0] - eye_mid[0]) / interocular
    pitch = (nose[1] - eye_mid[1]) / max(float(mouth_mid[1] - eye_mid[1]), 1e-6)
    roll = np.arctan2(right_eye[1] - left_eye[1], right_eye[0] - left_eye[0])
    return np.array([yaw, pitch, roll], dtype=np.float64)


def face_quality(image_rgb: np.ndarray, box: np.ndarray, score: float) -> float:
    """Detector score x sharpness (log variance of the Laplacian inside the box) x size (saturating at 96 px)."""
    x0, y0, x1, y1 = np.clip(np.round(box).astype(int), 0, [image_rgb.shape[1], image_rgb.shape[0]] * 2)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return 0.0
    gray = cv2.cvtColor(image_rgb[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY)
    sharpness = np.log1p(cv2.Laplacian(gray, cv2.CV_64F).var())
    return float(score * sharpness * min(1.0, min(x1 - x0, y1 - y0) / 96))


def choose_snapshots(faces: list[TrackedFace], count: int = NUM_SNAPSHOTS) -> list[TrackedFace]:
    """The better half by quality (at least ``count``), then farthest-point sampling in pose space from the best
    frame; returned in time order."""
    ranked = sorted(faces, key=lambda face: -face.quality)
    pool = ranked[:max(count, len(ranked) // 2)]
    chosen = [pool[0]]
    distances = np.array([np.linalg.norm(face.pose - pool[0].pose) for face in pool])
    while len(chosen) < count:
        distances[[pool.index(face) for face in chosen]] = -1
        best = int(np.argmax(distances))
        chosen.append(pool[best])
        distances = np.minimum(distances, [np.linalg.norm(face.pose - pool[best].pose) for face in pool])
    return sorted(chosen, key=lambda face: face.frame)


def crop_box(box: np.ndarray, crop_scale: float) -> np.ndarray:
    """x0, y0, x1, y1 of the GT-shaped (4:3 high) crop around a face box."""
    centre = (box[:2] + box[2:]) / 2
    width = crop_scale * (box[2] - box[0])
    half = np.array([width, width * GT_HEIGHT / GT_WIDTH]) / 2
    return np.concatenate([centre - half, centre + half])


def crop_snapshot(image_rgb: np.ndarray, crop: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """The crop resized to 128x96 (RGB uint8, border replicated) and its landmarks normalised to [0, 1]."""
    scale_x, scale_y = GT_WIDTH / (crop[2] - crop[0]), GT_HEIGHT / (crop[3] - crop[1])
    # Continuous coordinates (pixel edges at integers): a pixel centre x maps to (x + 0.5 - x0) * scale - 0.5.
    matrix = np.array([[scale_x, 0, (0.5 - crop[0]) * scale_x - 0.5], [0, scale_y, (0.5 - crop[1]) * scale_y - 0.5]])
    flags = cv2.INTER_AREA if scale_x < 1 else cv2.INTER_CUBIC
    snapshot = cv2.warpAffine(image_rgb, matrix, (GT_WIDTH, GT_HEIGHT), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    points = landmarks @ matrix[:, :2].T + matrix[:, 2]
    normalised = (points + 0.5) / np.array([GT_WIDTH, GT_HEIGHT])
    return snapshot, [float(value) for value in normalised.reshape(-1)]


def track_faces(video: Path, detector, min_face_size: float) -> list[TrackedFace]:
    """Detect and track the faces of ``video``; the frames of its longest track."""
    from vfsr_restore.media import probe, read_frames
    from vfsr_restore.tracking import FaceTracker

    tracker = FaceTracker(min_face_size=min_face_size)
    tracks: dict[int, list[TrackedFace]] = {}
    batch = []

    def flush():
        found = detector.detect([frame.image for frame in batch])
        for frame, faces in zip(batch, found):
            for track_id, face in tracker.update(frame.index, faces).items():
                tracks.setdefault(track_id, []).append(TrackedFace(
                    frame.index, face.box, face.landmarks, face_quality(frame.image, face.box, face.score),
                    pose_proxies(face.landmarks)))
        batch.clear()

    for frame in read_frames(probe(video)):
        batch.append(frame)
        if len(batch) == DETECTION_BATCH:
            flush()
    if batch:
        flush()
    return max(tracks.values(), key=len) if tracks else []


def write_sequence(video: Path, target: Path, snapshots: list[TrackedFace], crop_scale: float) -> dict:
    """Crop the chosen frames of ``video`` into ``target`` (atomically); returns {'imN.png': record}."""
    from vfsr_restore.media import probe, read_frames

    wanted = {face.frame: (index, face) for index, face in enumerate(snapshots, start=1)}
    records = {}
    with atomic_directory(target) as partial:
        partial.mkdir(parents=True)
        for frame in read_frames(probe(video)):
            if frame.index not in wanted:
                continue
            index, face = wanted[frame.index]
            crop = crop_box(face.box, crop_scale)
            snapshot, landmarks = crop_snapshot(frame.image, crop, face.landmarks)
            cv2.imwrite(str(partial / f'im{index}.png'), cv2.cvtColor(snapshot, cv2.COLOR_RGB2BGR))
            records[f'im{index}.png'] = {'video': str(video), 'frame': frame.index,
                                         'crop': [round(float(v), 2) for v in crop], 'landmarks': landmarks}
        if len(records) != len(snapshots):
            raise ValueError(f'{video}: decoding it again gave {len(records)} of the {len(snapshots)} chosen frames')
        (partial / '.snapshots.json').write_text(json.dumps(records))
    return records


def clip_and_sequence(video: Path, videos_root: Path) -> tuple[str, str]:
    """``<clip>`` from the folders above the video (or its name at the top level), ``<seq>`` from its name."""
    relative = video.relative_to(videos_root)
    if not relative.parts:  # a frames folder given as the root itself
        return video.name, '0001'
    clip = '_'.join(relative.parent.parts) or video.stem
    return clip, video.stem if relative.parent.parts else '0001'


def split_of(clip: str, test_fraction: float) -> str:
    """'test' or 'train', stable by identity (the clip's first '_' field): CRC32 of its name against
    ``test_fraction``."""
    identity = clip.split('_')[0]
    return 'test' if zlib.crc32(identity.encode('utf-8')) % 10000 < test_fraction * 10000 else 'train'


def write_index_files(output: Path) -> int:
    """landmarks.npz, snapshots.json and meta_info_{train,test}.txt, from every finished sequence; returns their
    count."""
    landmarks, snapshots, sequences = {}, {}, {split: [] for split in SPLITS}
    for split in SPLITS:
        for record_file in sorted((output / split).glob('*/*/.snapshots.json')):
            key = f'{record_file.parent.parent.name}/{record_file.parent.name}'
            sequences[split].append(key)
            for name, record in json.loads(record_file.read_text()).items():
                landmarks[f'{key}/{name}'] = record['landmarks']
                snapshots[f'{key}/{name}'] = {'split': split, **{k: v for k, v in record.items() if k != 'landmarks'}}
    save_landmarks_npz(landmarks, output / 'landmarks.npz', overwrite=True)
    files = {'snapshots.json': json.dumps(snapshots, indent=0),
             **{f'meta_info_{split}.txt': ''.join(f'{key}\n' for key in keys) for split, keys in sequences.items()}}
    for name, text in files.items():
        write_text_atomically(output / name, text)
    return sum(len(keys) for keys in sequences.values())


def find_sources(root: Path, frame_folders: bool, extensions: tuple[str, ...]) -> list[Path]:
    """Video files under ``root`` (by extension), or with ``frame_folders`` the folders holding frame images."""
    if frame_folders:
        return sorted({path.parent for path in root.rglob('*') if path.suffix.lower() in IMAGE_EXTENSIONS})
    return sorted(path for path in root.rglob('*') if path.suffix.lower() in extensions and path.is_file())


def make_tufs(videos_root: str | Path, output: str | Path, detector: str = 'mtcnn', weights_dir='weights',
              device: str = 'cpu', min_face_size: float = 40, crop_scale: float = 1.3, test_fraction: float = 0.1,
              extensions: tuple[str, ...] = VIDEO_EXTENSIONS, frame_folders: bool = False,
              progress: bool = True) -> dict:
    """Build the TUFs-145K layout under ``output`` from every video under ``videos_root`` (with ``frame_folders``:
    every folder of frame images, one per video); returns {'sequences': count written in total, 'skipped':
    {video: reason}}."""
    from vfsr_face.detection import build_face_detector

    videos_root, output = Path(videos_root), Path(output)
    if not videos_root.is_dir():
        raise FileNotFoundError(f'{videos_root}: no such folder')
    videos = find_sources(videos_root, frame_folders, extensions)
    if not videos:
        what = 'folders of frame images' if frame_folders else f'video files ({", ".join(extensions)})'
        raise ValueError(f'{videos_root}: no {what}')
    face_detector = build_face_detector(detector, weights_dir=weights_dir, device=device)
    output.mkdir(parents=True, exist_ok=True)
    skipped = {}
    for video in tqdm(videos, desc='make_tufs', unit='video', disable=not progress):
        clip, sequence = clip_and_sequence(video, videos_root)
        if any((output / split / clip / sequence / '.snapshots.json').is_file() for split in SPLITS):
            continue  # done by an earlier run
        track = track_faces(video, face_detector, min_face_size)
        if len(track) < NUM_SNAPSHOTS:
            skipped[str(video)] = f'a face of at least {min_face_size:g} px in only {len(track)} frames'
            continue
        target = output / split_of(clip, test_fraction) / clip / sequence
        write_sequence(video, target, choose_snapshots(track), crop_scale)
    return {'sequences': write_index_files(output), 'skipped': skipped}


def add_face_flags(parser: ScriptParser, min_face_size: float, why: str = '') -> None:
    """The detection and cropping flags of ``make_tufs`` and ``make_ijbc``; ``why`` explains the default face size."""
    parser.add_flag('--detector', default='mtcnn', choices=('mtcnn', 'retinaface'),
                    help='face detector of vfsr_restore (default mtcnn: weights ship with facenet-pytorch)')
    parser.add_flag('--weights-dir', default='weights', help='folder of the RetinaFace weights (default weights)')
    parser.add_flag('--device', default='cpu', help='device of the detector (default cpu)')
    parser.add_flag('--min-face-size', type=float, default=min_face_size,
                    help=f'smallest face side in pixels (default {min_face_size:g}{why})')
    parser.add_flag('--crop-scale', type=float, default=1.3, help='crop width / face box width (default 1.3)')


def print_result(result: dict, output: str) -> None:
    """What ``make_tufs`` returned, for a person: the skipped videos and why, then the sequence count."""
    for video, reason in result['skipped'].items():
        print(f'skipped {video}: {reason}')
    print(f'{result["sequences"]} sequences in {output}')


def main():
    parser = ScriptParser(__file__, __doc__)
    parser.add_flag('--videos', required=True, help='root folder of the raw videos (searched recursively)')
    parser.add_flag('--output', required=True,
                    help='root of the TUFs-145K layout, e.g. datasets/TUFS145K (resumed when it exists)')
    add_face_flags(parser, min_face_size=40)
    parser.add_flag('--test-fraction', type=float, default=0.1,
                    help='share of identities written to test/ (default 0.1)')
    run_script(parser, lambda args: print_result(
        make_tufs(args.videos, args.output, args.detector, args.weights_dir, args.device, args.min_face_size,
                  args.crop_scale, args.test_fraction), args.output))


if __name__ == '__main__':
    main()
