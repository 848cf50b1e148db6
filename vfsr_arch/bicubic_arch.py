"""Bicubic interpolation as a network, so the Bicubic baseline runs through the same data, model and metrics."""
import torch
from basicsr.utils.matlab_functions import imresize
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn


def matlab_bicubic_upsample(x: torch.Tensor, scale: int) -> torch.Tensor:
    """MATLAB ``imresize(x, scale, 'bicubic')`` of every image in ``x`` (..., c, h, w) -> (..., c, scale*h, scale*w).

    MATLAB's kernel (a = -0.5) differs from ``F.interpolate``'s (a = -0.75); papers report MATLAB's bicubic.
    """
    images = x.reshape(-1, *x.shape[-3:])
    upsampled = torch.stack([imresize(image.float().cpu(), scale) for image in images]).to(x)
    return upsampled.reshape(*x.shape[:-2], *upsampled.shape[-2:])


@ARCH_REGISTRY.register()
class BicubicUpsampler(nn.Module):
    """Parameter-free baseline: every snapshot (b, t, 3, h, w) -> (b, t, 3, scale*h, scale*w) by MATLAB bicubic.

    It has nothing to train; use it with ``test.py`` (``options/test_bicubic_tufs.yml``).
    """

    def __init__(self, scale: int = 8):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return matlab_bicubic_upsample(x, self.scale)
