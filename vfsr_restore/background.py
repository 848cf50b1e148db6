"""Upscaling the frame around the faces: Lanczos, or Real-ESRGAN (basicsr's ``RRDBNet``) when its weights are given.

Real-ESRGAN runs tile by tile (``tile`` pixels plus ``pad`` pixels of context on each side, cut away after), so its
memory does not depend on the frame size; its output (x2 or x4, read from the checkpoint) is brought to exactly the
requested ``--upscale`` with Lanczos when the factors differ. The network's shape (features, blocks, growth channels,
scale) is read from the checkpoint itself, so ``RealESRGAN_x4plus.pth`` and ``RealESRGAN_x2plus.pth`` both work.
"""
import vfsr_compat  # noqa: F401  (before basicsr)

import cv2
import numpy as np
import torch
from basicsr.archs.rrdbnet_arch import RRDBNet

from vfsr_arch.acceleration import autocast_context
from vfsr_io.checkpoint import CheckpointError, load_network_weights, read_checkpoint

REALESRGAN_RELEASES = ('https://github.com/xinntao/Real-ESRGAN/releases (RealESRGAN_x4plus.pth, '
                       'RealESRGAN_x2plus.pth)')
# conv_first input channels -> network scale (RRDBNet pixel-unshuffles its input for x2 and x1)
SCALE_BY_INPUT_CHANNELS = {3: 4, 12: 2, 48: 1}


def lanczos_upscale(image: np.ndarray, upscale: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (H*u, W*u, 3) float32."""
    if upscale == 1:
        return image.astype(np.float32)
    size = (image.shape[1] * upscale, image.shape[0] * upscale)
    return cv2.resize(image, size, interpolation=cv2.INTER_LANCZOS4).astype(np.float32)


class RealESRGANBackground:
    """Real-ESRGAN upscaling of whole frames, tiled. ``weights``: a Real-ESRGAN RRDBNet checkpoint."""

    def __init__(self, weights, device='cpu', tile: int = 256, pad: int = 16, precision: str = 'fp32'):
        checkpoint = read_checkpoint(weights, 'Real-ESRGAN weights', REALESRGAN_RELEASES)
        state = next((checkpoint[key] for key in ('params_ema', 'params') if key in checkpoint), checkpoint)
        try:
            num_feat, in_channels = state['conv_first.weight'].shape[:2]
            num_block = len({key.split('.')[1] for key in state if key.startswith('body.')})
            num_grow_ch = state['body.0.rdb1.conv1.weight'].shape[0]
            self.scale = SCALE_BY_INPUT_CHANNELS[in_channels]
        except (KeyError, TypeError, AttributeError):
            raise CheckpointError(f'Real-ESRGAN weights {str(weights)!r}: not an RRDBNet (Real-ESRGAN) checkpoint; '
                                  f'where to get one: {REALESRGAN_RELEASES}') from None
        self.net = RRDBNet(3, 3, scale=self.scale, num_feat=num_feat, num_block=num_block, num_grow_ch=num_grow_ch)
        load_network_weights(self.net, weights, published_at=REALESRGAN_RELEASES, what='Real-ESRGAN weights')
        self.device = torch.device(device)
        self.net = self.net.eval().to(self.device)
        self.tile, self.pad, self.precision = tile, pad, precision

    @torch.no_grad()
    def __call__(self, image: np.ndarray, upscale: int) -> np.ndarray:
        """(H, W, 3) uint8 -> (H*upscale, W*upscale, 3) float32 in [0, 255]."""
        height, width = image.shape[:2]
        scale, result = self.scale, np.zeros((height * self.scale, width * self.scale, 3), np.float32)
        for y in range(0, height, self.tile):
            for x in range(0, width, self.tile):
                y0, x0 = max(0, y - self.pad), max(0, x - self.pad)
                y1, x1 = min(height, y + self.tile + self.pad), min(width, x + self.tile + self.pad)
                tile = torch.from_numpy(np.ascontiguousarray(image[y0:y1, x0:x1])).to(self.device)
                tile = tile.permute(2, 0, 1)[None].float() / 255
                with autocast_context(self.precision, self.device.type):
                    output = self.net(tile)[0].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255
                inner_y, inner_x = (y - y0) * scale, (x - x0) * scale
                rows, cols = min(self.tile, height - y) * scale, min(self.tile, width - x) * scale
                result[y * scale:y * scale + rows, x * scale:x * scale + cols] = \
                    output[inner_y:inner_y + rows, inner_x:inner_x + cols]
        if scale == upscale:
            return result
        size = (width * upscale, height * upscale)
        return cv2.resize(result, size, interpolation=cv2.INTER_LANCZOS4 if upscale > scale else cv2.INTER_AREA)
