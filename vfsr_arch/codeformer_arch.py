"""CodeFormer (Zhou et al., NeurIPS 2022): code-prediction transformer over a frozen VQGAN with CFT skip fusion.

Shared with ``keep_arch``: :class:`CodePrediction` (the code-prediction transformer of :class:`TransformerSALayer`
layers), :class:`SFTFusionBlock` (official ``Fuse_sft_block``), :func:`adaptive_instance_normalization` and the
option checks :func:`check_latent_size` and :func:`check_resolution_lists`.

State-dict keys follow the official ``sczhou/CodeFormer`` release (``CodeFormer`` subclasses ``VQAutoEncoder``, so
``position_emb`` comes first and ``encoder``/``quantize``/``generator`` keep their top-level names). The official
class hard-codes its VQGAN (512, nf 64, ch_mult [1, 2, 2, 4, 4, 8], emb 256); here those are keyword arguments with
the official values as defaults, and the fusion tables are derived from them.
"""
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from vfsr_arch.acceleration import float32_under_autocast
from vfsr_arch.token_attention import merge_heads, split_heads
from vfsr_arch.vqgan_arch import ResBlock, VQAutoEncoder


def check_latent_size(latent_size: int, latent_grid: int, img_size: int, ch_mult: Sequence[int]) -> None:
    """The code-prediction transformer has one position per latent token: ``latent_size`` must be ``latent_grid**2``."""
    if latent_size != latent_grid**2:
        raise ValueError(f'latent_size {latent_size} does not match the {latent_grid}x{latent_grid} '
                         f'latent grid of img_size {img_size} with ch_mult {list(ch_mult)}')


def check_resolution_lists(channels: Mapping[str, int], **size_lists: Sequence[str]) -> None:
    """Every resolution named in each option list (e.g. ``connect_list``) must be a level of the VQGAN."""
    for name, sizes in size_lists.items():
        unknown = [size for size in sizes if size not in channels]
        if unknown:
            raise ValueError(f'{name} {unknown} not among the resolutions {list(channels)}')


def adaptive_instance_normalization(content: torch.Tensor, style: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Give ``content`` (b, c, h, w) the per-channel mean and std of ``style`` (b, c, h', w'). As the official
    code: unbiased variance, ``eps`` added to the variance."""
    def mean_std(feat):
        flat = feat.flatten(2)
        return flat.mean(2)[..., None, None], (flat.var(2) + eps).sqrt()[..., None, None]

    content_mean, content_std = mean_std(content)
    style_mean, style_std = mean_std(style)
    return (content - content_mean) / content_std * style_std + style_mean


class MultiheadSelfAttention(nn.Module):
    """Multi-head attention with the parameters of ``nn.MultiheadAttention`` (``in_proj_weight`` [3d, d],
    ``in_proj_bias``, ``out_proj``), computed with ``F.scaled_dot_product_attention`` on batch-first tensors.
    Queries and keys come from ``query_key`` and values from ``value``, both (b, n, d)."""

    def __init__(self, embed_dim: int, num_heads: int):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f'embed_dim {embed_dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, query_key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        d = value.shape[-1]
        q, k = F.linear(query_key, self.in_proj_weight[:2 * d], self.in_proj_bias[:2 * d]).chunk(2, dim=-1)
        v = F.linear(value, self.in_proj_weight[2 * d:], self.in_proj_bias[2 * d:])
        q, k, v = (split_heads(t, self.num_heads) for t in (q, k, v))
        return self.out_proj(merge_heads(F.scaled_dot_product_attention(q, k, v)))


class TransformerSALayer(nn.Module):
    """Pre-norm transformer layer: self-attention with the position embedding added to queries and keys only,
    then an MLP d -> dim_mlp -> d with GELU; both residual. x (b, n, d), pos (n, d) or (b, n, d) -> (b, n, d).

    Batch-first (the official layer is sequence-first); keys as the official ``self_attn.*``, ``linear1``,
    ``linear2``, ``norm1``, ``norm2``.
    """

    def __init__(self, embed_dim: int, nhead: int = 8, dim_mlp: int = 2048):
        super().__init__()
        self.self_attn = MultiheadSelfAttention(embed_dim, nhead)
        self.linear1 = nn.Linear(embed_dim, dim_mlp)
        self.linear2 = nn.Linear(dim_mlp, embed_dim)
        self.norm1 = nn.LayerNorm(embed_dim)
        self.norm2 = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        normed = self.norm1(x)
        x = x + self.self_attn(normed if pos is None else normed + pos, normed)
        return x + self.linear2(F.gelu(self.linear1(self.norm2(x))))


class CodePrediction:
    """The code-prediction transformer of CodeFormer and KEEP, mixed into the network (an ``nn.Module``) so that its
    parameters keep the official top-level names ``position_emb``, ``feat_emb``, ``ft_layers``, ``idx_pred_layer``.
    The network needs ``img_size`` and ``encoder`` (for the error message of :meth:`code_logits`)."""

    def add_code_prediction(self, latent_size: int, emb_dim: int, dim_embd: int, n_head: int, n_layers: int,
                            codebook_size: int) -> None:
        """Latent tokens (emb_dim) -> ``n_layers`` :class:`TransformerSALayer` of width ``dim_embd`` (MLP
        2 * dim_embd, learned position embedding of ``latent_size`` tokens) -> logits over ``codebook_size`` codes."""
        self.position_emb = nn.Parameter(torch.zeros(latent_size, dim_embd))
        self.feat_emb = nn.Linear(emb_dim, dim_embd)
        self.ft_layers = nn.Sequential(*(TransformerSALayer(dim_embd, n_head, 2 * dim_embd) for _ in range(n_layers)))
        self.idx_pred_layer = nn.Sequential(nn.LayerNorm(dim_embd), nn.Linear(dim_embd, codebook_size, bias=False))

    @float32_under_autocast  # its argmax picks the codes; ~1% of the work of a frame
    def code_logits(self, latent: torch.Tensor) -> torch.Tensor:
        """Codebook logits of each latent token: latent (b, emb_dim, h, w) -> (b, h*w, codebook_size)."""
        tokens = latent.flatten(2).transpose(1, 2)
        if tokens.shape[1] != self.position_emb.shape[0]:
            raise ValueError(f'the transformer takes {self.position_emb.shape[0]} latent tokens '
                             f'({self.img_size}x{self.img_size} images), got {tuple(latent.shape[-2:])} tokens '
                             f'from a {latent.shape[-2] * self.encoder.downsample_factor}x'
                             f'{latent.shape[-1] * self.encoder.downsample_factor} image')
        query = self.feat_emb(tokens)
        for layer in self.ft_layers:
            query = layer(query, self.position_emb)
        return self.idx_pred_layer(query)


class SFTFusionBlock(nn.Module):
    """Controllable feature transformation (official ``Fuse_sft_block``): a ResBlock encodes
    ``cat[enc, dec]`` (2C -> C), two conv branches predict a spatial scale and shift, and
    ``out = dec + w * (dec * scale + shift)``. enc, dec (b, C, h, w) -> (b, C, h, w)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.encode_enc = ResBlock(2 * in_ch, out_ch)
        self.scale = self._branch(in_ch, out_ch)
        self.shift = self._branch(in_ch, out_ch)

    @staticmethod
    def _branch(in_ch: int, out_ch: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.LeakyReLU(0.2, True),
                             nn.Conv2d(out_ch, out_ch, 3, padding=1))

    def forward(self, enc_feat: torch.Tensor, dec_feat: torch.Tensor, w: float = 1) -> torch.Tensor:
        encoded = self.encode_enc(torch.cat([enc_feat, dec_feat], dim=1))
        # one pass for "dec + w * ...", into a new tensor: in-place bf16 arithmetic is twice as slow on the CPU
        return torch.add(dec_feat, torch.addcmul(self.shift(encoded), dec_feat, self.scale(encoded)), alpha=w)


@ARCH_REGISTRY.register()
class CodeFormer(VQAutoEncoder, CodePrediction):
    """CodeFormer. x (b, 3, H, W) in [-1, 1] (H = W = img_size for the official position embedding) ->
    ``(out (b, 3, H, W), logits (b, latent_size, codebook_size), lq_feat (b, emb_dim, h, w))``.

    Args:
        dim_embd, n_head, n_layers: width, heads and depth of the code-prediction transformer (MLP 2 * dim_embd).
        codebook_size, latent_size: codebook entries and number of latent tokens (h * w).
        connect_list: resolutions whose encoder features are fused into the generator (CFT).
        fix_modules: submodules frozen (``requires_grad=False``) at construction.
        vqgan_path: a trained VQAutoEncoder checkpoint loaded into encoder/quantize/generator.
        img_size, nf, ch_mult, res_blocks, attn_resolutions, emb_dim: the VQGAN (official values by default).

    On CPU, ``model.to(memory_format=torch.channels_last)`` and bf16 autocast are the fast path
    (``benchmarks/bench_codeformer.py``).
    """

    def __init__(self, dim_embd: int = 512, n_head: int = 8, n_layers: int = 9, codebook_size: int = 1024,
                 latent_size: int = 256, connect_list: Sequence[str] = ('32', '64', '128', '256'),
                 fix_modules: Sequence[str] | None = ('quantize', 'generator'), vqgan_path=None,
                 img_size: int = 512, nf: int = 64, ch_mult: Sequence[int] = (1, 2, 2, 4, 4, 8), res_blocks: int = 2,
                 attn_resolutions: Sequence[int] = (16,), emb_dim: int = 256):
        super().__init__(img_size, nf, ch_mult, 'nearest', res_blocks, attn_resolutions, codebook_size, emb_dim,
                         model_path=vqgan_path)
        check_latent_size(latent_size, self.latent_grid, img_size, ch_mult)
        check_resolution_lists(self.channels, connect_list=connect_list)
        self.connect_list = list(connect_list)
        self.add_code_prediction(latent_size, emb_dim, dim_embd, n_head, n_layers, codebook_size)
        self.fuse_convs_dict = nn.ModuleDict(
            {size: SFTFusionBlock(self.channels[size], self.channels[size]) for size in self.connect_list})
        # last, so that any submodule (also the transformer's or the fusion's) can be frozen
        for module in fix_modules or ():
            getattr(self, module).requires_grad_(False)

    def forward(self, x: torch.Tensor, w: float = 0, detach_16: bool = True, code_only: bool = False,
                adain: bool = False):
        """``w`` is the fidelity weight of the CFT fusion (0: codebook only). ``code_only`` returns
        ``(logits, lq_feat)`` (training stage II). ``detach_16`` stops gradients at the quantised latent. ``adain``
        gives the quantised latent the channel statistics of the encoder latent."""
        lq_feat, enc_feats = self.encoder(x, return_features_at={s: self.fuse_encoder_block[s]
                                                                 for s in self.connect_list})
        logits = self.code_logits(lq_feat)
        if code_only:
            return logits, lq_feat

        b, _, h, w_latent = lq_feat.shape
        # argmax of the logits is the official top-1 of their softmax
        quant_feat = self.quantize.get_codebook_feat(logits.argmax(dim=2), (b, h, w_latent, self.emb_dim))
        if detach_16:
            quant_feat = quant_feat.detach()
        if adain:
            quant_feat = adaptive_instance_normalization(quant_feat, lq_feat)

        if w > 0:
            out = self.generator(
                quant_feat, fuse_at={s: self.fuse_generator_block[s] for s in self.connect_list},
                fuse=lambda size, dec: self.fuse_convs_dict[size](enc_feats[size].detach(), dec, w))
        else:
            out = self.generator(quant_feat)
        return out, logits, lq_feat
