"""GMFlow: optical flow as global matching (Xu et al., CVPR 2022), checkpoint-compatible with haofeixu/gmflow.

Pipeline per scale (coarse to fine): a shared CNN extracts features of both images; a transformer alternates
self-attention and cross-attention between the two feature maps (shifted windows, Swin style); a softmax over the
feature correlation turns matches into flow (global, or within a radius when refining); self-attention on the
features propagates flow into unmatched regions; a learned convex combination upsamples the final flow.

Module and parameter names follow the official code so official checkpoints load with ``strict=True``.
"""
import math

import torch
import torch.nn.functional as F
from basicsr.archs.arch_util import flow_warp
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Forward settings of the released models (official README), used when the caller passes none.
DEFAULT_SCALE_SETTINGS = {
    1: {'attn_splits_list': [2], 'corr_radius_list': [-1], 'prop_radius_list': [-1]},
    2: {'attn_splits_list': [2, 8], 'corr_radius_list': [-1, 4], 'prop_radius_list': [-1, 1]},
}


@ARCH_REGISTRY.register()
class GMFlow(nn.Module):
    """Optical flow from ``img0`` to ``img1``.

    Args:
        num_scales: 1 (features at 1/8) or more (coarse-to-fine; finest features at 1/4, each coarser one 2x).
        upsample_factor: convex upsampling factor of the final flow; must equal the finest feature stride
            (8 for one scale, 4 for several).
        feature_channels: width of the matching features (and of the transformer).
        attention_type: 'swin' (attention in ``attn_splits``² shifted windows) or 'full' (global attention).
        num_transformer_layers: number of self+cross attention blocks.
        ffn_dim_expansion: hidden width of the feed-forward network, as a multiple of ``2 * feature_channels``.
        num_head: attention heads; the official model is single-head only, so only 1 is accepted.
    """

    def __init__(self, num_scales=1, upsample_factor=8, feature_channels=128, attention_type='swin',
                 num_transformer_layers=6, ffn_dim_expansion=4, num_head=1):
        super().__init__()
        if num_scales < 1:
            raise ValueError(f'num_scales must be at least 1, got {num_scales}')
        finest_stride = 8 if num_scales == 1 else 4
        if upsample_factor != finest_stride:
            raise ValueError(f'upsample_factor must be {finest_stride} for num_scales={num_scales} (the finest '
                             f'features are at 1/{finest_stride}), got {upsample_factor}')
        if attention_type not in ('swin', 'full'):
            raise ValueError(f"attention_type must be 'swin' or 'full', got {attention_type!r}")
        if num_head != 1:
            raise ValueError(f'only single-head attention (num_head=1) is implemented, as in the official GMFlow; '
                             f'got num_head={num_head}')
        if feature_channels % 2:
            raise ValueError(f'feature_channels must be even (sine position encoding), got {feature_channels}')
        self.num_scales = num_scales
        self.upsample_factor = upsample_factor
        # stride of the features at each scale, coarse to fine
        self.feature_strides = [finest_stride * 2 ** (num_scales - 1 - i) for i in range(num_scales)]

        self.backbone = CNNEncoder(feature_channels, num_scales)
        self.transformer = FeatureTransformer(num_transformer_layers, feature_channels, attention_type,
                                              ffn_dim_expansion)
        self.feature_flow_attn = FeatureFlowAttention(feature_channels)
        self.upsampler = ConvexUpsampler(feature_channels, upsample_factor)

        self.register_buffer('mean', torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, img0, img1, attn_splits_list=None, corr_radius_list=None, prop_radius_list=None,
                pred_bidir_flow=False):
        """Estimate the flow that maps each pixel of ``img0`` to its match in ``img1``.

        Args:
            img0, img1: (B, 3, H, W) RGB in [0, 255]; H and W multiples of ``feature_stride * attn_splits`` of
                every scale (16 for the default single scale with ``attn_splits_list=[2]``).
            attn_splits_list: per scale, windows per side of the swin attention (1 = global attention).
            corr_radius_list: per scale, -1 for global matching, else the local matching radius (in features).
            prop_radius_list: per scale, -1 for global flow propagation, else its window radius.
            pred_bidir_flow: also estimate the flow from ``img1`` to ``img0``.

        Returns:
            ``{'flow_preds': [...]}``, each (B', 2, H, W) with channel 0 = dx and 1 = dy in pixels, where
            B' = 2B with ``pred_bidir_flow`` (forward flows first, then backward ones). In eval mode the list holds
            only the final flow; in training mode, for each scale, the flow after matching and after propagation
            (bilinearly upsampled, the very last one convex-upsampled), for supervising every stage.
        """
        settings = self._scale_settings(attn_splits_list, corr_radius_list, prop_radius_list)
        self._check_images(img0, img1, settings['attn_splits_list'])
        features = self.backbone(torch.cat((self._normalize(img0), self._normalize(img1))))
        return self.flow_from_features([feature.chunk(2)[0] for feature in features],
                                       [feature.chunk(2)[1] for feature in features], **settings,
                                       pred_bidir_flow=pred_bidir_flow)

    def extract_features(self, img, attn_splits_list):
        """The backbone's features of one image batch (B, 3, H, W) in [0, 255], coarse to fine: what
        :meth:`forward` computes for each image of the pair, so that a video computes them once per frame.
        ``attn_splits_list`` as for :meth:`flow_from_features` (it decides the sizes the images must fit)."""
        self._check_images(img, img, attn_splits_list)
        return self.backbone(self._normalize(img))

    def flow_from_features(self, features0, features1, attn_splits_list=None, corr_radius_list=None,
                           prop_radius_list=None, pred_bidir_flow=False):
        """:meth:`forward` from the :meth:`extract_features` of ``img0`` and ``img1``."""
        settings = self._scale_settings(attn_splits_list, corr_radius_list, prop_radius_list)
        flow_preds = []
        flow = None
        for scale, (source, target) in enumerate(zip(features0, features1)):
            attn_splits = settings['attn_splits_list'][scale]
            corr_radius = settings['corr_radius_list'][scale]
            prop_radius = settings['prop_radius_list'][scale]
            is_last = scale == self.num_scales - 1
            upsample_factor = self.upsample_factor * 2 ** (self.num_scales - 1 - scale)

            if pred_bidir_flow and scale > 0:
                source, target = both_directions(source, target)
            if flow is not None:
                # refinement: match against img1 features warped by the (upsampled) coarser flow
                flow = upsample_flow_bilinear(flow, 2).detach()
                target = flow_warp(target, flow.permute(0, 2, 3, 1))

            source, target = add_window_position(source, target, attn_splits)
            source, target = self.transformer(source, target, attn_splits)
            if pred_bidir_flow and scale == 0:
                source, target = both_directions(source, target)

            if corr_radius == -1:
                flow_pred = global_correlation_flow(source, target)
            else:
                flow_pred = local_correlation_flow(source, target, corr_radius)
            flow = flow_pred if flow is None else flow + flow_pred
            if self.training:
                flow_preds.append(upsample_flow_bilinear(flow, upsample_factor))

            flow = self.feature_flow_attn(source, flow.detach(), prop_radius)
            # Coarse flows are only returned in training, for supervision. (The official eval mode also convex-
            # upsamples them, by the finest factor and so to a fraction of the image size; nothing uses those.)
            if is_last:
                flow_preds.append(self.upsampler(flow, source))
            elif self.training:
                flow_preds.append(upsample_flow_bilinear(flow, upsample_factor))
        return {'flow_preds': flow_preds}

    def _normalize(self, img):
        """RGB in [0, 255] -> ImageNet-normalised."""
        return (img / 255. - self.mean) / self.std

    def _scale_settings(self, attn_splits_list, corr_radius_list, prop_radius_list):
        given = {'attn_splits_list': attn_splits_list, 'corr_radius_list': corr_radius_list,
                 'prop_radius_list': prop_radius_list}
        settings = {}
        for name, values in given.items():
            if values is None:
                if self.num_scales not in DEFAULT_SCALE_SETTINGS:
                    raise ValueError(f'{name} is required for num_scales={self.num_scales}')
                values = DEFAULT_SCALE_SETTINGS[self.num_scales][name]
            if len(values) != self.num_scales:
                raise ValueError(f'{name} needs one value per scale ({self.num_scales}), got {list(values)}')
            settings[name] = list(values)
        return settings

    def _check_images(self, img0, img1, attn_splits_list):
        if img0.dim() != 4 or img0.shape[1] != 3 or img0.shape != img1.shape:
            raise ValueError(f'img0 and img1 must both be (B, 3, H, W) of the same shape, got {tuple(img0.shape)} '
                             f'and {tuple(img1.shape)}')
        height, width = img0.shape[-2:]
        for scale, (stride, splits) in enumerate(zip(self.feature_strides, attn_splits_list)):
            multiple = stride * splits
            if height % multiple or width % multiple:
                raise ValueError(f'GMFlow needs H and W to be multiples of {multiple} (feature stride {stride} x '
                                 f'attn_splits {splits} at scale {scale}), got {height}x{width}')


def both_directions(source, target):
    """Stack the pair (source, target) with its reverse along the batch, to match in both directions at once."""
    return torch.cat((source, target)), torch.cat((target, source))


def upsample_flow_bilinear(flow, factor):
    """(B, 2, h, w) flow -> (B, 2, factor*h, factor*w), with the displacements scaled to the new resolution."""
    return F.interpolate(flow, scale_factor=factor, mode='bilinear', align_corners=True) * factor


# ----------------------------------------------------------------------------------------------------------------
# CNN backbone


class CNNEncoder(nn.Module):
    """Shared feature extractor: 7x7 stem and three pairs of residual blocks (widths 64, 96, 128).

    (N, 3, H, W) -> list of (N, C, H/s, W/s), coarse to fine: s = 8 for one scale; for several scales the trunk
    stays at 1/4 and a trident convolution (one kernel, strides 1, 2, 4, ...) gives the coarser ones.
    """

    widths = (64, 96, 128)

    def __init__(self, out_channels, num_scales):
        super().__init__()
        self.conv1 = nn.Conv2d(3, self.widths[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.norm1 = nn.InstanceNorm2d(self.widths[0])
        self.layer1 = residual_stage(self.widths[0], self.widths[0], stride=1)
        self.layer2 = residual_stage(self.widths[0], self.widths[1], stride=2)
        self.layer3 = residual_stage(self.widths[1], self.widths[2], stride=2 if num_scales == 1 else 1)
        self.conv2 = nn.Conv2d(self.widths[2], out_channels, kernel_size=1)
        self.trident_conv = TridentConv(out_channels, num_scales) if num_scales > 1 else None
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode='fan_out', nonlinearity='relu')

    def forward(self, x):
        x = F.relu(self.norm1(self.conv1(x)))
        x = self.conv2(self.layer3(self.layer2(self.layer1(x))))
        if self.trident_conv is None:
            return [x]
        return self.trident_conv(x)[::-1]


def residual_stage(in_channels, out_channels, stride):
    """Two residual blocks; the first one may change width and resolution."""
    return nn.Sequential(ResidualBlock(in_channels, out_channels, stride), ResidualBlock(out_channels, out_channels))


class ResidualBlock(nn.Module):
    """Two conv3x3-IN-ReLU plus a skip (projected when the shape changes), then ReLU.

    (N, Ci, H, W) -> (N, Co, H/stride, W/stride).
    """

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm1 = nn.InstanceNorm2d(out_channels)
        self.norm2 = nn.InstanceNorm2d(out_channels)
        if stride == 1 and in_channels == out_channels:
            self.downsample = None
        else:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride),
                                            nn.InstanceNorm2d(out_channels))

    def forward(self, x):
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(skip + y)


class TridentConv(nn.Module):
    """One 3x3 kernel (no bias) applied with strides 1, 2, 4, ...

    (N, C, H, W) -> [(N, C, H/2^i, W/2^i) for i in range(num_branches)], fine first.
    """

    def __init__(self, channels, num_branches):
        super().__init__()
        self.strides = [2 ** i for i in range(num_branches)]
        self.weight = nn.Parameter(torch.empty(channels, channels, 3, 3))
        nn.init.kaiming_uniform_(self.weight, nonlinearity='relu')

    def forward(self, x):
        return [F.conv2d(x, self.weight, stride=stride, padding=1) for stride in self.strides]


# ----------------------------------------------------------------------------------------------------------------
# Transformer


def add_window_position(feature0, feature1, attn_splits):
    """Add the same sine position encoding to both (N, C, H, W) maps, restarting in each of the splits² windows."""
    n, channels, height, width = feature0.shape
    window = sine_position_encoding(height // attn_splits, width // attn_splits, channels, feature0.device)
    position = window.to(feature0.dtype).repeat(1, 1, attn_splits, attn_splits)
    return feature0 + position, feature1 + position


def sine_position_encoding(height, width, channels, device, temperature=10000.):
    """DETR's normalised 2-D sine encoding: (1, C, H, W), first C/2 channels for y, then C/2 for x.

    Coordinates run from 1/size to 1 times 2*pi; each half interleaves sin and cos of coordinate / temperature^(2k/d).
    """
    num_feats = channels // 2
    dim_t = temperature ** (2 * (torch.arange(num_feats, device=device) // 2) / num_feats)

    def encode(size):  # (size, num_feats)
        coords = torch.arange(1, size + 1, dtype=torch.float32, device=device) / (size + 1e-6) * (2 * math.pi)
        angles = coords[:, None] / dim_t
        return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=-1).flatten(1)

    pos_y = encode(height)[:, None, :].expand(height, width, num_feats)
    pos_x = encode(width)[None, :, :].expand(height, width, num_feats)
    return torch.cat((pos_y, pos_x), dim=-1).permute(2, 0, 1)[None]


class FeatureTransformer(nn.Module):
    """Alternating self/cross attention over the features of both images.

    Both maps are processed jointly as one batch: each attends to itself and to the other one. With swin attention
    every second block shifts its windows by half a window so information crosses window borders.
    (N, C, H, W) x 2 -> (N, C, H, W) x 2.
    """

    def __init__(self, num_layers, channels, attention_type, ffn_dim_expansion):
        super().__init__()
        self.attention_type = attention_type
        self.layers = nn.ModuleList(TransformerBlock(channels, ffn_dim_expansion) for _ in range(num_layers))
        for parameter in self.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)

    def forward(self, feature0, feature1, attn_splits):
        n, _, height, width = feature0.shape
        tokens0, tokens1 = feature0.permute(0, 2, 3, 1), feature1.permute(0, 2, 3, 1)
        source, target = torch.cat((tokens0, tokens1)), torch.cat((tokens1, tokens0))  # (2N, H, W, C)

        if self.attention_type == 'swin' and attn_splits > 1:
            layouts = [WindowLayout(height, width, attn_splits, shifted, source.device) for shifted in (False, True)]
        else:
            layouts = [WindowLayout(height, width, 1, False, source.device)] * 2
        for index, layer in enumerate(self.layers):
            source = layer(source, target, layouts[index % 2])
            target = torch.cat(source.chunk(2)[::-1])
        return tuple(part.permute(0, 3, 1, 2).contiguous() for part in source.chunk(2))


class TransformerBlock(nn.Module):
    """Self-attention, then cross-attention to the other image with a feed-forward network. (N, H, W, C) tokens."""

    def __init__(self, channels, ffn_dim_expansion):
        super().__init__()
        self.self_attn = AttentionLayer(channels, ffn_dim_expansion=None)
        self.cross_attn_ffn = AttentionLayer(channels, ffn_dim_expansion)

    def forward(self, source, target, layout):
        source = self.self_attn(source, source, layout)
        return self.cross_attn_ffn(source, target, layout)


class AttentionLayer(nn.Module):
    """Single-head window attention from source to target tokens, projection and LayerNorm, added to the source.

    With ``ffn_dim_expansion`` the message is first refined by an MLP on [source, message] and a second LayerNorm.
    (N, H, W, C) x 2 -> (N, H, W, C).
    """

    def __init__(self, channels, ffn_dim_expansion):
        super().__init__()
        self.q_proj = nn.Linear(channels, channels, bias=False)
        self.k_proj = nn.Linear(channels, channels, bias=False)
        self.v_proj = nn.Linear(channels, channels, bias=False)
        self.merge = nn.Linear(channels, channels, bias=False)
        self.norm1 = nn.LayerNorm(channels)
        if ffn_dim_expansion is None:
            self.mlp = None
        else:
            hidden = 2 * channels * ffn_dim_expansion
            self.mlp = nn.Sequential(nn.Linear(2 * channels, hidden, bias=False), nn.GELU(),
                                     nn.Linear(hidden, channels, bias=False))
            self.norm2 = nn.LayerNorm(channels)

    def forward(self, source, target, layout):
        query = layout.partition(self.q_proj(source))
        key = layout.partition(self.k_proj(target))
        value = layout.partition(self.v_proj(target))
        message = layout.reverse(attention(query, key, value, layout.mask))
        message = self.norm1(self.merge(message))
        if self.mlp is not None:
            message = self.norm2(self.mlp(torch.cat((source, message), dim=-1)))
        return source + message


def attention(query, key, value, mask=None):
    """softmax(query keyᵀ / sqrt(C) + mask) value: (..., Lq, C), (..., Lk, C), (..., Lk, Cv) -> (..., Lq, Cv).

    Written out rather than fused (``F.scaled_dot_product_attention``) on purpose: GMFlow's soft-argmax over
    correlations is ill-conditioned (float32 rounding alone moves flows by ~1e-4 px), and computing in the official
    order of operations keeps our flows within ~1e-5 px of the official ones instead of ~6e-5.
    """
    scores = torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(query.shape[-1])
    if mask is not None:
        scores = scores + mask.to(scores.dtype)
    return torch.matmul(scores.softmax(dim=-1), value)


class WindowLayout:
    """Groups an (N, H, W, C) token map into splits x splits windows of (H/splits) x (W/splits) tokens.

    ``shifted`` first rolls the map by half a window (Swin); tokens that the roll brought together from opposite
    borders must not attend to each other, which ``mask`` (splits², L, L) enforces (-100 added to their scores, the
    value of the official code).
    """

    def __init__(self, height, width, num_splits, shifted, device):
        self.height, self.width, self.num_splits = height, width, num_splits
        window_h, window_w = height // num_splits, width // num_splits
        self.shift = (window_h // 2, window_w // 2) if shifted else (0, 0)
        self.mask = self._border_mask(window_h, window_w, device) if shifted else None

    def partition(self, tokens):
        """(N, H, W, C) -> (N, splits², L, C) with L = H*W / splits²."""
        if self.mask is not None:
            tokens = torch.roll(tokens, shifts=(-self.shift[0], -self.shift[1]), dims=(1, 2))
        n, height, width, channels = tokens.shape
        s = self.num_splits
        windows = tokens.reshape(n, s, height // s, s, width // s, channels).transpose(2, 3)
        return windows.reshape(n, s * s, -1, channels)

    def reverse(self, windows):
        """(N, splits², L, C) -> (N, H, W, C), inverse of :meth:`partition`."""
        n, _, _, channels = windows.shape
        s = self.num_splits
        tokens = windows.reshape(n, s, s, self.height // s, self.width // s, channels).transpose(2, 3)
        tokens = tokens.reshape(n, self.height, self.width, channels)
        if self.mask is not None:
            tokens = torch.roll(tokens, shifts=self.shift, dims=(1, 2))
        return tokens

    def _border_mask(self, window_h, window_w, device):
        def region(size, window, shift):  # 0: untouched, 1: last window before the shift, 2: wrapped around
            index = torch.arange(size, device=device)
            return (index >= size - window).long() + (index >= size - shift).long()

        labels = region(self.height, window_h, self.shift[0])[:, None] * 3 + region(self.width, window_w,
                                                                                     self.shift[1])[None, :]
        s = self.num_splits
        labels = labels.reshape(s, window_h, s, window_w).transpose(1, 2).reshape(s * s, -1)  # (splits², L)
        return (labels[:, :, None] != labels[:, None, :]).float() * -100.


# ----------------------------------------------------------------------------------------------------------------
# Matching and flow propagation


def pixel_grid(height, width, device, dtype):
    """(H*W, 2) pixel coordinates (x, y), row-major."""
    ys, xs = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                            torch.arange(width, device=device, dtype=dtype), indexing='ij')
    return torch.stack((xs, ys), dim=-1).reshape(-1, 2)


def global_correlation_flow(feature0, feature1):
    """Flow as the expected match position under a softmax over all positions of feature1.

    The softmax-weighted average of pixel coordinates is attention with the coordinates as values.
    (N, C, H, W) x 2 -> (N, 2, H, W).
    """
    n, channels, height, width = feature0.shape
    grid = pixel_grid(height, width, feature0.device, feature0.dtype)
    query = feature0.flatten(2).transpose(1, 2)
    key = feature1.flatten(2).transpose(1, 2)
    match = attention(query, key, grid)  # (N, H*W, 2)
    return (match - grid).transpose(1, 2).reshape(n, 2, height, width)


def local_correlation_flow(feature0, feature1, radius):
    """Flow as the expected offset under a softmax over the (2r+1)² neighbours in feature1 that lie inside the image.

    (N, C, H, W) x 2 -> (N, 2, H, W).
    """
    n, channels, height, width = feature0.shape
    neighbours = unfold_neighbourhoods(feature1, radius)  # (N, C, K, H*W)
    scores = torch.einsum('ncp,nckp->npk', feature0.flatten(2), neighbours) / math.sqrt(channels)
    inside = unfold_neighbourhoods(feature0.new_ones(1, 1, height, width), radius)[0, 0].t() > 0  # (H*W, K)
    prob = scores.masked_fill(~inside, -1e9).softmax(dim=-1)
    offsets = window_offsets(radius, feature0.device, feature0.dtype)  # (K, 2)
    return torch.einsum('npk,kd->ndp', prob, offsets).reshape(n, 2, height, width)


def unfold_neighbourhoods(x, radius):
    """(N, C, H, W) -> (N, C, K, H*W): the K = (2r+1)² neighbours of each position, row-major, zeros outside."""
    n, channels = x.shape[:2]
    return F.unfold(x, kernel_size=2 * radius + 1, padding=radius).view(n, channels, (2 * radius + 1) ** 2, -1)


def window_offsets(radius, device, dtype):
    """(K, 2) offsets (dx, dy) of the neighbours in the order of :func:`unfold_neighbourhoods`."""
    size = 2 * radius + 1
    return pixel_grid(size, size, device, dtype) - radius


class FeatureFlowAttention(nn.Module):
    """Flow propagation: the flow is averaged with self-attention weights from feature0, globally or in a window.

    (N, C, H, W) features, (N, 2, H, W) flow -> (N, 2, H, W) flow.
    """

    def __init__(self, channels):
        super().__init__()
        self.q_proj = nn.Linear(channels, channels)
        self.k_proj = nn.Linear(channels, channels)
        for parameter in self.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)

    def forward(self, feature, flow, radius=-1):
        if radius > 0:
            return self._propagate_in_window(feature, flow, radius)
        n, channels, height, width = feature.shape
        query = self.q_proj(feature.flatten(2).transpose(1, 2))
        # The official model computes the keys from the projected queries (kept for checkpoint compatibility;
        # the two linear maps compose into one).
        key = self.k_proj(query)
        value = flow.flatten(2).transpose(1, 2)
        return attention(query, key, value).transpose(1, 2).reshape(n, 2, height, width)

    def _propagate_in_window(self, feature, flow, radius):
        n, channels, height, width = feature.shape
        tokens = feature.flatten(2).transpose(1, 2)
        query = self.q_proj(tokens)  # (N, H*W, C)
        key = self.k_proj(tokens).transpose(1, 2).reshape(n, channels, height, width)
        # Neighbours beyond the border are zero keys and zero flows that still take part in the softmax, as in
        # the official model that the checkpoints were trained with.
        scores = torch.einsum('npc,nckp->npk', query, unfold_neighbourhoods(key, radius)) / math.sqrt(channels)
        flows = unfold_neighbourhoods(flow, radius)  # (N, 2, K, H*W)
        return torch.einsum('npk,ndkp->ndp', scores.softmax(dim=-1), flows).reshape(n, 2, height, width)


class ConvexUpsampler(nn.Sequential):
    """Learned upsampling: each fine pixel's flow is a convex combination of the 3x3 coarse flows around it.

    The weights (softmax over the 9 neighbours, for each of factor² sub-pixels) are predicted from [flow, feature].
    (N, 2, h, w) flow, (N, C, h, w) feature -> (N, 2, factor*h, factor*w) flow in fine pixels.
    """

    def __init__(self, channels, factor):
        super().__init__(nn.Conv2d(2 + channels, 256, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(256, factor ** 2 * 9, 1))
        self.factor = factor

    def forward(self, flow, feature):
        n, _, height, width = flow.shape
        weights = super().forward(torch.cat((flow, feature), dim=1))
        weights = weights.view(n, 1, 9, self.factor ** 2, height, width).softmax(dim=2)
        neighbours = F.unfold(flow * self.factor, kernel_size=3, padding=1).view(n, 2, 9, 1, height, width)
        fine = (weights * neighbours).sum(dim=2)  # (N, 2, factor², h, w), sub-pixel index = row * factor + col
        return F.pixel_shuffle(fine.reshape(n, 2 * self.factor ** 2, height, width), self.factor)
