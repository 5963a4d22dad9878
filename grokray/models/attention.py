"""Multi-head self-attention written with einsum/softmax, so ``torch.func.vmap`` can batch replicas.

Every projection is one (width, width) ``nn.Linear`` (all heads in one matrix), so every parameter
is 1-D or 2-D; nothing is in place and no branch depends on data.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class SelfAttention(nn.Module):
    """softmax(q kᵀ / √d_head + mask) v per head, then the output projection."""

    def __init__(self, width: int, heads: int, bias: bool = True, causal: bool = False) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"heads: got {heads}; must divide width={width}")
        self.heads, self.causal = heads, causal
        self.query = nn.Linear(width, width, bias=bias)
        self.key = nn.Linear(width, width, bias=bias)
        self.value = nn.Linear(width, width, bias=bias)
        self.out = nn.Linear(width, width, bias=bias)

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        """x (n, L, width) → (n, L, width). ``padding`` (n, L) bool: keys that nobody attends to."""
        n, length, width = x.shape
        shape = (n, length, self.heads, width // self.heads)
        q, k, v = self.query(x).reshape(shape), self.key(x).reshape(shape), self.value(x).reshape(shape)
        scores = torch.einsum("nqhd,nkhd->nhqk", q, k) / math.sqrt(width // self.heads)
        if self.causal:
            future = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        if padding is not None:
            scores = scores.masked_fill(padding[:, None, None, :], float("-inf"))
        mixed = torch.einsum("nhqk,nkhd->nqhd", scores.softmax(dim=-1), v)
        return self.out(mixed.reshape(n, length, width))
