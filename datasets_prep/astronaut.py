"""The astronaut photograph that scikit-image ships (``skimage.data.astronaut()``, 512x512): a real face for demos
and tests that needs no download, with its five landmarks.

As a command it writes the photograph and a copy with the five landmarks drawn (to check them by eye), and prints
the landmarks. The photograph and its landmarks live in :mod:`vfsr_face.astronaut`.

Example::

    python -m datasets_prep.astronaut --output astronaut.png
"""
from pathlib import Path

import cv2

from datasets_prep.cli import ScriptParser, run_script
from vfsr_face.astronaut import ASTRONAUT_LANDMARKS, astronaut_bgr


def write_photo(output: str | Path) -> Path:
    """Write the photograph to ``output`` and, beside it, ``<stem>_landmarks<suffix>`` with the landmarks drawn."""
    output = Path(output)
    photo = astronaut_bgr()
    marked = photo.copy()
    for x, y in ASTRONAUT_LANDMARKS:
        cv2.circle(marked, (round(x), round(y)), 3, (0, 255, 0), -1)
    for path, image in ((output, photo), (output.with_name(f'{output.stem}_landmarks{output.suffix}'), marked)):
        if not cv2.imwrite(str(path), image):
            raise ValueError(f'cannot write {path} (is the folder there, and the suffix an image format?)')
    return output


def main():
    parser = ScriptParser(__file__, __doc__)
    parser.add_flag('--output', default='astronaut.png', old=('--out', ),
                    help='the image file to write (default astronaut.png)')

    def write(args):
        write_photo(args.output)
        names = ('image-left eye', 'image-right eye', 'nose', 'image-left mouth', 'image-right mouth')
        for name, (x, y) in zip(names, ASTRONAUT_LANDMARKS):
            print(f'{name:<20} x {x:6.1f}  y {y:6.1f}')

    run_script(parser, write)


if __name__ == '__main__':
    main()
