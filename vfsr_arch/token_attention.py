"""Multi-head attention and GEGLU feed-forward over token sequences (KEEP's Kalman filter and cross-frame attention).

Parameter names follow ``diffusers==0.11`` ``CrossAttention`` / ``FeedForward``, which the official KEEP builds on,
so official checkpoints load with ``strict=True``: ``to_q``/``to_k``/``to_v`` (no bias), ``to_out.0`` (with bias);
``net.0.proj`` (the GEGLU projection) and ``net.2`` (the output projection). Dropout is not kept: the official
networks use rate 0 and it has no parameters.

:func:`split_heads` / :func:`merge_heads`, the (n, heads, l, head_dim) layout for attention, also serve CodeFormer's and
VidFace's multi-head attentions.
"""
import torch
import torch.nn.functional as F
from torch import nn


def split_heads(tokens: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(n, l, heads * head_dim) -> (n, heads, l, head_dim)."""
    return tokens.unflatten(-1, (num_heads, -1)).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(n, heads, l, head_dim) -> (n, l, heads * head_dim), the inverse of :func:`split_heads`."""
    return x.transpose(1, 2).flatten(2)


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention of ``queries`` over ``context`` (itself when omitted).

    queries (n, l, dim), context (n, m, dim) -> (n, l, dim). Heads have ``head_dim`` channels and the usual
    ``head_dim ** -0.5`` scale.
    """

    def __init__(self, dim: int, num_heads: int, head_dim: int):
        super().__init__()
        self.num_heads = num_heads
        inner_dim = num_heads * head_dim
        self.to_q = nn.Linear(dim, inner_dim, bias=False)
        self.to_k = nn.Linear(dim, inner_dim, bias=False)
        self.to_v = nn.Linear(dim, inner_dim, bias=False)
        # A list of one, so that the parameter names stay diffusers' ``to_out.0.*``.
        self.to_out = nn.ModuleList([nn.Linear(inner_dim, dim)])

    def forward(self, queries: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = queries if context is None else context
        q, k, v = (split_heads(proj(tokens), self.num_heads) for proj, tokens in
                   ((self.to_q, queries), (self.to_k, context), (self.to_v, context)))
        return self.to_out[0](merge_heads(F.scaled_dot_product_attention(q, k, v)))


class GEGLU(nn.Module):
    """Gated GELU unit: ``proj`` maps dim -> 2 * hidden_dim, split into (value, gate); returns value * gelu(gate)."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * hidden_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class GEGLUFeedForward(nn.Module):
    """Token-wise feed-forward: GEGLU(dim -> mult * dim) then Linear(mult * dim -> dim). (..., dim) -> (..., dim).

    ``net`` is indexed like diffusers' ``[GEGLU, Dropout, Linear]``; the dropout slot is an ``Identity``.
    """

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, mult * dim), nn.Identity(), nn.Linear(mult * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
