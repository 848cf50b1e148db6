"""LPIPS perceptual loss (Zhang et al. 2018, v0.1 with a VGG16 trunk), as KEEP and CodeFormer train with it.

Our own implementation of the ``lpips`` package's ``LPIPS(net='vgg')``: ImageNet VGG16 features at relu1_2, relu2_2,
relu3_3, relu4_3 and relu5_3, each unit-normalised over channels, squared difference, a learned 1x1 linear head per
layer, spatial mean, sum over layers. Nothing is downloaded: both weight files come from paths in the options.
"""
from pathlib import Path

import torch
import torchvision
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

VGG_WEIGHTS_HELP = ("torchvision's ImageNet VGG16 weights 'vgg16-397923af.pth' "
                    '(https://download.pytorch.org/models/vgg16-397923af.pth)')
LINEAR_WEIGHTS_HELP = ("the LPIPS v0.1 linear heads 'vgg.pth', shipped in the lpips pip package as "
                       'lpips/weights/v0.1/vgg.pth (https://github.com/richzhang/PerceptualSimilarity)')

# relu1_2, relu2_2, relu3_3, relu4_3, relu5_3: indices into torchvision's vgg16().features where each slice ends.
VGG16_SLICE_ENDS = (4, 9, 16, 23, 30)
VGG16_SLICE_CHANNELS = (64, 128, 256, 512, 512)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The lpips package's ScalingLayer: it expects [-1, 1] input and maps it to ImageNet statistics.
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)


def load_weights_file(path, help_text: str) -> dict:
    """``torch.load`` a state_dict with ``weights_only=True``, or raise naming the file and where to get it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'LPIPS weights file not found: {path}. It should be {help_text}.')
    return torch.load(path, map_location='cpu', weights_only=True)


class VGG16Trunk(nn.Module):
    """torchvision's VGG16 convolutional layers up to relu5_3, cut into the five LPIPS slices."""

    def __init__(self, weights_path):
        super().__init__()
        # The feature layers of torchvision's vgg16() (config 'D'), without allocating its 120M-parameter classifier.
        features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs['D'])
        state = load_weights_file(weights_path, VGG_WEIGHTS_HELP)
        trunk_state = {k[len('features.'):]: v for k, v in state.items() if k.startswith('features.')}
        missing = sorted(set(features.state_dict()) - set(trunk_state))
        if missing:
            raise KeyError(f'{weights_path} lacks VGG16 features.{missing[0]} (and {len(missing) - 1} more); '
                           f'it should be {VGG_WEIGHTS_HELP}.')
        features.load_state_dict(trunk_state)
        starts = (0, ) + VGG16_SLICE_ENDS[:-1]
        self.slices = nn.ModuleList(features[start:end] for start, end in zip(starts, VGG16_SLICE_ENDS))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(n, 3, h, w) ImageNet-normalised -> five feature maps (n, c_k, h / 2^k, w / 2^k)."""
        feats = []
        for vgg_slice in self.slices:
            x = vgg_slice(x)
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


@LOSS_REGISTRY.register()
class LPIPSLoss(nn.Module):
    """LPIPS distance between prediction and target, averaged over the batch, times ``loss_weight``.

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
        self.trunk = VGG16Trunk(vgg_weights_path)
        self.lins = nn.ModuleList(LinearHead(c) for c in VGG16_SLICE_CHANNELS)
        linear_state = load_weights_file(lpips_weights_path, LINEAR_WEIGHTS_HELP)
        head_keys = [f'lin{i}.model.1.weight' for i in range(len(self.lins))]
        missing = [key for key in head_keys if key not in linear_state]
        if missing:
            raise KeyError(f'{lpips_weights_path} lacks {missing}; it should be {LINEAR_WEIGHTS_HELP}.')
        for key, lin in zip(head_keys, self.lins):
            lin.model[1].weight.data.copy_(linear_state[key])
        self.register_buffer('imagenet_mean', torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('imagenet_std', torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('lpips_shift', torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('lpips_scale', torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
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
        x = (x - self.lpips_shift) / self.lpips_scale
        return [unit_normalize(feat) for feat in self.trunk(x)]

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """pred, target: (n, 3, h, w) -> scalar."""
        pred_feats = self.features(pred)
        with torch.no_grad():
            target_feats = self.features(target)
        distance = sum(lin((p - t).pow(2)).mean(dim=(2, 3)) for lin, p, t in zip(self.lins, pred_feats, target_feats))
        return self.loss_weight * distance.mean()
