"""KEEP's cross-frame attention (CFA): generator features of the current frame attend to the previous frame's.

State-dict keys are the official ``CrossFrameFusionLayer`` ones: ``attn`` (diffusers-style attention), ``norm1``,
``ff`` (GEGLU feed-forward), ``norm2``.
"""
import torch
from torch import nn

from vfsr_arch.token_attention import GEGLUFeedForward, MultiHeadAttention


class CrossFrameFusionLayer(nn.Module):
    """Post-norm cross-attention block, as the official code (the LayerNorm comes after each sub-layer)::

        x = norm1(attn(x, previous)) + x
        x = norm2(ff(x)) + x

    The ``+ x`` residuals are present only when ``residual`` (the official ``cross_residual``).
    The official init zeroes the attention output projection and every Linear, so a fresh layer maps x to x
    (with residuals); trained weights come from checkpoints.

    current, previous (b, dim, h, w) -> (b, dim, h, w).
    """

    def __init__(self, dim: int, num_heads: int, head_dim: int, residual: bool = True):
        super().__init__()
        self.residual = residual
        # registration order = the official state-dict order
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = GEGLUFeedForward(dim)
        self.attn = MultiHeadAttention(dim, num_heads, head_dim)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        b, c, h, w = current.shape
        x = current.flatten(2).transpose(1, 2)  # (b, h*w, c)
        context = previous.flatten(2).transpose(1, 2)
        attended = self.norm1(self.attn(x, context))
        x = attended + x if self.residual else attended
        fed = self.norm2(self.ff(x))
        x = fed + x if self.residual else fed
        return x.transpose(1, 2).reshape(b, c, h, w)
