"""KEEP's stage-3 video discriminator: a spatio-temporal patch discriminator of 3D convolutions.

The official class is ``Discriminator3D`` of the KEEP training code (``basicsr/archs/vqgan_arch.py``), built by the
stage-3 options as ``Discriminator3D(in_channels=3, nf=32, use_sigmoid=False)``. It is the temporal PatchGAN of
STTN/FuseFormer: six Conv3d layers with kernel (3, 5, 5) and stride (1, 2, 2), so time keeps its length and each
layer halves height and width; spectral norm on all but the last; channels nf, 2nf, 4nf, 4nf, 4nf, 4nf.

State-dict keys are the official ones (``layers.{0,2,4,6,8}.weight_orig/_u/_v``, ``layers.10.weight/bias``), so
official discriminator checkpoints and training states load with ``strict=True``. Checkpoints written by earlier
vfsr versions name the same Sequential ``conv``; :meth:`Discriminator3D.upgrade_checkpoint` renames them on load.
"""
from collections.abc import Mapping

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

KERNEL = (3, 5, 5)
STRIDE = (1, 2, 2)
# The name of the layer Sequential in checkpoints of earlier vfsr versions.
LEGACY_PREFIX = 'conv.'


@ARCH_REGISTRY.register()
class Discriminator3D(nn.Module):
    """Video patch discriminator.

    Args:
        in_channels: channels of a frame (3 for RGB).
        nf: channels of the first layer; later layers use 2nf and 4nf.
        use_sigmoid: squash the scores to (0, 1); KEEP trains with hinge loss on raw scores (False).
        use_spectral_norm: spectral normalisation (and no bias) for the first five convolutions; the last one never
            has it and always has a bias.

    Input (b, t, c, h, w) -> scores (b, t, 4nf, h', w'), each spatial size roughly divided by 64. The convolutions
    keep PyTorch's default init, as the official class (its init hook touches only Linear/Embedding/LayerNorm).
    """

    def __init__(self, in_channels=3, nf=32, use_sigmoid=False, use_spectral_norm=True):
        super().__init__()
        self.use_sigmoid = use_sigmoid
        widths = [in_channels, nf, 2 * nf, 4 * nf, 4 * nf, 4 * nf, 4 * nf]
        layers = []
        for index, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:])):
            last = index == len(widths) - 2
            # The first layer pads time and space by 1, the others pad space by 2 (official).
            padding = 1 if index == 0 else (1, 2, 2)
            normalized = use_spectral_norm and not last
            conv = nn.Conv3d(c_in, c_out, KERNEL, STRIDE, padding, bias=not normalized)
            layers.append(nn.utils.spectral_norm(conv) if normalized else conv)
            if not last:
                layers.append(nn.LeakyReLU(0.2, inplace=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (b, t, c, h, w) -> scores (b, t, 4nf, h', w')."""
        if frames.dim() != 5:
            raise ValueError(f'Discriminator3D expects a clip (b, t, c, h, w), got shape {tuple(frames.shape)}')
        scores = self.layers(frames.transpose(1, 2))
        if self.use_sigmoid:
            scores = torch.sigmoid(scores)
        return scores.transpose(1, 2)

    @staticmethod
    def upgrade_checkpoint(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename the ``conv.N.*`` keys of earlier vfsr checkpoints to the official ``layers.N.*`` (used by
        :mod:`vfsr_io.checkpoint`; official keys pass unchanged)."""
        return {'layers.' + key.removeprefix(LEGACY_PREFIX) if key.startswith(LEGACY_PREFIX) else key: value
                for key, value in state_dict.items()}
