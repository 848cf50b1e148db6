"""The astronaut photograph that scikit-image ships (``skimage.data.astronaut()``, 512x512): a real face that needs
no download, with its five landmarks. It frames the demo TUFs set, so its landmarks are also the template that
VidFace's snapshots are cropped to (``vfsr_restore``'s VidFace restorer)."""
import cv2
import numpy as np
import skimage.data

# Measured once by eye on an enlarged crop, pixel (x, y), OpenCV convention (pixel centres on integers): the eye on
# the image's left, the eye on the image's right, nose tip, left mouth corner, right mouth corner.
ASTRONAUT_LANDMARKS = np.array([[204.0, 101.0], [247.0, 103.0], [224.0, 127.0], [203.0, 142.0], [245.0, 141.0]])
# The point between the eyes and the mouth that synthetic framings centre, and the face width they frame.
ASTRONAUT_FACE_CENTRE = (224.0, 120.0)
ASTRONAUT_FACE_WIDTH = 135.0


def astronaut_bgr() -> np.ndarray:
    """The photograph as an OpenCV BGR uint8 image (512, 512, 3)."""
    return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
