"""VQGAN autoencoder (CodeFormer / KEEP stage 1) and its patch discriminator.

Shared building blocks, imported by ``codeformer_arch`` and ``keep_arch``: :class:`ResBlock`, :class:`AttnBlock`,
:class:`Encoder`, :class:`VectorQuantizer`, :class:`Generator`, the layout tables derived from the configuration
(:func:`channels_per_resolution`, :func:`encoder_fuse_indices`, :func:`generator_fuse_indices`). Weights load
through :mod:`vfsr_io.checkpoint`.

State-dict keys and shapes follow the official release (``sczhou/CodeFormer`` ``basicsr/archs/vqgan_arch.py``), so
official checkpoints load with ``strict=True``. The encoder and the generator are flat ``blocks`` lists whose layout
has one source, :func:`encoder_layout` / :func:`generator_layout`; the skip-fusion indices that the official
CodeFormer and KEEP hard-code for the 512 configuration are derived from the same layout for any configuration.
"""
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from vfsr_arch.acceleration import float32_for_exact_codes
from vfsr_io.checkpoint import load_network_weights

CODEFORMER_RELEASES = 'https://github.com/sczhou/CodeFormer/releases'


# ------------------------------------------------------------------------------------------------------------------
# Layout: one list of block specifications per network, the single source of the block order and of the tables.
# ------------------------------------------------------------------------------------------------------------------
class BlockSpec(NamedTuple):
    """One entry of ``Encoder.blocks`` / ``Generator.blocks``.

    ``kind`` is one of ``conv``, ``res``, ``attn``, ``down``, ``up``, ``norm``; ``resolution`` is the feature size
    (for a square ``img_size`` input) the block outputs; ``level`` is the index into ``ch_mult`` for the blocks of a
    resolution level and ``None`` for the stem, the middle (non-local) blocks and the head.
    """
    kind: str
    in_channels: int
    out_channels: int
    resolution: int
    level: int | None


def level_resolutions(img_size: int, ch_mult: Sequence[int]) -> list[int]:
    """Feature size of each resolution level: ``img_size / 2**level``."""
    return [img_size // 2**level for level in range(len(ch_mult))]


def encoder_layout(img_size: int, nf: int, ch_mult: Sequence[int], res_blocks: int,
                   attn_resolutions: Sequence[int], emb_dim: int = 256, in_channels: int = 3) -> list[BlockSpec]:
    """Blocks of :class:`Encoder`: stem conv; per level ``res_blocks`` ResBlocks (each followed by attention at
    attention resolutions) then a downsample (not after the last level); ResBlock, attention, ResBlock; norm; conv."""
    resolutions = level_resolutions(img_size, ch_mult)
    specs = [BlockSpec('conv', in_channels, nf, img_size, None)]
    channels = nf
    for level, (mult, resolution) in enumerate(zip(ch_mult, resolutions)):
        for _ in range(res_blocks):
            specs.append(BlockSpec('res', channels, nf * mult, resolution, level))
            channels = nf * mult
            if resolution in attn_resolutions:
                specs.append(BlockSpec('attn', channels, channels, resolution, level))
        if level != len(ch_mult) - 1:
            specs.append(BlockSpec('down', channels, channels, resolution // 2, level))
    bottom = resolutions[-1]
    specs += [BlockSpec('res', channels, channels, bottom, None), BlockSpec('attn', channels, channels, bottom, None),
              BlockSpec('res', channels, channels, bottom, None), BlockSpec('norm', channels, channels, bottom, None),
              BlockSpec('conv', channels, emb_dim, bottom, None)]
    return specs


def generator_layout(img_size: int, nf: int, ch_mult: Sequence[int], res_blocks: int,
                     attn_resolutions: Sequence[int], emb_dim: int = 256, out_channels: int = 3) -> list[BlockSpec]:
    """Blocks of :class:`Generator`: the encoder's mirror. Stem conv; ResBlock, attention, ResBlock; per level from
    the bottom ``res_blocks`` ResBlocks (each followed by attention at attention resolutions) then a 2x upsample (not
    after the top level); norm; conv to RGB."""
    resolutions = level_resolutions(img_size, ch_mult)
    channels = nf * ch_mult[-1]
    bottom = resolutions[-1]
    specs = [BlockSpec('conv', emb_dim, channels, bottom, None), BlockSpec('res', channels, channels, bottom, None),
             BlockSpec('attn', channels, channels, bottom, None), BlockSpec('res', channels, channels, bottom, None)]
    for level in reversed(range(len(ch_mult))):
        resolution = resolutions[level]
        for _ in range(res_blocks):
            specs.append(BlockSpec('res', channels, nf * ch_mult[level], resolution, level))
            channels = nf * ch_mult[level]
            if resolution in attn_resolutions:
                specs.append(BlockSpec('attn', channels, channels, resolution, level))
        if level != 0:
            specs.append(BlockSpec('up', channels, channels, resolution * 2, level))
    specs += [BlockSpec('norm', channels, channels, img_size, None), BlockSpec('conv', channels, out_channels, img_size,
                                                                                None)]
    return specs


def channels_per_resolution(img_size: int, nf: int, ch_mult: Sequence[int]) -> dict[str, int]:
    """Feature channels at each level, keyed by ``str(resolution)`` (the official ``channels`` table):
    ``{'512': 64, '256': 128, '128': 128, '64': 256, '32': 256, '16': 512}`` at the default configuration."""
    return {str(res): nf * mult for res, mult in zip(level_resolutions(img_size, ch_mult), ch_mult)}


def _resblock_indices_per_level(specs: list[BlockSpec]) -> dict[int, list[int]]:
    indices: dict[int, list[int]] = {}
    for index, spec in enumerate(specs):
        if spec.kind == 'res' and spec.level is not None:
            indices.setdefault(spec.level, []).append(index)
    return indices


def encoder_fuse_indices(img_size: int, nf: int, ch_mult: Sequence[int], res_blocks: int,
                         attn_resolutions: Sequence[int]) -> dict[str, int]:
    """Encoder block after which the skip feature of each level is taken: the level's last ResBlock (before its
    attention, if any). ``{'512': 2, '256': 5, '128': 8, '64': 11, '32': 14, '16': 18}`` at the default config."""
    specs = encoder_layout(img_size, nf, ch_mult, res_blocks, attn_resolutions)
    resolutions = level_resolutions(img_size, ch_mult)
    return {str(resolutions[level]): indices[-1] for level, indices in _resblock_indices_per_level(specs).items()}


def generator_fuse_indices(img_size: int, nf: int, ch_mult: Sequence[int], res_blocks: int,
                           attn_resolutions: Sequence[int]) -> dict[str, int]:
    """Generator block after which the encoder feature of each level is fused: the level's first ResBlock, or its
    last ResBlock (before its attention) at attention resolutions. This is the official rule; it gives
    ``{'16': 6, '32': 9, '64': 12, '128': 15, '256': 18, '512': 21}`` at the default configuration."""
    specs = generator_layout(img_size, nf, ch_mult, res_blocks, attn_resolutions)
    resolutions = level_resolutions(img_size, ch_mult)
    table = {}
    for level, indices in sorted(_resblock_indices_per_level(specs).items(), reverse=True):
        has_attention = resolutions[level] in attn_resolutions
        table[str(resolutions[level])] = indices[-1] if has_attention else indices[0]
    return table


# ------------------------------------------------------------------------------------------------------------------
# Building blocks
# ------------------------------------------------------------------------------------------------------------------
def group_norm(channels: int) -> nn.GroupNorm:
    """The VQGAN normalisation: 32 groups (so every channel count must be a multiple of 32), eps 1e-6."""
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class ResBlock(nn.Module):
    """Pre-activation residual block: (GroupNorm, SiLU, conv3x3) x2, plus a 1x1 ``conv_out`` skip when the channel
    count changes. (b, in_channels, h, w) -> (b, out_channels, h, w)."""

    def __init__(self, in_channels: int, out_channels: int | None = None):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.conv_out = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In-place activations on fresh tensors (autograd needs neither overwritten tensor). The residual sum goes to
        # a new tensor: PyTorch's in-place bf16 add on the CPU takes twice as long (benchmarks in docs/benchmarks.md).
        h = self.conv1(F.silu(self.norm1(x), inplace=True))
        h = self.conv2(F.silu(self.norm2(h), inplace=True))
        return h + (self.conv_out(x) if hasattr(self, 'conv_out') else x)


class AttnBlock(nn.Module):
    """Single-head non-local self-attention over all positions with 1x1-conv q/k/v/proj_out and a residual.
    (b, c, h, w) -> (b, c, h, w)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        normed = self.norm(x)
        # (b, c, h, w) -> (b, 1 head, h*w, c)
        q, k, v = (proj(normed).flatten(2).transpose(1, 2).unsqueeze(1) for proj in (self.q, self.k, self.v))
        attended = F.scaled_dot_product_attention(q, k, v)  # default scale c^-0.5, as the official code
        return self.proj_out(attended.squeeze(1).transpose(1, 2).reshape(b, c, h, w)).add_(x)


class Downsample(nn.Module):
    """Stride-2 conv3x3 with the official asymmetric zero padding (right and bottom only). (b, c, h, w) ->
    (b, c, h/2, w/2)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest 2x upsampling then conv3x3. (b, c, h, w) -> (b, c, 2h, 2w)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode='nearest'))


def build_block(spec: BlockSpec) -> nn.Module:
    """The module for one layout entry."""
    if spec.kind == 'conv':
        return nn.Conv2d(spec.in_channels, spec.out_channels, 3, padding=1)
    if spec.kind == 'res':
        return ResBlock(spec.in_channels, spec.out_channels)
    if spec.kind == 'attn':
        return AttnBlock(spec.in_channels)
    if spec.kind == 'down':
        return Downsample(spec.in_channels)
    if spec.kind == 'up':
        return Upsample(spec.in_channels)
    if spec.kind == 'norm':
        return group_norm(spec.in_channels)
    raise ValueError(f'unknown block kind {spec.kind!r}')


class Encoder(nn.Module):
    """VQGAN encoder. (b, 3, H, W) -> latent (b, emb_dim, H/2**(L-1), W/2**(L-1)), L = len(ch_mult).

    ``forward(x, return_features_at={'32': 14, ...})`` also returns the outputs of the named blocks
    (``{'32': (b, C_32, H/16, W/16), ...}``), which CodeFormer and KEEP fuse into the generator.

    It runs in float32 under autocast (except ``bf16-fast``): its latent decides the codes (the nearest codebook
    entry, or the argmax of CodeFormer's and KEEP's code logits), and bf16 convolutions moved the latent by ~1.5%,
    enough to flip 1.6% of CodeFormer's codes at 512x512 (none in float32; docs/benchmarks.md).
    """

    def __init__(self, img_size: int, nf: int, ch_mult: Sequence[int], res_blocks: int,
                 attn_resolutions: Sequence[int], emb_dim: int, in_channels: int = 3):
        super().__init__()
        self.downsample_factor = 2 ** (len(ch_mult) - 1)
        layout = encoder_layout(img_size, nf, ch_mult, res_blocks, attn_resolutions, emb_dim, in_channels)
        self.blocks = nn.ModuleList(build_block(spec) for spec in layout)

    @float32_for_exact_codes
    def forward(self, x: torch.Tensor, return_features_at: Mapping[str, int] | None = None):
        if x.shape[-2] % self.downsample_factor or x.shape[-1] % self.downsample_factor:
            raise ValueError(f'image height and width must be multiples of {self.downsample_factor}, '
                             f'got {tuple(x.shape[-2:])}')
        names_at = {index: name for name, index in (return_features_at or {}).items()}
        features = {}
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in names_at:
                features[names_at[index]] = x
        return x if return_features_at is None else (x, features)


class Generator(nn.Module):
    """VQGAN decoder. latent (b, emb_dim, h, w) -> image (b, 3, h*2**(L-1), w*2**(L-1)).

    ``forward(z, fuse_at={'32': 9, ...}, fuse=fn)`` calls ``x = fn(name, x)`` right after each named block; this is
    where CodeFormer's and KEEP's skip fusion (and KEEP's cross-frame attention) plug in.
    """

    def __init__(self, img_size: int, nf: int, ch_mult: Sequence[int], res_blocks: int,
                 attn_resolutions: Sequence[int], emb_dim: int, out_channels: int = 3):
        super().__init__()
        layout = generator_layout(img_size, nf, ch_mult, res_blocks, attn_resolutions, emb_dim, out_channels)
        self.blocks = nn.ModuleList(build_block(spec) for spec in layout)

    def forward(self, z: torch.Tensor, fuse_at: Mapping[str, int] | None = None,
                fuse: Callable[[str, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        if (fuse_at is None) != (fuse is None):
            raise ValueError('give both fuse_at and fuse, or neither')
        names_at = {index: name for name, index in (fuse_at or {}).items()}
        x = z
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in names_at:
                x = fuse(names_at[index], x)
        return x


class VectorQuantizer(nn.Module):
    """Nearest-neighbour vector quantiser with a straight-through gradient (VQ-VAE).

    ``legacy_beta=True`` reproduces the official loss, ``||sg[z] - e||^2`` weighted by ``beta`` and the commitment
    ``||z - sg[e]||^2`` by 1 (the taming-transformers "legacy" order); ``False`` gives the VQ-VAE paper's
    ``||sg[z] - e||^2 + beta * ||z - sg[e]||^2``.
    """

    def __init__(self, codebook_size: int, emb_dim: int, beta: float = 0.25, legacy_beta: bool = True):
        super().__init__()
        self.codebook_size = codebook_size
        self.emb_dim = emb_dim
        self.beta = beta
        self.legacy_beta = legacy_beta
        self.embedding = nn.Embedding(codebook_size, emb_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / codebook_size, 1.0 / codebook_size)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """z (b, emb_dim, h, w) -> (z_q (b, emb_dim, h, w) with straight-through gradient, loss, stats).

        stats: ``min_encoding_indices`` (b*h*w, 1) in (b, h, w) order, ``perplexity``, ``mean_distance``.
        """
        b, c, h, w = z.shape
        # Distances and the argmin stay in float32 under autocast: bf16 would change the chosen codes.
        with torch.autocast(device_type=z.device.type, enabled=False):
            flat = z.float().permute(0, 2, 3, 1).reshape(-1, c)
            codebook = self.embedding.weight.float()
            distances = torch.addmm((flat**2).sum(1, keepdim=True) + (codebook**2).sum(1), flat, codebook.t(),
                                    beta=1, alpha=-2)
            indices = distances.argmin(1)
        z_q = self.get_codebook_feat(indices, (b, h, w, c)).to(z.dtype)
        codebook_term = F.mse_loss(z_q, z.detach())
        commitment_term = F.mse_loss(z, z_q.detach())
        if self.legacy_beta:
            loss = commitment_term + self.beta * codebook_term
        else:
            loss = codebook_term + self.beta * commitment_term
        usage = torch.bincount(indices, minlength=self.codebook_size).float() / indices.numel()
        perplexity = torch.exp(-(usage * torch.log(usage + 1e-10)).sum())
        stats = {'min_encoding_indices': indices.unsqueeze(1), 'perplexity': perplexity,
                 'mean_distance': distances.mean()}
        return z + (z_q - z).detach(), loss, stats

    def get_codebook_feat(self, indices: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        """Codebook entries for ``indices`` (any shape, b*h*w values in (b, h, w) order) reshaped to
        ``shape = (b, h, w, emb_dim)`` and returned as (b, emb_dim, h, w).

        A row lookup: bit-identical to the official one-hot matmul, and it keeps the codebook in float32 under
        autocast.
        """
        b, h, w, c = shape
        if c != self.emb_dim:
            raise ValueError(f'shape asks for {c} channels but the codebook has emb_dim {self.emb_dim}')
        return F.embedding(indices.reshape(-1), self.embedding.weight).view(b, h, w, c).permute(0, 3, 1, 2)


class GumbelQuantizer(nn.Module):
    """Gumbel-softmax quantiser (official ``quantizer='gumbel'`` option): a 1x1 conv predicts code logits, codes
    are sampled with Gumbel-softmax (hard at eval), and a KL term to the uniform prior is the loss."""

    def __init__(self, codebook_size: int, emb_dim: int, num_hiddens: int, straight_through: bool = False,
                 kl_weight: float = 5e-4, temperature: float = 1.0):
        super().__init__()
        self.codebook_size = codebook_size
        self.straight_through = straight_through
        self.kl_weight = kl_weight
        self.temperature = temperature
        self.proj = nn.Conv2d(num_hiddens, codebook_size, 1)
        self.embed = nn.Embedding(codebook_size, emb_dim)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """z (b, num_hiddens, h, w) -> (z_q (b, emb_dim, h, w), KL loss, {'min_encoding_indices': (b, h, w)})."""
        logits = self.proj(z)
        hard = self.straight_through if self.training else True
        one_hot = F.gumbel_softmax(logits, tau=self.temperature, dim=1, hard=hard)
        z_q = torch.einsum('bnhw,nd->bdhw', one_hot, self.embed.weight)
        probs = F.softmax(logits, dim=1)
        kl = self.kl_weight * (probs * torch.log(probs * self.codebook_size + 1e-10)).sum(1).mean()
        return z_q, kl, {'min_encoding_indices': one_hot.argmax(1)}


# ------------------------------------------------------------------------------------------------------------------
# Registered networks
# ------------------------------------------------------------------------------------------------------------------
@ARCH_REGISTRY.register()
class VQAutoEncoder(nn.Module):
    """VQGAN autoencoder: ``encoder`` -> ``quantize`` -> ``generator``. (b, 3, H, W) in [-1, 1] ->
    (reconstruction (b, 3, H, W), quantiser loss, quantiser stats).

    Keyword arguments as the official ``VQAutoEncoder``; ``legacy_beta`` (ours) selects the quantiser loss form.
    ``channels``, ``fuse_encoder_block`` and ``fuse_generator_block`` are the per-resolution tables derived from
    the configuration (official CodeFormer/KEEP hard-code them for 512 / nf 64 / ch_mult [1, 2, 2, 4, 4, 8]).
    """

    def __init__(self, img_size: int = 512, nf: int = 64, ch_mult: Sequence[int] = (1, 2, 2, 4, 4, 8),
                 quantizer: str = 'nearest', res_blocks: int = 2, attn_resolutions: Sequence[int] = (16,),
                 codebook_size: int = 1024, emb_dim: int = 256, beta: float = 0.25,
                 gumbel_straight_through: bool = False, gumbel_kl_weight: float = 1e-8, model_path=None,
                 legacy_beta: bool = True):
        super().__init__()
        self.img_size = img_size
        self.emb_dim = emb_dim
        self.codebook_size = codebook_size
        self.latent_grid = img_size // 2 ** (len(ch_mult) - 1)
        self.encoder = Encoder(img_size, nf, ch_mult, res_blocks, attn_resolutions, emb_dim)
        if quantizer == 'nearest':
            self.quantize = VectorQuantizer(codebook_size, emb_dim, beta, legacy_beta)
        elif quantizer == 'gumbel':
            self.quantize = GumbelQuantizer(codebook_size, emb_dim, emb_dim, gumbel_straight_through,
                                            gumbel_kl_weight)
        else:
            raise ValueError(f"quantizer must be 'nearest' or 'gumbel', got {quantizer!r}")
        self.generator = Generator(img_size, nf, ch_mult, res_blocks, attn_resolutions, emb_dim)

        self.channels = channels_per_resolution(img_size, nf, ch_mult)
        self.fuse_encoder_block = encoder_fuse_indices(img_size, nf, ch_mult, res_blocks, attn_resolutions)
        self.fuse_generator_block = generator_fuse_indices(img_size, nf, ch_mult, res_blocks, attn_resolutions)

        if model_path is not None:
            load_network_weights(self, model_path, published_at=CODEFORMER_RELEASES)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        quant, codebook_loss, quant_stats = self.quantize(self.encoder(x))
        return self.generator(quant), codebook_loss, quant_stats


@ARCH_REGISTRY.register()
class VQGANDiscriminator(nn.Module):
    """PatchGAN discriminator of the VQGAN stage: (b, nc, H, W) -> real/fake logits (b, 1, H/2**n_layers - 2,
    W/2**n_layers - 2). Conv4x4 stride 2 + LeakyReLU; (n_layers - 1) x [conv stride 2, BatchNorm, LeakyReLU]
    doubling the width up to 8 ndf; one stride-1 such layer; a stride-1 conv to one channel."""

    def __init__(self, nc: int = 3, ndf: int = 64, n_layers: int = 4, model_path=None):
        super().__init__()
        layers = [nn.Conv2d(nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        width = ndf
        for n in range(1, n_layers + 1):
            next_width = ndf * min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(width, next_width, 4, stride=stride, padding=1, bias=False),
                       nn.BatchNorm2d(next_width), nn.LeakyReLU(0.2, True)]
            width = next_width
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.main = nn.Sequential(*layers)

        if model_path is not None:
            load_network_weights(self, model_path, wrapper_keys=('params_d', 'params'))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)
