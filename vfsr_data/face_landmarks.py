"""Five-point face landmarks: the per-clip landmark file format, VFHQ annotations, and FFHQ-template alignment.

Landmark file (one per clip, ``<landmark root>/<clip name>.txt``), plain text::

    # comments and other header lines (not starting with a frame file name) are ignored
    <frame file name> x1 y1 x2 y2 x3 y3 x4 y4 x5 y5
    00000000.png 204.00 101.00 247.00 103.00 224.00 127.00 203.00 142.00 245.00 141.00

Coordinates are pixels of that frame. Lines whose first field is not an image file name are headers and are
ignored (the official reader also keeps only the frame lines). The points are, in order: eye on the image's left,
eye on the image's right, nose tip, mouth corner on the image's left, mouth corner on the image's right (the order
of RetinaFace, facexlib and the FFHQ template below). This is the layout of the official KEEP per-clip
``meta_info/<clip>.txt`` files.

VFHQ annotation files (``Clip+<video>+P<person>+C<clip>+F<start>-<end>.txt``) have a header (``Video ID``, ``H``,
``W``, ``FPS``, a ``FRAME INDEX X0 Y0 W H [Landmarks (5 Points)]`` line), then one line per frame: the frame index,
a face id, the box x0 y0 w h and the ten landmark numbers, and a final ``CROP`` line; :func:`read_vfhq_annotation`
reads them.
"""
from pathlib import Path

import cv2
import numpy as np

from vfsr_data.clip_frames import IMAGE_EXTENSIONS, bgr_to_rgb_float

# The FFHQ 5-point template for a 512x512 face (facexlib / CodeFormer / KEEP alignment), points in the order above.
FFHQ_TEMPLATE_512 = np.array([[192.98138, 239.94708], [318.90277, 240.19360], [256.63416, 314.01935],
                              [201.26117, 371.41043], [313.08905, 371.15118]], dtype=np.float32)
# facexlib's fill for the area outside the source frame (BGR), so training crops look like inference crops.
ALIGN_BORDER_VALUE_BGR = (135, 133, 132)


def template_for_size(size: int) -> np.ndarray:
    """The FFHQ template scaled to a ``size`` x ``size`` face, (5, 2) float32."""
    return FFHQ_TEMPLATE_512 * (size / 512.0)


def read_landmark_file(path: str | Path) -> dict[str, np.ndarray]:
    """Read a per-clip landmark file: {frame file name: (5, 2) float32}. A malformed line is an error naming it."""
    path = Path(path)
    landmarks = {}
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        tokens = line.split()
        if not tokens or not tokens[0].lower().endswith(IMAGE_EXTENSIONS):
            continue
        if len(tokens) != 11:
            raise ValueError(f'{path}:{line_number}: expected "<frame> x1 y1 ... x5 y5" (11 fields), '
                             f'got {len(tokens)}')
        try:
            points = np.array([float(token) for token in tokens[1:]], dtype=np.float32).reshape(5, 2)
        except ValueError as error:
            raise ValueError(f'{path}:{line_number}: landmark values are not numbers ({error})') from None
        if not np.isfinite(points).all():
            raise ValueError(f'{path}:{line_number}: landmark values are not finite')
        landmarks[tokens[0]] = points
    return landmarks


def write_landmark_file(path: str | Path, landmarks: dict[str, np.ndarray]) -> None:
    """Write {frame file name: (5, 2)} in the per-clip format, frames in sorted order; atomic (temp file + rename)."""
    path = Path(path)
    lines = ['# <frame> x1 y1 ... x5 y5: left eye, right eye, nose, left mouth corner, right mouth corner (pixels)']
    for frame_name in sorted(landmarks):
        points = np.asarray(landmarks[frame_name], dtype=np.float64).reshape(10)
        lines.append(frame_name + ''.join(f' {value:.2f}' for value in points))
    temporary = path.with_name(f'.{path.name}.partial')
    temporary.write_text('\n'.join(lines) + '\n')
    temporary.replace(path)


def read_vfhq_annotation(path: str | Path) -> tuple[dict[str, np.ndarray], tuple[float, ...] | None]:
    """Read a VFHQ clip annotation: ({frame index string: (5, 2) float32}, CROP box or None).

    The landmarks are in the coordinates of the source video frames; the CROP box (x0 y0 x1 y1) is the region the
    released clip frames were cut from, so subtract its origin for frames stored as crops.
    """
    path = Path(path)
    landmarks, crop, in_frames = {}, None, False
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if line.startswith('FRAME INDEX'):
            in_frames = True
        elif tokens[0].rstrip(':') == 'CROP':
            crop = tuple(float(token) for token in tokens[1:5])
        elif in_frames:
            if len(tokens) < 16:
                raise ValueError(f'{path}:{line_number}: expected a frame index, face id, box and 10 landmark '
                                 f'values, got {len(tokens)} fields')
            landmarks[tokens[0]] = np.array([float(token) for token in tokens[-10:]], dtype=np.float32).reshape(5, 2)
    if not landmarks:
        raise ValueError(f'{path}: no frame lines after a "FRAME INDEX" header; not a VFHQ annotation file')
    return landmarks, crop


def similarity_to_template(landmarks: np.ndarray, size: int, template: np.ndarray | None = None) -> np.ndarray:
    """The 2x3 similarity transform (rotation, uniform scale, shift) taking ``landmarks`` onto the template
    (by default the FFHQ template of a ``size`` face)."""
    template = template_for_size(size) if template is None else np.asarray(template, dtype=np.float32)
    matrix, _ = cv2.estimateAffinePartial2D(np.asarray(landmarks, dtype=np.float32), template, method=cv2.LMEDS)
    if matrix is None:
        raise ValueError(f'no similarity transform fits landmarks {np.asarray(landmarks).tolist()}')
    return matrix


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int, template: np.ndarray | None = None) -> np.ndarray:
    """Warp ``image`` (H, W, C) BGR, uint8 or float in [0, 1], so its 5 landmarks sit on the FFHQ template of a
    ``size`` x ``size`` face (or on ``template``)."""
    border_value = ALIGN_BORDER_VALUE_BGR if image.dtype == np.uint8 else tuple(v / 255 for v in ALIGN_BORDER_VALUE_BGR)
    return cv2.warpAffine(image, similarity_to_template(landmarks, size, template), (size, size),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=border_value)


def downscale_points(points: np.ndarray, ratio_x: float, ratio_y: float | None = None) -> np.ndarray:
    """Pixel coordinates after resizing an image by ``ratio`` (pixel centres stay centres, as in cv2.resize)."""
    ratio = np.array([ratio_x, ratio_x if ratio_y is None else ratio_y], dtype=np.float32)
    return (np.asarray(points, dtype=np.float32) + 0.5) * ratio - 0.5


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine ``matrix`` to (N, 2) points."""
    points = np.asarray(points, dtype=np.float64)
    return (points @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def align_clip(images: np.ndarray, landmarks: np.ndarray | None, size: int,
               template: np.ndarray | None = None) -> np.ndarray:
    """Align (T, H, W, 3) BGR frames (uint8, or float in [0, 1]) by their landmarks (T, 5, 2) into (T, size, size,
    3) RGB float32 in [0, 1]; without landmarks only convert."""
    if landmarks is not None:
        images = np.stack([align_face(image, points, size, template) for image, points in zip(images, landmarks)])
    return bgr_to_rgb_float(images)


def align_lq_clip(images: np.ndarray, gt_landmarks: np.ndarray, ratio: tuple[float, float], gt_size: int,
                  scale: int) -> np.ndarray:
    """Align LQ frames (T, h, w, 3) BGR whose landmarks are known in GT pixels (``ratio`` = LQ size / GT size, x
    and y) into (T, gt_size/scale, ...) RGB float: landmarks and template both move into LQ pixels, so the LQ face
    lines up with the GT face aligned to ``gt_size``."""
    lq_size = gt_size // scale
    lq_landmarks = downscale_points(gt_landmarks, *ratio)
    lq_template = downscale_points(template_for_size(gt_size), lq_size / gt_size)
    return align_clip(images, lq_landmarks, lq_size, lq_template)
