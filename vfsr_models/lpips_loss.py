"""LPIPS as a training loss: the perceptual loss KEEP and CodeFormer train with, over the distance network of
:mod:`vfsr_arch.lpips_arch`, with the input conventions of the official training losses."""
import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from vfsr_arch.lpips_arch import IMAGENET_MEAN, IMAGENET_STD, LPIPSDistance


@LOSS_REGISTRY.register()
class LPIPSLoss(nn.Module):
    """VGG LPIPS distance between prediction and target, averaged over the batch, times ``loss_weight``.

    Args:
        loss_weight: multiplier of the loss.
        use_input_norm: normalise the (0-1 range) input with ImageNet mean/std before LPIPS. The official KEEP and
            CodeFormer losses do this and then LPIPS applies its own scaling as well; we keep that for fidelity.
        range_norm: map the input from [-1, 1] to [0, 1] first.
        vgg_weights_path: torchvision's ``vgg16-397923af.pth``.
        lpips_weights_path: LPIPS v0.1 linear heads (``lin{0..4}.model.1.weight``).
    """

    def __init__(self, loss_weight=1.0, use_input_norm=True, range_norm=False,
                 vgg_weights_path='weights/LPIPS/vgg16-397923af.pth', lpips_weights_path='weights/LPIPS/vgg.pth'):
        super().__init__()
        self.loss_weight = loss_weight
        self.use_input_norm = use_input_norm
        self.range_norm = range_norm
        self.distance = LPIPSDistance('vgg', vgg_weights_path, lpips_weights_path)
        self.register_buffer('imagenet_mean', torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('imagenet_std', torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        """The loss network stays in eval mode (no dropout), whatever the model around it does."""
        return super().train(False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.range_norm:
            x = (x + 1) / 2
        if self.use_input_norm:
            x = (x - self.imagenet_mean) / self.imagenet_std
        return self.distance.features(x)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """pred, target: (n, 3, h, w) -> scalar."""
        pred_feats = self.features(pred)
        with torch.no_grad():
            target_feats = self.features(target)
        return self.loss_weight * self.distance.compare(pred_feats, target_feats).mean()
