"""Train with BasicSR's trainer and vfsr's networks: ``python train.py -opt options/train_vidface_tufs.yml``."""
from os import path as osp

from vfsr_cli import run

if __name__ == '__main__':
    run(osp.dirname(osp.abspath(__file__)), is_train=True)
