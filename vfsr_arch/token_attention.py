"""Multi-head attention and GEGLU feed-forward over token sequences (KEEP's Kalman filter and cross-frame attention).

Parameter names follow ``diffusers==0.11`` ``CrossAttention`` / ``FeedForward``, which the official KEEP builds on,
so official checkpoints load with ``strict=True``: ``to_q``/``to_k``/``to_v`` (no bias), ``to_out.0`` (with bias);
``net.0.proj`` (the GEGLU projection) and ``net.2`` (the output projection). Dropout is not kept: the official
networks use rate 0 and it has no parameters.
"""
import torch
import torch.nn.functional as F
from torch import nn


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
        q, k, v = (self._split_heads(proj(tokens)) for proj, tokens in
                   ((self.to_q, queries), (self.to_k, context), (self.to_v, context)))
        attended = F.scaled_dot_product_attention(q, k, v)
        return self.to_out[0](attended.transpose(1, 2).flatten(2))

    def _split_heads(self, tokens: torch.Tensor) -> torch.Tensor:
        """(n, l, heads * head_dim) -> (n, heads, l, head_dim)."""
        return tokens.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)


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
