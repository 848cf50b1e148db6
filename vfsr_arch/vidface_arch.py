"""VidFace: a full-transformer solver for video face hallucination from unaligned tiny snapshots (Gan et al. 2021).

Seven unordered 16x12 snapshots of one face go in, a 128x96 face per snapshot comes out, together with the five
facial landmarks the network predicts for each snapshot at every refinement iteration. The pieces, top-down:

1. **T2T encoder** (``tokens_to_token``): per-pixel embedding, then soft splits (3x3 unfold, stride 1, so the
   16x12 token grid is kept) alternating with token transformers whose attention is joint over the tokens of all
   snapshots. Its three outputs (``x1``, ``x2``, ``x3``) are stacked into the decoder later (multi-scale tokens).
2. **Refiner with recurrent landmark positional encoding**: a fixed sinusoidal spatial position encoding is added to
   ``x3`` (no temporal encoding, the snapshots are a set). For ``num_iter`` iterations, an encoding of the current
   landmarks is concatenated to every token, the same ``depth`` transformer blocks run (shared weights), ``down1``
   maps back to ``embed_dim`` and the landmark head predicts new landmarks from the result.
3. **Detoken Upsampling** (``deu``): DeT, multi-head attention over all tokens with small q/k (32 per head) and wide
   values, a value residual and no FFN; then T2I, an overlapping ``Fold`` (kernel 2s, stride s, padding s/2) that
   sums each token's patch into an s-times larger image.
4. **Head**: a per-pixel MLP (Linear, LeakyReLU 0.1, Linear) plus a bilinear s-times upsampling of the input.

State_dict keys follow the official release (``yuangan/VidFace``) so its checkpoint loads with ``strict=True``;
that is why some attributes keep the official names (``vidface``, ``deu``, ``down1`` ...). Reproduced official
details: the T2T attention scale uses the *input* width (``(dim // heads) ** -0.5``), its skip connection uses v
(the width changes); the DeT scale is ``(dim // heads) ** -0.5`` of its input width; and the decoder receives the
landmark encoding used in the *last refinement iteration* (computed from the previous iteration's landmarks), not
one from the final landmarks. ``decoder_uses_final_landmarks=True`` offers the latter.

Not reproduced: the official constructor's ``torch.autograd.set_detect_anomaly(True)`` (a global debugging switch
that slows training) and its ``torch.cuda.current_device()`` calls; the network runs on any device.
"""
import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from vfsr_arch.token_attention import merge_heads

NUM_LANDMARKS = 5
PIXEL_EMBED_DIM = 16  # official width of the per-pixel embedding before the first soft split
T2T_HEADS = 8  # official head count of both T2T token transformers
LANDMARK_HEAD_DIMS = (32, 16)  # official widths of down2 and down3


def sinusoid_position_encoding(num_positions: int, dim: int) -> torch.Tensor:
    """The fixed Transformer sinusoid table, (1, num_positions, dim): sin on even channels, cos on odd ones."""
    position = torch.arange(num_positions, dtype=torch.float64).unsqueeze(1)
    angle = position / torch.pow(10000.0, 2 * (torch.arange(dim, dtype=torch.float64) // 2) / dim)
    table = torch.where(torch.arange(dim) % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.unsqueeze(0).float()


class DropPath(nn.Module):
    """Stochastic depth: in training, drop a residual branch for a whole sample with probability ``drop_prob``."""

    def __init__(self, drop_prob: float):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0:
            return x
        keep_prob = 1 - self.drop_prob
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep_prob)
        return x * keep / keep_prob


class Mlp(nn.Module):
    """Linear, GELU, Linear."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention, (b, n, dim) -> (b, n, num_heads * head_dim).

    With ``value_skip`` the output is ``proj(attention) + v`` (the T2T form, whose output width differs from its
    input width); otherwise ``proj(attention)`` (the ViT form). ``scale`` defaults to ``head_dim ** -0.5``.
    """

    def __init__(self, dim: int, num_heads: int, head_dim: int, qkv_bias: bool = False, scale: float | None = None,
                 value_skip: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.scale = scale
        self.value_skip = value_skip
        inner_dim = num_heads * head_dim
        self.qkv = nn.Linear(dim, 3 * inner_dim, bias=qkv_bias)
        self.proj = nn.Linear(inner_dim, inner_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        attended = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        out = self.proj(merge_heads(attended))
        return out + merge_heads(v) if self.value_skip else out


class TokenTransformer(nn.Module):
    """T2T re-structurisation: pre-norm attention with a value skip, then a residual MLP.

    (b, n, dim) -> (b, n, out_dim) with ``out_dim = num_heads * head_dim``. The attention scale is
    ``(dim // num_heads) ** -0.5`` of the input width, as in the official code.
    """

    def __init__(self, dim: int, out_dim: int, num_heads: int = T2T_HEADS, mlp_ratio: float = 1.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, num_heads, out_dim // num_heads, scale=(dim // num_heads) ** -0.5,
                                           value_skip=True)
        self.norm2 = nn.LayerNorm(out_dim)
        self.mlp = Mlp(out_dim, int(out_dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class T2TEncoder(nn.Module):
    """Tokens-to-token encoder that keeps the token grid; attention is joint over all snapshots' tokens.

    Input (b, t, 3, h, w). Returns the tokens of its three scales: ``x1`` and ``x2`` (b, t*h*w, token_dim), the
    outputs of the two token transformers, and ``x3`` (b*t, h*w, embed_dim), the projected last soft split.
    """

    def __init__(self, lr_size: tuple[int, int], embed_dim: int, token_dim: int):
        super().__init__()
        self.lr_size = lr_size
        self.soft_split = nn.Unfold(kernel_size=3, stride=1, padding=1)
        self.project0 = nn.Linear(3, PIXEL_EMBED_DIM)
        self.attention1 = TokenTransformer(PIXEL_EMBED_DIM * 9, token_dim)
        self.attention2 = TokenTransformer(token_dim * 9, token_dim)
        self.project = nn.Linear(token_dim * 9, embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, t = x.shape[:2]
        pixels = self.project0(x.flatten(3).transpose(-1, -2))  # (b, t, h*w, 16)
        x1 = self.attention1(self.split(pixels).reshape(b, -1, PIXEL_EMBED_DIM * 9))
        x2 = self.attention2(self.split(x1.view(b * t, -1, x1.shape[-1])).reshape(b, -1, x1.shape[-1] * 9))
        x3 = self.project(self.split(x2.view(b * t, -1, x2.shape[-1])))
        return x1, x2, x3

    def split(self, tokens: torch.Tensor) -> torch.Tensor:
        """Soft split of a token grid: (..., h*w, c) -> (prod(...), h*w, 9c), the 3x3 neighbourhood of each token."""
        h, w = self.lr_size
        grid = tokens.reshape(-1, h, w, tokens.shape[-1]).permute(0, 3, 1, 2).contiguous()  # unfold is slow on strides
        return self.soft_split(grid).transpose(1, 2)


class RefinerBlock(nn.Module):
    """Pre-norm ViT block (multi-head self-attention, MLP with GELU), with stochastic depth. (b, n, dim) -> same."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, num_heads, dim // num_heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class LandmarkPositionEncoding(nn.Module):
    """Encodes where every token lies relative to the five landmarks of its snapshot.

    Landmarks (b*t, 10) are interleaved (x, y) pairs in [-0.5, 0.5] of the image width/height; token (i, j) of the
    h x w grid sits at (j / w - 0.5, i / h - 0.5), the top-left corner of its pixel, not its centre (official). Returns
    (b*t, h*w, channels):

    * ``'offset'`` (official, 10 channels): ``(x_token - x_k, y_token - y_k)`` for each landmark k.
    * ``'distance'`` (paper, eq. 3; 5 channels): the Euclidean distance from the token to each landmark, divided by
      the sum of the five distances (L1 normalisation). It has one channel per landmark instead of two, so the
      refiner blocks, ``down1`` and ``deu.unproject1`` are 5 inputs narrower than the official checkpoint's.
    """

    def __init__(self, lr_size: tuple[int, int], mode: str):
        super().__init__()
        if mode not in ('offset', 'distance'):
            raise ValueError(f"landmark_encoding must be 'offset' or 'distance', got {mode!r}")
        self.mode = mode
        self.channels = 2 * NUM_LANDMARKS if mode == 'offset' else NUM_LANDMARKS
        h, w = lr_size
        index = torch.arange(h * w)
        grid = torch.stack(((index % w) / w - 0.5, (index // w) / h - 0.5), dim=-1)  # (h*w, 2) as (x, y)
        self.register_buffer('token_xy', grid.repeat(1, NUM_LANDMARKS), persistent=False)  # (h*w, 10)

    def forward(self, landmarks: torch.Tensor) -> torch.Tensor:
        offsets = self.token_xy - landmarks.unsqueeze(1)  # (b*t, h*w, 10)
        if self.mode == 'offset':
            return offsets
        squared = offsets.square().unflatten(-1, (NUM_LANDMARKS, 2)).sum(-1)
        # clamp: sqrt has an infinite gradient where a landmark sits exactly on a token centre
        return F.normalize(squared.clamp_min(1e-12).sqrt(), p=1, dim=-1)


class DetokenAttention(nn.Module):
    """DeT attention: per head, q and k of ``qk_dim`` and a value of ``v_dim``; ``softmax(q k^T * scale) v + v``.

    (b, n, dim) -> (b, n, num_heads * v_dim). No output projection. The qkv channels of each head are laid out
    [q, k, v] (official layout), and the scale is ``(dim // num_heads) ** -0.5`` of the input width (official).
    """

    def __init__(self, dim: int, num_heads: int, qk_dim: int, v_dim: int):
        super().__init__()
        self.num_heads = num_heads
        self.qk_dim = qk_dim
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, num_heads * (2 * qk_dim + v_dim), bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x).view(b, n, self.num_heads, -1).transpose(1, 2)
        q, k, v = qkv.split((self.qk_dim, self.qk_dim, qkv.shape[-1] - 2 * self.qk_dim), dim=-1)
        return merge_heads(attention_with_value_residual(q, k, v, self.scale))


def attention_with_value_residual(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """``softmax(q k^T * scale) v + v`` for (b, heads, n, d) q/k and (b, heads, n, d_v) v."""
    if q.device.type == 'cpu':
        # CPU SDPA has no fused kernel for values wider than q/k; its fallback computes bf16 in fp32, about 5x
        # slower under autocast than these two matmuls
        weights = torch.softmax((q * scale) @ k.transpose(-1, -2), dim=-1)
        return weights @ v + v  # a new tensor: in-place bf16 addition is slower on the CPU
    return F.scaled_dot_product_attention(q, k, v, scale=scale) + v


class DetokenTransformer(nn.Module):
    """DeT: pre-norm :class:`DetokenAttention`, with no residual on the input and no FFN. (b, n, dim) -> (b, n, out)."""

    def __init__(self, dim: int, num_heads: int, qk_dim: int, out_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = DetokenAttention(dim, num_heads, qk_dim, out_dim // num_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(self.norm1(x))


class PatchesToImage(nn.Module):
    """T2I: ``nn.Fold`` for a kernel of ``r * stride`` (r an integer), written as r^2 shifted adds of the patches'
    stride x stride sub-blocks. The same sums as the official ``nn.Fold`` (which has no parameters), but it takes the
    patches in token order and runs 1.6x (fp32) to 2.4x (bf16) faster than Fold's col2im on the CPU.

    patches (b, h*w, C * kernel^2), Fold's channel order (c, kernel row, kernel column) -> image (b, C, H, W),
    (H, W) = ``output_size`` = ((h - 1) * stride + kernel - 2 * padding, likewise for w).
    """

    def __init__(self, output_size: tuple[int, int], kernel_size: int, stride: int, padding: int):
        super().__init__()
        if kernel_size % stride:
            raise ValueError(f'kernel_size ({kernel_size}) must be a multiple of stride ({stride})')
        self.output_size, self.stride, self.padding = output_size, stride, padding
        self.blocks = kernel_size // stride  # sub-blocks per patch side
        self.grid = tuple((size + 2 * padding - kernel_size) // stride + 1 for size in output_size)  # patches (h, w)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        (h, w), r, s = self.grid, self.blocks, self.stride
        b = patches.shape[0]
        # (b, C, block row, block column, h, s, w, s): each sub-block laid out as the cells it lands in (one copy;
        # adding from the strided view instead was slower in bf16)
        blocks = patches.view(b, h, w, -1, r, s, r, s).permute(0, 3, 4, 6, 1, 5, 2, 7).contiguous()
        canvas = patches.new_zeros(b, blocks.shape[1], h + r - 1, s, w + r - 1, s)  # (b, C, rows, s, columns, s)
        for row in range(r):
            for column in range(r):  # sub-block (row, column) of patch (i, j) lands in cell (i + row, j + column)
                canvas[:, :, row:row + h, :, column:column + w] += blocks[:, :, row, column]
        height, width = self.output_size
        image = canvas.view(b, -1, (h + r - 1) * s, (w + r - 1) * s)
        return image[:, :, self.padding:self.padding + height, self.padding:self.padding + width].contiguous()


class DetokenUpsampling(nn.Module):
    """DeU: multi-scale token stacking, DeT, then T2I (overlapping fold) to an image ``scale`` times larger.

    Inputs: ``x1``, ``x2`` (b, t*h*w, token_dim), ``x3`` (b, t*h*w, embed_dim) from the encoder and the refined
    tokens with their landmark encoding (b, t*h*w, embed_dim + encoding channels). Output (b*t, out_channels,
    scale*h, scale*w). Each token becomes a (2*scale)^2 patch of ``out_channels``; patches overlap by half and are
    summed (``nn.Fold``).
    """

    def __init__(self, num_frames: int, lr_size: tuple[int, int], scale: int, refined_dim: int, embed_dim: int,
                 token_dim: int, out_channels: int, num_heads: int, qk_dim: int):
        super().__init__()
        self.num_frames = num_frames
        unprojected_dim = token_dim * 9 + 10  # official width
        patch_dim = out_channels * (2 * scale) ** 2
        if patch_dim % num_heads:
            raise ValueError(f'deu_out_channels * (2 * scale)^2 = {patch_dim} must be a multiple of deu_heads = '
                             f'{num_heads}')
        self.unproject1 = nn.Linear(refined_dim, unprojected_dim)
        self.detoken_trans = DetokenTransformer(unprojected_dim + 2 * token_dim + embed_dim, num_heads, qk_dim,
                                                patch_dim)
        self.norm = nn.LayerNorm(patch_dim)
        h, w = lr_size
        self.token_to_image = PatchesToImage((scale * h, scale * w), kernel_size=2 * scale, stride=scale,
                                             padding=scale // 2)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, x3: torch.Tensor, refined: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat((self.unproject1(refined), x1, x2, x3), dim=-1)
        patches = self.norm(self.detoken_trans(tokens))  # (b, t*h*w, patch_dim)
        b, n, patch_dim = patches.shape
        return self.token_to_image(patches.view(b * self.num_frames, n // self.num_frames, patch_dim))


class VidFaceTransformer(nn.Module):
    """Encoder, refiner with recurrent landmark positional encoding, and DeU (the official ``VIDFACE``).

    Input (b, t, 3, h, w). Returns the upsampled features (b*t, deu_out_channels, scale*h, scale*w) and the list of
    ``num_iter`` landmark predictions, each (b*t, 10).
    """

    def __init__(self, num_frames: int, lr_size: tuple[int, int], scale: int, embed_dim: int, depth: int,
                 num_heads: int, mlp_ratio: float, qkv_bias: bool, drop_path_rate: float, token_dim: int,
                 deu_out_channels: int, deu_heads: int, deu_qk_dim: int, num_iter: int, landmark_encoding: str,
                 decoder_uses_final_landmarks: bool, checkpoint_refiner: bool):
        super().__init__()
        self.num_iter = num_iter
        self.decoder_uses_final_landmarks = decoder_uses_final_landmarks
        self.checkpoint_refiner = checkpoint_refiner
        num_tokens = lr_size[0] * lr_size[1]
        self.landmark_encoding = LandmarkPositionEncoding(lr_size, landmark_encoding)
        refined_dim = embed_dim + self.landmark_encoding.channels
        if refined_dim % num_heads:
            raise ValueError(f'embed_dim + landmark encoding channels = {refined_dim} must be a multiple of '
                             f'num_heads = {num_heads}')

        # registration order gives the official state_dict order
        self.pos_embed = nn.Parameter(sinusoid_position_encoding(num_tokens, embed_dim), requires_grad=False)
        self.tokens_to_token = T2TEncoder(lr_size, embed_dim, token_dim)
        self.deu = DetokenUpsampling(num_frames, lr_size, scale, refined_dim, embed_dim, token_dim,
                                     deu_out_channels, deu_heads, deu_qk_dim)
        drop_paths = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(
            RefinerBlock(refined_dim, num_heads, mlp_ratio, qkv_bias, drop_path) for drop_path in drop_paths)
        self.norm = nn.LayerNorm(embed_dim)
        self.down1 = nn.Linear(refined_dim, embed_dim)
        self.down2 = nn.Linear(embed_dim, LANDMARK_HEAD_DIMS[0])
        self.down3 = nn.Linear(*LANDMARK_HEAD_DIMS)
        self.lmhead = nn.Linear(num_tokens * LANDMARK_HEAD_DIMS[1], 2 * NUM_LANDMARKS)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, t = x.shape[:2]
        x1, x2, x3 = self.tokens_to_token(x)
        tokens = (x3 + self.pos_embed).view(b, -1, x3.shape[-1])

        landmarks = x3.new_zeros(b * t, 2 * NUM_LANDMARKS)
        predictions = []
        for _ in range(self.num_iter):
            encoding = self.encode_landmarks(landmarks, b)
            tokens = self.down1(self.refine(torch.cat((tokens, encoding), dim=-1)))
            landmarks = self.predict_landmarks(tokens, b * t)
            predictions.append(landmarks)

        if self.decoder_uses_final_landmarks:
            encoding = self.encode_landmarks(landmarks, b)
        refined = torch.cat((self.norm(tokens), encoding), dim=-1)
        return self.deu(x1, x2, x3.view(b, -1, x3.shape[-1]), refined), predictions

    def refine(self, tokens: torch.Tensor) -> torch.Tensor:
        """The refiner blocks, (b, t*h*w, refined_dim) -> same; optionally recomputed in backward to save memory."""
        for block in self.blocks:
            if self.checkpoint_refiner and torch.is_grad_enabled():
                tokens = checkpoint(block, tokens, use_reentrant=False)  # restores the RNG, so DropPath repeats
            else:
                tokens = block(tokens)
        return tokens

    def encode_landmarks(self, landmarks: torch.Tensor, batch: int) -> torch.Tensor:
        """(b*t, 10) landmarks -> (b, t*h*w, channels) encoding, laid out like the tokens."""
        return self.landmark_encoding(landmarks).view(batch, -1, self.landmark_encoding.channels)

    def predict_landmarks(self, tokens: torch.Tensor, num_snapshots: int) -> torch.Tensor:
        """Landmark head: (b, t*h*w, embed_dim) -> (b*t, 10), from all tokens of each snapshot."""
        return self.lmhead(self.down3(self.down2(tokens)).reshape(num_snapshots, -1))


def per_pixel(linear: nn.Linear, image: torch.Tensor) -> torch.Tensor:
    """Apply ``linear`` to the channels of every pixel of (n, c, h, w), as a 1x1 convolution.

    Same result as permuting to channels-last and back, without the copies autograd would keep for training.
    """
    return F.conv2d(image, linear.weight[:, :, None, None], linear.bias)


def init_linear(module: nn.Module):
    """Official initialisation: every Linear gets N(0, 0.03^2) weights (truncated at +-2) and zero bias."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.03, a=-2, b=2)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


@ARCH_REGISTRY.register()
class VidFace(nn.Module):
    """VidFace: 8x hallucination of every snapshot of a set of tiny, unaligned face snapshots.

    The defaults build the official network (16,269,055 parameters including the frozen 71,808-value position
    table), whose released checkpoint loads with ``strict=True``.

    Args:
        num_frames: snapshots per sample (t).
        lr_size: (h, w) of each low-resolution snapshot; the token grid has the same size.
        scale: upsampling factor s (T2I fold kernel 2s, stride s, padding s/2). Must be even.
        embed_dim: token width in the refiner (before the landmark encoding is concatenated).
        depth: number of refiner blocks (shared across the ``num_iter`` iterations).
        num_heads: attention heads of the refiner blocks.
        mlp_ratio: MLP width ratio of the refiner blocks.
        qkv_bias: bias in the refiner blocks' qkv projections.
        drop_path_rate: stochastic depth of the last refiner block (linearly from 0 over ``depth``).
        token_dim: token width of the T2T encoder (multiple of 8, its head count).
        deu_out_channels: channels of the T2I image (each token's patch has ``deu_out_channels * (2s)^2`` values).
        deu_heads: DeT attention heads.
        deu_qk_dim: DeT query/key width per head.
        head_hidden: hidden width of the per-pixel output head.
        num_iter: refinement iterations with recurrent landmark positional encoding.
        landmark_encoding: ``'offset'`` (official, checkpoint-compatible) or ``'distance'`` (paper eq. 3; see
            :class:`LandmarkPositionEncoding` for the shape change).
        decoder_uses_final_landmarks: feed the decoder the encoding of the final landmarks instead of the official
            one (the encoding used in the last iteration).
        checkpoint_refiner: recompute the refiner blocks' activations in backward instead of keeping them (training
            memory about 0.7 GB lower at batch 4, a step about 10% slower on CPU); outputs and gradients are unchanged.
    """

    def __init__(self, num_frames: int = 7, lr_size: tuple[int, int] = (16, 12), scale: int = 8,
                 embed_dim: int = 374, depth: int = 4, num_heads: int = 8, mlp_ratio: float = 3.0,
                 qkv_bias: bool = False, drop_path_rate: float = 0.1, token_dim: int = 64,
                 deu_out_channels: int = 32, deu_heads: int = 8, deu_qk_dim: int = 32, head_hidden: int = 64,
                 num_iter: int = 2, landmark_encoding: str = 'offset', decoder_uses_final_landmarks: bool = False,
                 checkpoint_refiner: bool = False):
        super().__init__()
        self.num_frames = num_frames
        self.lr_size = tuple(lr_size)
        self.scale = scale
        if scale % 2:
            raise ValueError(f'scale must be even (T2I fold padding is scale/2), got {scale}')
        if token_dim % T2T_HEADS:
            raise ValueError(f'token_dim must be a multiple of {T2T_HEADS}, got {token_dim}')
        if num_iter < 1:
            raise ValueError(f'num_iter must be at least 1, got {num_iter}')
        self.vidface = VidFaceTransformer(num_frames, self.lr_size, scale, embed_dim, depth, num_heads, mlp_ratio,
                                          qkv_bias, drop_path_rate, token_dim, deu_out_channels, deu_heads,
                                          deu_qk_dim, num_iter, landmark_encoding, decoder_uses_final_landmarks,
                                          checkpoint_refiner)
        self.linear_hr = nn.Linear(deu_out_channels, head_hidden)
        self.linear_last = nn.Linear(head_hidden, 3)
        self.apply(init_linear)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Hallucinate every snapshot.

        Args:
            x: (b, t, 3, h, w) snapshots, RGB in [-1, 1], in any order.

        Returns:
            ``(out, landmarks)``: ``out`` (b, t, 3, scale*h, scale*w), RGB in about [-1, 1] (not clamped);
            ``landmarks`` a list of ``num_iter`` tensors (b*t, 10), the predictions of each refinement iteration
            (snapshot-major rows; five interleaved (x, y) points in [-0.5, 0.5]). This is the official return
            without its trailing ``None``.
        """
        self.check_input(x)
        b, t, c, h, w = x.shape
        features, landmarks = self.vidface(x)  # (b*t, deu_out_channels, s*h, s*w)
        hidden = F.leaky_relu(per_pixel(self.linear_hr, features), 0.1, inplace=True)
        residual = per_pixel(self.linear_last, hidden)
        base = F.interpolate(x.view(b * t, c, h, w), scale_factor=self.scale, mode='bilinear', align_corners=False)
        return (base + residual).view(b, t, c, self.scale * h, self.scale * w), landmarks

    def check_input(self, x: torch.Tensor):
        """One clear error for input that does not fit the configured network."""
        if x.ndim != 5:
            raise ValueError(f'VidFace expects input (batch, snapshots, 3, height, width), got shape {tuple(x.shape)}')
        if x.shape[1] != self.num_frames:
            raise ValueError(f'VidFace is configured for {self.num_frames} snapshots, got {x.shape[1]} '
                             f'(input shape {tuple(x.shape)})')
        if x.shape[2] != 3:
            raise ValueError(f'VidFace expects 3 (RGB) channels, got {x.shape[2]} (input shape {tuple(x.shape)})')
        if tuple(x.shape[3:]) != self.lr_size:
            raise ValueError(f'VidFace is configured for LR snapshots of {self.lr_size[0]}x{self.lr_size[1]} '
                             f'(height x width), got {x.shape[3]}x{x.shape[4]} (input shape {tuple(x.shape)})')
