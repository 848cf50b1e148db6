"""LPIPS as a validation metric (lower is better): the ``lpips`` package's distance with a VGG16 or AlexNet trunk,
images in [-1, 1], our own network (:class:`vfsr_arch.lpips_arch.LPIPSDistance`), weights read from paths."""
from functools import lru_cache

import numpy as np
import torch
from basicsr.utils.registry import METRIC_REGISTRY

from vfsr_arch.lpips_arch import LPIPSDistance
from vfsr_eval.metric_inputs import bgr_to_tensor, metric_device


@lru_cache(maxsize=4)
def lpips_network(net: str, trunk_weights_path, lpips_weights_path, device: torch.device) -> LPIPSDistance:
    return LPIPSDistance(net, trunk_weights_path, lpips_weights_path).to(device)


@METRIC_REGISTRY.register()
def calculate_lpips(img: np.ndarray, img2: np.ndarray, crop_border: int = 0, net: str = 'vgg',
                    trunk_weights_path: str | None = None, lpips_weights_path: str | None = None,
                    device: str | None = None) -> float:
    """LPIPS between two (H, W, 3) BGR uint8 images.

    Options: ``net`` ``vgg`` (default) or ``alex``; ``trunk_weights_path`` (torchvision's
    ``vgg16-397923af.pth`` / ``alexnet-owt-7be5be79.pth``, default under ``weights/LPIPS/``); ``lpips_weights_path``
    (the v0.1 heads ``vgg.pth`` / ``alex.pth``, default ``weights/LPIPS/<net>.pth``); ``device`` (default CUDA when
    available); ``crop_border`` pixels cut from each side first.
    """
    if crop_border:
        img, img2 = (image[crop_border:-crop_border, crop_border:-crop_border] for image in (img, img2))
    device = metric_device(device)
    network = lpips_network(net, trunk_weights_path, lpips_weights_path, device)
    with torch.no_grad():
        return float(network(bgr_to_tensor([img], device), bgr_to_tensor([img2], device))[0])
