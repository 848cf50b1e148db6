"""``vfsr-app``: serve the vfsr restore page on this machine (docs/app.md).

Examples::

    vfsr-app                                   # http://127.0.0.1:7860, weights from ./weights
    vfsr-app --port 8000 --weights-dir /data/weights --device cuda
    vfsr-app --host 0.0.0.0 --max-seconds 120  # reachable from the network (no password: a trusted network only)

The page takes a video or an image (recognised by content), restores it with one of the models whose weights are
present (identity and the demo VidFace of ``make demo`` need no download; nothing is ever downloaded) and shows
the input and the result side by side, the report and the stability of both. One restore runs at a time; the
others wait in a queue whose position the page shows.
"""
import argparse
import sys

# Only the standard library here: --help and usage errors answer before Gradio and torch load.


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='vfsr-app', description='Serve a web page that restores the faces of videos and images with '
        'vfsr-restore (docs/app.md).', epilog=__doc__.split('\n\n', 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--host', default='127.0.0.1', help='address to listen on (default 127.0.0.1: this '
                        'machine only)')
    parser.add_argument('--port', type=int, default=7860, help='port to listen on (default 7860)')
    parser.add_argument('--weights-dir', default='weights', help='folder of the official weights, as '
                        'vfsr-restore --weights-dir (default weights)')
    parser.add_argument('--demo-weights', default='experiments/demo_vidface/models/net_g_latest.pth',
                        help='the small VidFace that make demo trains (default %(default)s)')
    parser.add_argument('--demo-opt', default='options/demo_vidface.yml', help='its option file (default '
                        '%(default)s)')
    parser.add_argument('--device', default='auto', help='cpu, cuda, cuda:N or mps (default auto: cuda when '
                        'available)')
    parser.add_argument('--max-upload-mb', type=float, default=500, help='largest upload in MB (default 500)')
    parser.add_argument('--max-seconds', type=float, default=60, help='longest video to restore, in seconds of '
                        'the part between start and end (default 60)')
    parser.add_argument('--stability-frames', type=int, default=100, help='frames over which the stability of '
                        'input and result is measured (default 100; 0: not measured)')
    parser.add_argument('--keep-minutes', type=float, default=60, help='a finished job\'s files are removed this '
                        'long after it ends (default 60)')
    parser.add_argument('--work-dir', help='folder for uploads and results (default: a new temporary folder, '
                        'removed at exit)')
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f'--port must be in 1..65535, got {args.port}')
    for flag in ('max_upload_mb', 'max_seconds', 'keep_minutes'):
        if getattr(args, flag) <= 0:
            parser.error(f'--{flag.replace("_", "-")} must be > 0, got {getattr(args, flag)}')
    if args.stability_frames < 0:
        parser.error(f'--stability-frames must be >= 0, got {args.stability_frames}')
    from vfsr_app.page import serve

    return serve(args)


def entry_point() -> None:
    sys.exit(main())


if __name__ == '__main__':
    entry_point()
