"""Decoder-only transformer for token pairs (Power et al. 2022, Nanda et al. 2023).

Input [a, b, "="] with "=" = token ``vocab_size`` (appended by the model), learned token and
position embeddings (N(0, 1/width)), ``depth`` blocks x ← x + attn(x); x ← x + MLP(x) with causal
attention and an MLP of 4·width with ReLU, logits from the last position. LayerNorm (pre-norm) is
optional and off by default, as in Nanda et al.
"""

from __future__ import annotations

import torch
from torch import nn

from grokray.models.attention import SelfAttention


class Block(nn.Module):
    def __init__(self, width: int, heads: int, bias: bool, layer_norm: bool) -> None:
        super().__init__()
        self.attention = SelfAttention(width, heads, bias=bias, causal=True)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width, bias=bias), nn.ReLU(), nn.Linear(4 * width, width, bias=bias)
        )
        self.norm_attention = nn.LayerNorm(width, bias=bias) if layer_norm else nn.Identity()
        self.norm_mlp = nn.LayerNorm(width, bias=bias) if layer_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm_attention(x))
        return x + self.mlp(self.norm_mlp(x))


class Transformer(nn.Module):
    """tokens (n, seq_len) int64 in [0, vocab_size) → logits (n, n_outputs) at the "=" position."""

    def __init__(
        self,
        vocab_size: int,
        seq_len: int,
        n_outputs: int,
        width: int,
        depth: int,
        heads: int,
        bias: bool = True,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        self.equals_token = vocab_size
        self.token_embed = nn.Embedding(vocab_size + 1, width)
        self.position_embed = nn.Embedding(seq_len + 1, width)
        for embedding in (self.token_embed, self.position_embed):
            nn.init.normal_(embedding.weight, std=width**-0.5)
        self.blocks = nn.ModuleList(Block(width, heads, bias, layer_norm) for _ in range(depth))
        self.norm = nn.LayerNorm(width, bias=bias) if layer_norm else nn.Identity()
        self.unembed = nn.Linear(width, n_outputs, bias=bias)

    def hidden_states(self, tokens: torch.Tensor) -> torch.Tensor:
        """The residual stream after the last block, (n, seq_len + 1, width)."""
        equals = torch.full_like(tokens[:, :1], self.equals_token)
        tokens = torch.cat([tokens, equals], dim=1)
        x = self.token_embed(tokens) + self.position_embed.weight[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.unembed(self.norm(self.hidden_states(tokens)[:, -1]))
