"""Build VidFace's IJB-C test set in the TUFs-145K layout from IJB-C's video frames, the same way ``make_tufs``
builds TUFs clips from videos (detection, tracking, 7 snapshots by quality and pose variety, 128x96 crops with 5
landmarks; see ``datasets_prep/make_tufs.py`` for what is approximated).

Input: one folder of frame images per video, at any depth under ``--frames`` (IJB-C ships its video frames as
single images; its metadata names the video of each frame: copy or link each video's frames into a folder of its
own first, e.g. ``<frames>/<subject id>/<video id>/<frame>.png``). Frames are read in file-name order. Output as
``make_tufs`` (``<clip>`` = the folders above the video folder joined by '_', ``<seq>`` = the video folder's
name), all in the test split (IJB-C is a test set): ``<output>/test/<clip>/<seq>/im1..im7.png``,
``<output>/meta_info_test.txt`` and ``<output>/landmarks.npz``, so that ``--output datasets/IJBC`` is what
``options/test_vidface_ijbc.yml`` and ``options/test_bicubic_ijbc.yml`` read. Resumable; each sequence is written
atomically.

Example::

    python -m datasets_prep.make_ijbc --frames datasets/IJBC/video_frames --output datasets/IJBC
"""
from datasets_prep.cli import ScriptParser, run_script
from datasets_prep.make_tufs import add_face_flags, make_tufs, print_result


def main():
    parser = ScriptParser(__file__, __doc__)
    parser.add_flag('--frames', required=True, help='root of the per-video frame folders (searched recursively)')
    parser.add_flag('--output', required=True,
                    help='root of the TUFs layout, e.g. datasets/IJBC (resumed when it exists)')
    add_face_flags(parser, min_face_size=24, why=': IJB-C faces are often small')
    run_script(parser, lambda args: print_result(
        make_tufs(args.frames, args.output, args.detector, args.weights_dir, args.device, args.min_face_size,
                  args.crop_scale, test_fraction=1.0, frame_folders=True), args.output))


if __name__ == '__main__':
    main()
