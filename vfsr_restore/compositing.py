"""Face crops out of frames and restored faces back into upscaled frames.

Coordinates follow OpenCV (pixel centres on integers). A crop is described by the 2x3 matrix taking frame pixels
to crop pixels (:func:`crop_matrix`); pasting a restored crop of another size into a frame upscaled ``upscale``
times uses the exact inverse of that mapping composed with both resizes (:meth:`Compositor.paste`), so that with
an identity restorer the pasted face lands where it was, to a small fraction of a pixel.

The paste is blended with a mask (:mod:`vfsr_face.mask`: the feathered template, or facexlib's face
parsing averaged over the track) times the fade weight of the face.
"""
import cv2
import numpy as np

from vfsr_data.face_landmarks import similarity_to_template
from vfsr_face.mask import TemplateMask
from vfsr_restore.background import lanczos_upscale


def to_3x3(matrix: np.ndarray) -> np.ndarray:
    return np.vstack([np.asarray(matrix, np.float64), [0.0, 0.0, 1.0]])


def resize_matrix(scale_x: float, scale_y: float) -> np.ndarray:
    """The 2x3 map of pixel coordinates when an image is resized by (scale_x, scale_y) (pixel centres kept)."""
    return np.array([[scale_x, 0.0, 0.5 * scale_x - 0.5], [0.0, scale_y, 0.5 * scale_y - 0.5]])


def crop_matrix(landmarks: np.ndarray, crop_size: tuple[int, int], template: np.ndarray | None = None) -> np.ndarray:
    """Frame pixels -> crop pixels for a face: the similarity putting the 5 landmarks on the FFHQ template of a
    square crop (``template`` None, crop_size (w, h) square), or on ``template`` (5, 2) in crop pixels."""
    return similarity_to_template(landmarks, crop_size[0], template).astype(np.float64)


def warp_crop(image: np.ndarray, matrix: np.ndarray, crop_size: tuple[int, int]) -> np.ndarray:
    """Cut a crop (h, w, 3) uint8 out of ``image`` (H, W, 3) with ``matrix`` (frame -> crop); outside the frame the
    edge pixels are repeated (a constant fill would put a frame-edge line into the restorer's input)."""
    scale = np.sqrt(abs(np.linalg.det(np.asarray(matrix)[:, :2])))
    source, matrix = image, np.asarray(matrix, np.float64)
    if scale < 0.5:  # shrinking more than 2x: pre-filter, as bilinear warping alone would alias
        factor = max(scale * 1.5, 1e-3)
        size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
        source = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        ratio = resize_matrix(size[0] / image.shape[1], size[1] / image.shape[0])
        matrix = (to_3x3(matrix) @ np.linalg.inv(to_3x3(ratio)))[:2]
    return cv2.warpAffine(source, matrix, crop_size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


class Compositor:
    """Upscale frames (Lanczos, or ``upsampler``: a :class:`vfsr_restore.background.RealESRGANBackground`) and
    paste restored faces into them through ``face_mask`` (default: :class:`TemplateMask`)."""

    def __init__(self, upscale: int = 1, upsampler=None, face_mask: TemplateMask | None = None):
        if upscale < 1:
            raise ValueError(f'--upscale must be a whole number >= 1, got {upscale}')
        self.upscale, self.upsampler = upscale, upsampler
        self.face_mask = face_mask or TemplateMask()

    def background(self, image: np.ndarray) -> np.ndarray:
        """The frame upscaled, float32 (H*u, W*u, 3)."""
        if self.upsampler is None or self.upscale == 1:
            return lanczos_upscale(image, self.upscale)
        return self.upsampler(image, self.upscale)

    def paste(self, canvas: np.ndarray, restored: np.ndarray, matrix: np.ndarray, crop_size: tuple[int, int],
              alpha: float = 1.0, track_id: int = 0) -> None:
        """Blend ``restored`` (h, w, 3) uint8, a face of track ``track_id``, into ``canvas`` (float32, upscaled
        frame) in place. ``matrix``: frame -> crop of ``crop_size`` (w, h), the crop the restorer was given;
        ``restored`` may be larger (the restorer's output scale). Call it in frame order per track (the parsing
        mask averages over the track)."""
        height, width = restored.shape[:2]
        # upscaled-frame pixels -> restored-crop pixels
        to_crop = (to_3x3(resize_matrix(width / crop_size[0], height / crop_size[1])) @ to_3x3(matrix)
                   @ np.linalg.inv(to_3x3(resize_matrix(self.upscale, self.upscale))))
        shrink = np.sqrt(abs(np.linalg.det(to_crop[:2, :2])))  # restored pixels per canvas pixel
        image, mask = restored.astype(np.float32), self.face_mask(track_id, restored)
        if shrink > 3:  # reduce with area averaging to 3x the canvas resolution first: sampling alone would alias
            factor = 3 / shrink
            size = (max(1, round(width * factor)), max(1, round(height * factor)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask, size, interpolation=cv2.INTER_AREA)
            to_crop = to_3x3(resize_matrix(size[0] / width, size[1] / height)) @ to_crop
        # only the canvas region the crop covers
        corners = np.array([[-1, -1, 1], [image.shape[1], -1, 1], [-1, image.shape[0], 1],
                            [image.shape[1], image.shape[0], 1]], np.float64)
        on_canvas = corners @ np.linalg.inv(to_crop)[:2].T
        x0, y0 = np.floor(on_canvas.min(axis=0)).astype(int).clip(0, [canvas.shape[1], canvas.shape[0]])
        x1, y1 = np.ceil(on_canvas.max(axis=0)).astype(int).clip(0, [canvas.shape[1], canvas.shape[0]])
        if x1 <= x0 or y1 <= y0:
            return
        region = to_crop @ to_3x3(np.array([[1.0, 0, x0], [0, 1.0, y0]]))
        face = cv2.warpAffine(image, region[:2], (x1 - x0, y1 - y0), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)
        weight = cv2.warpAffine(mask, region[:2], (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)[..., None] * alpha
        window = canvas[y0:y1, x0:x1]
        window += weight * (face - window)
