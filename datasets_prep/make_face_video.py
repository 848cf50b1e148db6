"""Make a test video of faces moving over a background, with an audio track, from the astronaut photograph.

Every face is the astronaut's head (``skimage.data.astronaut()``) cut with a soft elliptical edge, scaled to a
given face width and moved along a straight path; the background is a smooth colour gradient with texture. Options
give a variable frame rate, a scene cut (the background and the face positions change), frames without a face,
rotation metadata and a sine-tone AAC audio track. The landmarks of every face in every frame are known exactly and
returned, so tests can check geometry (:mod:`vfsr_face.synthetic_video`)::

    python -m datasets_prep.make_face_video --output clip.mp4 --size 160x120 --frames 24 --face-width 24
"""
from pathlib import Path

from datasets_prep.cli import ScriptParser
from vfsr_face.synthetic_video import FacePath, VideoSpec, write_video


def main(argv=None):
    parser = ScriptParser(__file__, __doc__)
    parser.add_flag('--output', required=True, old=('--out', ), help='output video file (.mp4)')
    parser.add_argument('--size', default='160x120', help='frame size WIDTHxHEIGHT (default 160x120)')
    parser.add_argument('--frames', type=int, default=24, help='number of frames (default 24)')
    parser.add_argument('--fps', type=int, default=25, help='frame rate (default 25)')
    parser.add_argument('--face-width', type=float, default=40, help='face width in pixels (default 40)')
    args = parser.parse_args(argv)
    try:
        width, height = (int(value) for value in args.size.lower().split('x'))
    except ValueError:
        parser.error(f'--size {args.size!r}: expected WIDTHxHEIGHT, e.g. 160x120')
    spec = VideoSpec(width, height, args.frames, args.fps,
                     [FacePath(args.face_width, start=(0.35, 0.45), end=(0.65, 0.55))])
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    write_video(args.output, spec)
    print(f'wrote {args.output}: {args.frames} frames {width}x{height} at {args.fps} fps, '
          f'face {args.face_width} px wide')


if __name__ == '__main__':
    main()
