"""LPIPS (Zhang et al. 2018, v0.1): the distance network behind KEEP's and CodeFormer's perceptual loss
(:mod:`vfsr_models.lpips_loss`) and the LPIPS metric (:mod:`vfsr_eval.lpips_metric`).

Our own implementation of the ``lpips`` package's ``LPIPS(net='vgg')`` and ``LPIPS(net='alex')``: ImageNet features
of the trunk at five depths (VGG16 relu1_2 ... relu5_3; AlexNet relu1 ... relu5), each unit-normalised over
channels, squared difference, a learned 1x1 linear head per depth, spatial mean, sum over depths. Nothing is
downloaded: the trunk's and the heads' weight files come from paths given by the caller.
"""
from dataclasses import dataclass

import torch
import torchvision
from torch import nn

from vfsr_io.checkpoint import read_checkpoint

VGG_WEIGHTS_HELP = ("torchvision's ImageNet VGG16 weights 'vgg16-397923af.pth' "
                    '(https://download.pytorch.org/models/vgg16-397923af.pth)')
ALEX_WEIGHTS_HELP = ("torchvision's ImageNet AlexNet weights 'alexnet-owt-7be5be79.pth' "
                     '(https://download.pytorch.org/models/alexnet-owt-7be5be79.pth)')
LINEAR_WEIGHTS_HELP = ("the LPIPS v0.1 linear heads '{net}.pth', shipped in the lpips pip package as "
                       'lpips/weights/v0.1/{net}.pth (https://github.com/richzhang/PerceptualSimilarity)')

# relu1_2, relu2_2, relu3_3, relu4_3, relu5_3: indices into torchvision's vgg16().features where each slice ends.
VGG16_SLICE_ENDS = (4, 9, 16, 23, 30)
VGG16_SLICE_CHANNELS = (64, 128, 256, 512, 512)
# relu1 ... relu5 of torchvision's alexnet().features.
ALEXNET_SLICE_ENDS = (2, 5, 8, 10, 12)
ALEXNET_SLICE_CHANNELS = (64, 192, 384, 256, 256)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The lpips package's ScalingLayer: it expects [-1, 1] input and maps it to ImageNet statistics.
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)


@dataclass(frozen=True)
class TrunkSpec:
    """An LPIPS trunk: torchvision's feature layers, where the five slices end, their widths, its weights file."""

    name: str
    build_features: object
    slice_ends: tuple[int, ...]
    slice_channels: tuple[int, ...]
    weights_help: str
    default_weights: str


LPIPS_TRUNKS = {
    'vgg': TrunkSpec('VGG16', lambda: torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs['D']),
                     VGG16_SLICE_ENDS, VGG16_SLICE_CHANNELS, VGG_WEIGHTS_HELP, 'weights/LPIPS/vgg16-397923af.pth'),
    # The feature layers of torchvision's alexnet(), without allocating its classifier.
    'alex': TrunkSpec('AlexNet', lambda: torchvision.models.AlexNet().features, ALEXNET_SLICE_ENDS,
                      ALEXNET_SLICE_CHANNELS, ALEX_WEIGHTS_HELP, 'weights/LPIPS/alexnet-owt-7be5be79.pth'),
}


class LPIPSTrunk(nn.Module):
    """torchvision's VGG16 (``net='vgg'``) or AlexNet (``net='alex'``) convolutional layers, cut into the five LPIPS
    slices, with the ImageNet weights of ``weights_path``."""

    def __init__(self, net: str, weights_path):
        super().__init__()
        if net not in LPIPS_TRUNKS:
            raise ValueError(f'LPIPS net {net!r} is not one of {sorted(LPIPS_TRUNKS)}')
        spec = LPIPS_TRUNKS[net]
        # The feature layers only: the classifiers (120M parameters for VGG16) are never used.
        features = spec.build_features()
        state = read_checkpoint(weights_path, f'LPIPS {spec.name} weights', published_at=spec.weights_help)
        trunk_state = {k[len('features.'):]: v for k, v in state.items() if k.startswith('features.')}
        missing = sorted(set(features.state_dict()) - set(trunk_state))
        if missing:
            raise KeyError(f'{weights_path} lacks {spec.name} features.{missing[0]} (and {len(missing) - 1} more); '
                           f'it should be {spec.weights_help}.')
        features.load_state_dict(trunk_state)
        starts = (0, ) + spec.slice_ends[:-1]
        self.slices = nn.ModuleList(features[start:end] for start, end in zip(starts, spec.slice_ends))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(n, 3, h, w) ImageNet-normalised -> five feature maps (n, c_k, h_k, w_k)."""
        feats = []
        for trunk_slice in self.slices:
            x = trunk_slice(x)
            feats.append(x)
        return feats


class LinearHead(nn.Module):
    """A 1x1 convolution to one channel; ``model.1`` is its key, as in lpips' NetLinLayer (``model.0`` is dropout)."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def unit_normalize(feat: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return feat / (feat.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class LPIPSDistance(nn.Module):
    """The LPIPS distance of the ``lpips`` package, for images in [-1, 1] (its ``normalize=False`` convention).

    Args:
        net: ``'vgg'`` (VGG16) or ``'alex'`` (AlexNet, the ``lpips`` package's default for evaluation).
        trunk_weights_path: torchvision's ImageNet weights of that trunk (None: the default path under
            ``weights/LPIPS``).
        lpips_weights_path: the v0.1 linear heads ``<net>.pth`` (``lin{0..4}.model.1.weight``; None: the default
            path under ``weights/LPIPS``).
    """

    def __init__(self, net: str = 'vgg', trunk_weights_path=None, lpips_weights_path=None):
        super().__init__()
        self.trunk = LPIPSTrunk(net, trunk_weights_path or LPIPS_TRUNKS[net].default_weights)
        self.lins = nn.ModuleList(LinearHead(c) for c in LPIPS_TRUNKS[net].slice_channels)
        heads_help = LINEAR_WEIGHTS_HELP.format(net=net)
        lpips_weights_path = lpips_weights_path or f'weights/LPIPS/{net}.pth'
        linear_state = read_checkpoint(lpips_weights_path, 'LPIPS linear heads', published_at=heads_help)
        head_keys = [f'lin{i}.model.1.weight' for i in range(len(self.lins))]
        missing = [key for key in head_keys if key not in linear_state]
        if missing:
            raise KeyError(f'{lpips_weights_path} lacks {missing}; it should be {heads_help}.')
        for key, lin in zip(head_keys, self.lins):
            lin.model[1].weight.data.copy_(linear_state[key])
        self.register_buffer('lpips_shift', torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('lpips_scale', torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        """The network stays in eval mode (no dropout in the heads), whatever the model around it does."""
        return super().train(False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(n, 3, h, w) in [-1, 1] -> the five unit-normalised feature maps."""
        x = (x - self.lpips_shift) / self.lpips_scale
        return [unit_normalize(feat) for feat in self.trunk(x)]

    def compare(self, pred_feats: list[torch.Tensor], target_feats: list[torch.Tensor]) -> torch.Tensor:
        """Features of :meth:`features` -> (n, ) distances."""
        return sum(lin((p - t).pow(2)).mean(dim=(1, 2, 3)) for lin, p, t in zip(self.lins, pred_feats, target_feats))

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """pred, target: (n, 3, h, w) in [-1, 1] -> (n, ) distances."""
        return self.compare(self.features(pred), self.features(target))
