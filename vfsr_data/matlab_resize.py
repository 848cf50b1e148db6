"""MATLAB ``imresize(..., 'bicubic')`` as two cached matrices, for batches of small images.

BasicSR's :func:`basicsr.utils.matlab_functions.imresize` reproduces MATLAB (cubic kernel a = -0.5, anti-aliasing
when shrinking, symmetric borders) one image at a time. Resizing is linear and separable, so for a given size it is
``R_h @ image @ R_w^T``; the matrices are read off BasicSR's own function once (resizing indicator images) and
cached, which makes the TUFs x1/8 LR and the x8 bicubic baseline a pair of small matrix products per batch.
"""
from functools import lru_cache

import torch
from basicsr.utils.matlab_functions import imresize


@lru_cache(maxsize=16)
def resize_matrices(height: int, width: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(R_h (out_h, height), R_w (out_w, width))`` such that MATLAB's resize of ``x`` is ``R_h @ x @ R_w^T``."""
    # channel j of the first input is 1 on row j; BasicSR's weights sum to 1 along each axis, so the resized
    # channel j is column j of R_h, constant across the width (and likewise for the columns)
    rows = imresize(torch.eye(height)[:, :, None].expand(height, height, width).contiguous(), scale)
    columns = imresize(torch.eye(width)[:, None, :].expand(width, height, width).contiguous(), scale)
    return rows[:, :, 0].T.contiguous(), columns[:, 0, :].T.contiguous()


def matlab_resize(images: torch.Tensor, scale: float) -> torch.Tensor:
    """MATLAB bicubic resize of ``images`` (..., h, w) by ``scale`` -> (..., ceil(scale*h), ceil(scale*w))."""
    rows, columns = resize_matrices(images.shape[-2], images.shape[-1], scale)
    rows, columns = rows.to(images), columns.to(images)
    return rows @ images @ columns.T
