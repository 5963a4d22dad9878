"""BERT-style encoder classifier trained from scratch (Zhu et al. 2024: 1 layer, hidden 128, 4 heads).

Learned token + position embeddings → LayerNorm → ``depth`` post-LN layers
x ← LN(x + attn(x)); x ← LN(x + FFN(x)) (FFN 4·width, GELU) → the hidden state of the first token
(cls) → a linear classifier. BERT's init: weights and embeddings N(0, 0.02), biases 0, LayerNorm
gains 1. With ``padding`` on, keys with token 0 (pad) are masked out of attention (text); else
the model prepends its own cls token ``vocab_size`` (token pairs, nothing padded).
"""

from __future__ import annotations

import torch
from torch import nn

from grokray.models.attention import SelfAttention

INIT_STD = 0.02


class EncoderLayer(nn.Module):
    def __init__(self, width: int, heads: int, bias: bool) -> None:
        super().__init__()
        self.attention = SelfAttention(width, heads, bias=bias)
        self.norm_attention = nn.LayerNorm(width, bias=bias)
        self.ffn = nn.Sequential(
            nn.Linear(width, 4 * width, bias=bias), nn.GELU(), nn.Linear(4 * width, width, bias=bias)
        )
        self.norm_ffn = nn.LayerNorm(width, bias=bias)

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
        x = self.norm_attention(x + self.attention(x, padding))
        return self.norm_ffn(x + self.ffn(x))


class Encoder(nn.Module):
    """tokens (n, seq_len) int64 → logits (n, n_outputs) from the cls position."""

    def __init__(
        self,
        vocab_size: int,
        seq_len: int,
        n_outputs: int,
        width: int,
        depth: int,
        heads: int,
        bias: bool = True,
        padding: bool = True,
    ) -> None:
        super().__init__()
        self.padding = padding
        self.cls_token = vocab_size  # used only without padding (text pools carry their own cls)
        extra = 0 if padding else 1
        self.token_embed = nn.Embedding(vocab_size + extra, width)
        self.position_embed = nn.Embedding(seq_len + extra, width)
        self.embed_norm = nn.LayerNorm(width, bias=bias)
        self.layers = nn.ModuleList(EncoderLayer(width, heads, bias) for _ in range(depth))
        self.classifier = nn.Linear(width, n_outputs, bias=bias)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=INIT_STD)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.padding:
            padding = tokens == 0
        else:
            padding = None
            tokens = torch.cat([torch.full_like(tokens[:, :1], self.cls_token), tokens], dim=1)
        x = self.embed_norm(self.token_embed(tokens) + self.position_embed.weight[: tokens.shape[1]])
        for layer in self.layers:
            x = layer(x, padding)
        return self.classifier(x[:, 0])
