"""``vfsr-restore``: restore the faces of real videos (or frame folders, or images) with KEEP, CodeFormer or VidFace.

Examples::

    vfsr-restore in.mp4 -o out.mp4                                  # KEEP, weights/KEEP/KEEP-b76feb75.pth
    vfsr-restore in.mp4 -o out.mp4 --model codeformer --fidelity 0.7 --upscale 2
    vfsr-restore tiny.mp4 -o out.mp4 --model vidface --weights experiments/demo_vidface/models/net_g_latest.pth \\
        --opt options/demo_vidface.yml --upscale 8 --compare
    vfsr-restore videos/ -o restored/                              # every video of a folder (or a quoted glob)
    torchrun --standalone --no-python --nproc_per_node=2 vfsr-restore videos/ -o restored/   # 2 processes share them

Expected problems (unreadable input, missing weights, bad options) print one line ``vfsr-restore: error: ...`` and
exit with 1 (input or weights) or 2 (usage); no partial output file is left under the output name.
"""
import argparse
import glob
import os
import sys
import warnings
from pathlib import Path

from vfsr_io.stopping import TERMINATED, Terminated, stop_exit_code, stop_signals, stops_held

# Only the standard library and vfsr_io above: --help and usage errors answer at once; torch loads after.
VIDEO_SUFFIX = '.mp4'


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The default after each option that has one; the examples below as written."""

    def _get_help_string(self, action):
        if action.default in (None, False, argparse.SUPPRESS) or 'default' in (action.help or ''):
            return action.help
        return f'{action.help} (default: %(default)s)'


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='vfsr-restore', description='Restore the faces in videos, frame folders or images (KEEP, CodeFormer, '
        'VidFace). Frame count, timestamps, rotation and audio are kept; output size = input size x --upscale. '
        'Reference: docs/restore.md.', epilog=__doc__.split('\n\n', 1)[1], formatter_class=HelpFormatter)
    parser.add_argument('input', help='a video (any format PyAV decodes, recognised by content), a folder of frames, '
                        'an image, a folder of videos, or a quoted glob pattern of videos')
    parser.add_argument('-o', '--output', required=True, help='output file (its suffix picks the container: .mp4, '
                        '.mov, .mkv, .webm; an image suffix for an image input), or a folder for several inputs')
    model = parser.add_argument_group('model')
    model.add_argument('--model', default='keep', choices=['keep', 'keep-asian', 'codeformer', 'vidface', 'identity'],
                       help='the restoration network (official configuration); identity only pastes the aligned '
                       'crops back (a check of the geometry)')
    model.add_argument('--opt', help='a BasicSR option file whose network_g builds the network instead of the '
                       'official configuration (e.g. a small network you trained)')
    model.add_argument('--weights', help='the weights file (default: the official file under --weights-dir)')
    model.add_argument('--weights-dir', default='weights', help='folder of the official weights '
                       '(KEEP/, CodeFormer/, vidface/, facexlib/)')
    model.add_argument('--random-weights', action='store_true', help='do not load weights (random network: tests '
                       'and speed measurements only)')
    model.add_argument('--seed', type=int, default=0, help='random seed of --random-weights')
    model.add_argument('--fidelity', type=float, default=0.5, help='CodeFormer fidelity weight w in [0, 1] '
                       '(1: closer to the input, 0: more codebook detail)')
    model.add_argument('--max-length', type=int, default=20, help='KEEP: frames restored together (its gain '
                       'network sees a whole chunk)')
    model.add_argument('--keep-restart', action='store_true', help='KEEP: restart the Kalman recursion at every '
                       'chunk as the official script (default: carry it on, no seam every --max-length frames)')
    model.add_argument('--device', default='auto', help='cpu, cuda, cuda:N or mps (auto: cuda when available)')
    model.add_argument('--precision', default='fp32', choices=['fp32', 'bf16', 'bf16-fast', 'fp16'],
                       help='autocast precision of the network: bf16 (CPU with AVX512-BF16/AMX, or GPU) keeps the '
                       'codes of fp32; bf16-fast also runs the encoders in bf16 (faster, a few codes may change); '
                       'fp16: GPU')
    model.add_argument('--compile', action='store_true', help='torch.compile the network (minutes to compile; '
                       'where it cannot, a one-line warning and the plain network)')
    faces = parser.add_argument_group('faces')
    faces.add_argument('--detector', default='mtcnn', choices=['mtcnn', 'retinaface'], help='face detector: mtcnn '
                       '(weights inside facenet-pytorch, no download) or retinaface (facexlib, '
                       'detection_Resnet50_Final.pth in --weights-dir)')
    faces.add_argument('--faces', default='all', help='which faces: all, largest, center (one face, kept until its '
                       'track ends) or track ids such as 1,3 (see the report or --debug)')
    faces.add_argument('--min-face-size', type=float, default=24, help='smallest face (pixels, box side) that '
                       'starts a track; frames are shrunk for detection no further than keeps it detectable')
    faces.add_argument('--detect-max-side', type=int, default=640, help='frames are shrunk to this long side for '
                       'detection (faster), within the --min-face-size limit; 0: full size')
    faces.add_argument('--detect-every', type=int, default=1, help='detect faces on every N-th frame only (and on '
                       'the first frame of each scene); the frames between are interpolated along the tracks '
                       '(faster; at most --max-gap)')
    faces.add_argument('--min-score', type=float, default=0.9, help='smallest detector confidence kept')
    faces.add_argument('--detector-batch', type=int, default=8, help='frames per detection batch')
    faces.add_argument('--smoothing', default='gaussian', choices=['gaussian', 'causal', 'none'],
                       help='landmark smoothing per track: Gaussian over time, a causal moving average, or none')
    faces.add_argument('--sigma', type=float, default=2.0, help='Gaussian smoothing width in frames')
    faces.add_argument('--ema', type=float, default=0.6, help='causal smoothing: weight of the new frame')
    faces.add_argument('--max-gap', type=int, default=5, help='longest detection gap (frames) filled by '
                       'interpolation inside a track')
    faces.add_argument('--fade', type=int, default=3, help='frames over which a face that appears or disappears '
                       'is faded in or out')
    faces.add_argument('--scene-threshold', type=float, default=0.5, help='histogram change (0-1) that counts as '
                       'a scene cut (tracks, smoothing and KEEP state restart)')
    video = parser.add_argument_group('output video')
    video.add_argument('--upscale', type=int, default=1, help='output size = input size x this (whole number); the '
                       'background is upscaled with Lanczos')
    video.add_argument('--background-weights', help='Real-ESRGAN weights (RealESRGAN_x4plus.pth or _x2plus.pth) '
                       'to upscale the background, tiled (default: Lanczos)')
    video.add_argument('--background-tile', type=int, default=256, help='Real-ESRGAN tile size in input pixels')
    video.add_argument('--mask', choices=('template', 'parsing'), default='template', help='paste-back mask: a '
                       'feathered square, or facexlib face parsing (parsing_parsenet.pth in --weights-dir/facexlib), '
                       'averaged over each track')
    video.add_argument('--mask-weights', help='face-parsing weights for --mask parsing (default: '
                       'parsing_parsenet.pth under --weights-dir)')
    video.add_argument('--mask-ema', type=float, default=0.5, help='--mask parsing: weight of the new frame in the '
                       "mask's moving average over a track (1: no averaging)")
    video.add_argument('--start', type=float, help='first second to restore (audio trimmed in sync)')
    video.add_argument('--end', type=float, help='second to stop at (exclusive)')
    video.add_argument('--codec', default='libx264', help='video encoder (PyAV/FFmpeg name)')
    video.add_argument('--crf', type=int, default=17, help='constant rate factor (libx264/libx265; lower is better)')
    video.add_argument('--preset', default='medium', help='encoder preset (libx264/libx265)')
    video.add_argument('--pix-fmt', default='yuv420p', help='pixel format (yuv444p is used when an odd size '
                       'cannot be 4:2:0)')
    video.add_argument('--segment-frames', type=int, default=300, help='frames per resumable segment (at least; '
                       'the state is saved at each boundary, which changes no pixel)')
    video.add_argument('--compare', action='store_true', help='also write <output>_compare: input | restored side '
                       'by side')
    video.add_argument('--debug', action='store_true', help='also write <output>_debug: boxes, landmarks, track ids')
    video.add_argument('--report', help='JSON report path (default <output>.json)')
    video.add_argument('--overwrite', action='store_true', help='restore again when the output exists (default: '
                       'skip it)')
    video.add_argument('--no-progress', action='store_true', help='no progress bar')
    return parser


def resolve_device(name: str) -> str:
    import torch

    if name == 'auto':
        if torch.cuda.is_available():
            return f'cuda:{int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count()}'
        return 'cpu'
    if name.startswith('cuda') and not torch.cuda.is_available():
        raise ValueError(f'--device {name}: CUDA is not available on this machine')
    if name == 'mps' and not torch.backends.mps.is_available():
        raise ValueError('--device mps: MPS is not available on this machine')
    return name


def list_jobs(input_arg: str, output_arg: str) -> list[tuple[Path, Path]]:
    """(input, output) pairs: one input, or every video of a folder / glob into the output folder."""
    from vfsr_restore.media import MediaError, output_format

    path = Path(input_arg)
    if any(char in input_arg for char in '*?['):
        inputs = sorted(Path(name) for name in glob.glob(input_arg) if Path(name).is_file())
        if not inputs:
            raise MediaError(f'{input_arg}: the pattern matches no file')
    elif path.is_dir() and not _is_frames_folder(path):
        inputs = sorted(file for file in path.iterdir() if file.is_file() and not file.name.startswith('.'))
        if not inputs:
            raise MediaError(f'{path}: the folder is empty')
    else:
        output = Path(output_arg)
        return [(path, output)]
    out_dir = Path(output_arg)
    if out_dir.suffix and output_format(out_dir):
        raise MediaError(f'{output_arg}: several inputs need an output folder, not a file')
    return [(file, out_dir / (file.stem + VIDEO_SUFFIX)) for file in inputs]


def _is_frames_folder(path: Path) -> bool:
    from vfsr_data.clip_frames import IMAGE_EXTENSIONS

    files = [file for file in path.iterdir() if file.is_file() and not file.name.startswith('.')]
    return bool(files) and all(file.suffix.lower() in IMAGE_EXTENSIONS for file in files)


def read_network_opt(path: str | None) -> dict | None:
    if path is None:
        return None
    import yaml

    try:
        options = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f'--opt {path}: cannot read the option file ({error})') from None
    if not isinstance(options, dict) or not isinstance(options.get('network_g'), dict):
        raise ValueError(f'--opt {path}: the option file has no network_g section')
    return options['network_g']


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f'vfsr-restore: warning: {message}\n'


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_arguments(args, parser)
    with stop_signals():
        try:
            with stops_held():  # torch, basicsr, the networks: a stop inside an import could surface as another error
                import_libraries()
            return restore(args)
        except (KeyboardInterrupt, Terminated) as stop:
            code = stop_exit_code(stop)
            word = 'terminated' if code == TERMINATED else 'interrupted'
            print(f'vfsr-restore: {word}; finished segments are kept: rerun the same command to continue',
                  file=sys.stderr)
            return code


def import_libraries() -> None:
    import vfsr_face.detection  # noqa: F401
    import vfsr_face.mask  # noqa: F401
    import vfsr_restore.pipeline  # noqa: F401
    import vfsr_restore.restorers  # noqa: F401


def restore(args) -> int:
    """Restore every job of ``args``: inputs and weights checked first, then the networks loaded once."""
    from vfsr_io.checkpoint import CheckpointError
    from vfsr_restore.media import MediaError, check_output_suffix, probe
    from vfsr_restore.pipeline import restore_file

    rank, world = int(os.environ.get('RANK', 0)), int(os.environ.get('WORLD_SIZE', 1))
    try:
        settings = restore_settings(args)
        jobs = list_jobs(args.input, args.output)
        jobs = jobs[rank::world]  # torchrun: each process restores its share of the inputs
        todo = [(src, dst) for src, dst in jobs if args.overwrite or not dst.exists()]
        for src, dst in jobs:
            if (src, dst) not in todo:
                print(f'vfsr-restore: {dst} exists, skipped (--overwrite to redo it)', file=sys.stderr)
        if not todo:
            return 0
        if len(jobs) == 1:  # a bad input or output name is reported before any network is loaded
            check_output_suffix(probe(todo[0][0]), todo[0][1])
        check_weights(args)
        detector, restorer, (upsampler, face_mask) = build_networks(args, settings)
        failures = 0
        for src, dst in todo:
            try:
                report = restore_file(src, dst, settings, detector, restorer, args.report if len(jobs) == 1 else None,
                                      progress=not args.no_progress, upsampler=upsampler, face_mask=face_mask)
                tracks = len(report['tracks'])
                print(f'vfsr-restore: wrote {dst} ({report["frames_out"]} frames, {tracks} face '
                      f'track{"" if tracks == 1 else "s"}, {report["processing_fps"]} frames/s)', file=sys.stderr)
            except (MediaError, OSError) as error:
                if len(jobs) == 1:
                    raise
                failures += 1
                print_error(error)
        return 1 if failures else 0
    except (MediaError, CheckpointError, OSError, ImportError) as error:
        print_error(error)
        return 1
    except ValueError as error:
        print_error(error)
        return 2


def print_error(error: Exception) -> None:
    """``vfsr-restore: error:`` before each line of the message (several missing files: one line each)."""
    for line in str(error).splitlines():
        print(f'vfsr-restore: error: {line}', file=sys.stderr)


def check_weights(args) -> None:
    """Every weights file the networks will read exists: all missing ones named in one error, before any loads."""
    from vfsr_face.detection import RETINAFACE_RELEASE, detector_weights
    from vfsr_face.mask import PARSING_RELEASE, mask_weights
    from vfsr_io.checkpoint import MissingCheckpointError, missing_files_message
    from vfsr_restore.background import REALESRGAN_RELEASES
    from vfsr_restore.restorers import restorer_weights

    restorer_file, restorer_release = (None, None) if args.random_weights else restorer_weights(
        args.model, args.weights, args.weights_dir)
    needed = [(f'{args.model} weights', restorer_file, restorer_release),
              ('RetinaFace weights', detector_weights(args.detector, args.weights_dir), RETINAFACE_RELEASE),
              ('face-parsing weights', mask_weights(args.mask, args.mask_weights, args.weights_dir), PARSING_RELEASE),
              ('Real-ESRGAN weights', args.background_weights, REALESRGAN_RELEASES)]
    missing = [(what, path, release, None) for what, path, release in needed
               if path is not None and not Path(path).expanduser().is_file()]
    if missing:
        raise MissingCheckpointError(missing_files_message(missing))


def check_arguments(args, parser) -> None:
    """Usage errors (exit 2), found from the arguments alone."""
    if args.upscale < 1:
        parser.error(f'--upscale must be >= 1, got {args.upscale}')
    if args.segment_frames < 1:
        parser.error(f'--segment-frames must be >= 1, got {args.segment_frames}')
    if args.start is not None and args.end is not None and args.end <= args.start:
        parser.error(f'--end ({args.end}) must be after --start ({args.start})')
    if not 1 <= args.detect_every <= max(args.max_gap, 1):
        parser.error(f'--detect-every must be between 1 and --max-gap ({args.max_gap}), got {args.detect_every}')
    if not 0 <= args.fidelity <= 1:
        parser.error(f'--fidelity must be in [0, 1], got {args.fidelity}')
    if not 0 < args.mask_ema <= 1:
        parser.error(f'--mask-ema must be in (0, 1], got {args.mask_ema}')


def restore_settings(args):
    """The :class:`RestoreSettings` of parsed arguments (also used by vfsr-app, which parses its form the same way)."""
    from vfsr_restore.media import EncoderSettings
    from vfsr_restore.pipeline import RestoreSettings

    network_opt = read_network_opt(args.opt)
    extra = {'network_g': network_opt, 'weights': args.weights, 'weights_dir': args.weights_dir,
             'random_weights': args.random_weights, 'seed': args.seed, 'fidelity': args.fidelity,
             'max_length': args.max_length,
             'keep_restart': args.keep_restart, 'precision': args.precision, 'compile': args.compile,
             'background_weights': args.background_weights, 'background_tile': args.background_tile,
             'mask': args.mask, 'mask_weights': args.mask_weights, 'mask_ema': args.mask_ema}
    return RestoreSettings(
        model=args.model, upscale=args.upscale, faces=args.faces, min_face_size=args.min_face_size,
        detector=args.detector, detector_batch=args.detector_batch, min_score=args.min_score,
        detect_max_side=args.detect_max_side or 10 ** 9, detect_every=args.detect_every,
        smoothing=args.smoothing, sigma=args.sigma, ema=args.ema, max_gap=args.max_gap, fade=args.fade,
        scene_threshold=args.scene_threshold, start=args.start, end=args.end, segment_frames=args.segment_frames,
        encoder=EncoderSettings(args.codec, args.crf, args.preset, args.pix_fmt), compare=args.compare,
        debug=args.debug, fingerprint_extra=extra)


def build_networks(args, settings):
    """The detector, the restorer and (background upsampler, face mask) that ``args`` ask for, loaded once."""
    import torch

    from vfsr_face.detection import build_face_detector
    from vfsr_face.mask import build_face_mask
    from vfsr_restore.restorers import build_restorer
    from vfsr_restore.tracking import FaceSelection

    FaceSelection(settings.faces)  # checks the --faces value before anything is loaded
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)  # --random-weights: the same network in every run
    detector = build_face_detector(settings.detector, args.weights_dir, device, batch_size=settings.detector_batch,
                                   min_score=settings.min_score)
    extra = settings.fingerprint_extra
    restorer = build_restorer(args.model, extra['network_g'], args.weights, args.weights_dir, device,
                              args.precision, args.fidelity, args.max_length, args.keep_restart, args.random_weights,
                              args.compile)
    upsampler = None
    if args.background_weights:
        from vfsr_restore.background import RealESRGANBackground

        upsampler = RealESRGANBackground(args.background_weights, device, args.background_tile,
                                         precision=args.precision)
    face_mask = build_face_mask(args.mask, args.mask_weights, args.weights_dir, device, args.mask_ema)
    return detector, restorer, (upsampler, face_mask)


def entry_point() -> None:
    warnings.formatwarning = one_line_warning
    sys.exit(main())


if __name__ == '__main__':
    entry_point()
