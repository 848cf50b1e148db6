"""Bicubic interpolation as a network, so the Bicubic baseline runs through the same data, model and metrics."""
import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from vfsr_data.matlab_resize import matlab_resize


@ARCH_REGISTRY.register()
class BicubicUpsampler(nn.Module):
    """Parameter-free baseline: every snapshot (b, t, 3, h, w) -> (b, t, 3, scale*h, scale*w) by MATLAB bicubic.

    MATLAB's kernel (a = -0.5) differs from ``F.interpolate``'s (a = -0.75); papers report MATLAB's bicubic.
    It has nothing to train; use it with ``test.py`` (``options/test_bicubic_tufs.yml``).
    """

    def __init__(self, scale: int = 8):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return matlab_resize(x, self.scale)
