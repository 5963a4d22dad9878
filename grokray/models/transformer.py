"""Decoder-only transformer for token pairs (Power et al. 2022, Nanda et al. 2023, DeMoss et al. 2024).

Input [a, b, "="] with "=" = token ``vocab_size`` (appended by the model), learned token and
position embeddings (N(0, 1/width)), ``depth`` blocks of attention and an MLP of 4·width, logits
from the last position. Defaults are Nanda et al.'s: causal attention, ReLU, no LayerNorm.

``layer_norm``: ``none``: x ← x + attn(x); x ← x + MLP(x). ``pre`` (GPT-2): x ← x + attn(LN(x));
x ← x + MLP(LN(x)), and a final LN before the unembedding. ``post`` (DeMoss et al.'s
``DecoderLayer``, the original transformer): x ← LN(x + attn(x)); x ← LN(x + MLP(x)), no final LN
(the stream leaves every block normalized). DeMoss et al.'s network is ``layer_norm="post"``,
``causal=False``, ``activation="gelu"``.
"""

from __future__ import annotations

import torch
from torch import nn

from grokray.models.attention import SelfAttention
from grokray.models.mlp import ACTIVATIONS

LAYER_NORMS = ("none", "pre", "post")


class Block(nn.Module):
    def __init__(
        self, width: int, heads: int, bias: bool, layer_norm: str, causal: bool, activation: str
    ) -> None:
        super().__init__()
        self.post = layer_norm == "post"
        self.attention = SelfAttention(width, heads, bias=bias, causal=causal)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width, bias=bias),
            ACTIVATIONS[activation](),
            nn.Linear(4 * width, width, bias=bias),
        )
        normed = layer_norm != "none"
        self.norm_attention = nn.LayerNorm(width, bias=bias) if normed else nn.Identity()
        self.norm_mlp = nn.LayerNorm(width, bias=bias) if normed else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.post:
            x = self.norm_attention(x + self.attention(x))
            return self.norm_mlp(x + self.mlp(x))
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
        layer_norm: str = "none",
        causal: bool = True,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if layer_norm not in LAYER_NORMS:
            raise ValueError(f"layer_norm: got {layer_norm!r}; allowed: {', '.join(LAYER_NORMS)}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: got {activation!r}; allowed: {', '.join(ACTIVATIONS)}")
        self.equals_token = vocab_size
        self.token_embed = nn.Embedding(vocab_size + 1, width)
        self.position_embed = nn.Embedding(seq_len + 1, width)
        for embedding in (self.token_embed, self.position_embed):
            nn.init.normal_(embedding.weight, std=width**-0.5)
        self.blocks = nn.ModuleList(
            Block(width, heads, bias, layer_norm, causal, activation) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width, bias=bias) if layer_norm == "pre" else nn.Identity()
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
