"""KEEP's stage-3 video discriminator: a spatio-temporal patch discriminator of 3D convolutions.

The official option files name it ``Discriminator3D(in_channels=3, nf=32, use_sigmoid=False)``. It is the temporal
PatchGAN of STTN/FuseFormer: six Conv3d layers with kernel (3, 5, 5) and stride (1, 2, 2), so time keeps its length
and each layer halves height and width; spectral norm on all but the last; channels nf, 2nf, 4nf, 4nf, 4nf, 4nf.
The state_dict keys are those of that layout (``conv.{0,2,4,6,8,10}``, spectral norm as ``weight_orig/_u/_v``).
"""
import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

KERNEL = (3, 5, 5)
STRIDE = (1, 2, 2)


@ARCH_REGISTRY.register()
class Discriminator3D(nn.Module):
    """Video patch discriminator.

    Args:
        in_channels: channels of a frame (3 for RGB).
        nf: channels of the first layer; later layers use 2nf and 4nf.
        use_sigmoid: squash the scores to (0, 1); KEEP trains with hinge loss on raw scores (False).
        use_spectral_norm: spectral normalisation of the first five convolutions (the last one never has it).

    Input (b, t, c, h, w) -> scores (b, t, 4nf, h', w'), each spatial size roughly divided by 64.
    """

    def __init__(self, in_channels=3, nf=32, use_sigmoid=False, use_spectral_norm=True):
        super().__init__()
        self.use_sigmoid = use_sigmoid
        widths = [in_channels, nf, 2 * nf, 4 * nf, 4 * nf, 4 * nf, 4 * nf]
        layers = []
        for index, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:])):
            last = index == len(widths) - 2
            # The first layer pads time and space by 1 (as the original); the others keep 'same'-style padding.
            padding = 1 if index == 0 else (1, 2, 2)
            normalized = use_spectral_norm and not last
            conv = nn.Conv3d(c_in, c_out, KERNEL, STRIDE, padding, bias=not normalized)
            nn.init.normal_(conv.weight, 0.0, 0.02)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
            layers.append(nn.utils.spectral_norm(conv) if normalized else conv)
            if not last:
                layers.append(nn.LeakyReLU(0.2, inplace=True))
        self.conv = nn.Sequential(*layers)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (b, t, c, h, w) -> scores (b, t, 4nf, h', w')."""
        if frames.dim() != 5:
            raise ValueError(f'Discriminator3D expects a clip (b, t, c, h, w), got shape {tuple(frames.shape)}')
        scores = self.conv(frames.transpose(1, 2))
        if self.use_sigmoid:
            scores = torch.sigmoid(scores)
        return scores.transpose(1, 2)
