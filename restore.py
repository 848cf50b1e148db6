"""Restore the faces of a video: ``python restore.py in.mp4 -o out.mp4`` (= ``vfsr-restore``; ``--help`` lists
every option)."""
from vfsr_restore.cli import entry_point

if __name__ == '__main__':
    entry_point()
