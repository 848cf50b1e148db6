"""KEEP's Kalman filter over the VQGAN latents of a clip (Feng et al., ECCV 2024, Sec. 3.2).

Each frame has two estimates of its latent: the *measurement* ``z`` (the LQ frame encoded) and the *prediction*
``z'`` (the previous restored frame, warped to this frame by optical flow and re-encoded). The Kalman update blends
them with a per-position gain ``g`` in [0, 1]::

    z_hat = (1 - g) * z + g * z'

so ``g`` is how much the filter trusts the propagated past over the current, degraded measurement. The gain comes
from the measurements of the whole clip: an *uncertainty estimator* (transformer blocks mixing each frame with the
clip's anchor frame 0, its previous frame and, per position, all frames of the clip) then a *gain network*
(3 ResBlocks, 1x1 conv to one channel, sigmoid).

State-dict keys are the official ones (``uncertainty_estimator.<i>.{norm1,attn1,norm3,ff,norm_temp,attn_temp}``,
``kalman_gain_calculator.{0,1,2,3}``).
"""
import torch
from torch import nn

from vfsr_arch.acceleration import float32_under_autocast
from vfsr_arch.token_attention import GEGLUFeedForward, MultiHeadAttention
from vfsr_arch.vqgan_arch import ResBlock


def _init_weights(module: nn.Module) -> None:
    """The official initialisation of the filter (trained weights come from checkpoints)."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class UncertaintyBlock(nn.Module):
    """One uncertainty-estimator block: three pre-LayerNorm residual steps on the tokens of a clip.

    1. ``attn1``, sparse-causal attention: the tokens of frame f attend to the tokens of the anchor frame 0 and of
       frame f-1 (frame 0 attends to itself twice, as the official code).
    2. ``ff``, a GEGLU feed-forward.
    3. ``attn_temp``, temporal attention: at each spatial position, attention over all frames of the clip (in both
       directions, no positional encoding).

    tokens (b, t, n, dim) -> (b, t, n, dim), n = h * w positions.
    """

    def __init__(self, dim: int, num_heads: int, head_dim: int):
        super().__init__()
        # registration order = the official state-dict order
        self.attn1 = MultiHeadAttention(dim, num_heads, head_dim)
        self.norm1 = nn.LayerNorm(dim)
        self.ff = GEGLUFeedForward(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.attn_temp = MultiHeadAttention(dim, num_heads, head_dim)
        self.norm_temp = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, t, n, c = tokens.shape
        normed = self.norm1(tokens)
        anchor = normed[:, :1].expand(b, t, n, c)
        previous = torch.cat([normed[:, :1], normed[:, :-1]], dim=1)
        context = torch.cat([anchor, previous], dim=2)  # (b, t, 2n, c)
        tokens = tokens + self.attn1(normed.flatten(0, 1), context.flatten(0, 1)).view(b, t, n, c)

        tokens = tokens + self.ff(self.norm3(tokens))

        per_position = tokens.transpose(1, 2)  # (b, n, t, c)
        attended = self.attn_temp(self.norm_temp(per_position).flatten(0, 1)).view(b, n, t, c)
        return (per_position + attended).transpose(1, 2)


class KalmanFilter(nn.Module):
    """Kalman gain estimation and the Kalman update of KEEP.

    Args:
        emb_dim: latent channels (the VQGAN ``emb_dim``; a multiple of 32 for the gain network's GroupNorms).
        num_attention_heads, attention_head_dim: heads of the uncertainty estimator's attentions.
        num_uncertainty_layers: number of :class:`UncertaintyBlock`.
    """

    def __init__(self, emb_dim: int, num_attention_heads: int, attention_head_dim: int, num_uncertainty_layers: int):
        super().__init__()
        self.uncertainty_estimator = nn.ModuleList(
            UncertaintyBlock(emb_dim, num_attention_heads, attention_head_dim) for _ in range(num_uncertainty_layers))
        self.kalman_gain_calculator = nn.Sequential(
            ResBlock(emb_dim, emb_dim), ResBlock(emb_dim, emb_dim), ResBlock(emb_dim, emb_dim),
            nn.Conv2d(emb_dim, 1, kernel_size=1), nn.Sigmoid())
        self.apply(_init_weights)

    @float32_under_autocast  # small (latent grid) and it weighs two estimates: not worth bf16 rounding
    def gain(self, latents: torch.Tensor) -> torch.Tensor:
        """Kalman gains of a clip from its measured latents: (b, t, c, h, w) -> (b, t, 1, h, w) in [0, 1]."""
        b, t, c, h, w = latents.shape
        tokens = latents.flatten(3).transpose(2, 3)  # (b, t, h*w, c)
        for block in self.uncertainty_estimator:
            tokens = block(tokens)
        uncertainty = tokens.transpose(2, 3).reshape(b * t, c, h, w)
        return self.kalman_gain_calculator(uncertainty).view(b, t, 1, h, w)

    @staticmethod
    @float32_under_autocast
    def update(measured: torch.Tensor, predicted: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        """Kalman update ``z_hat = (1 - gain) * measured + gain * predicted``; all (b, c, h, w), gain (b, 1, h, w)."""
        return (1 - gain) * measured + gain * predicted
