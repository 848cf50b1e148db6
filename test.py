"""Test with BasicSR's test pipeline and vfsr's networks: ``python test.py -opt options/test_vidface_tufs.yml``."""
from os import path as osp

from vfsr_cli import run

if __name__ == '__main__':
    run(osp.dirname(osp.abspath(__file__)), is_train=False)
