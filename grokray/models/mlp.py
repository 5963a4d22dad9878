"""An MLP over two operands: per-operand token embeddings (or one-hot), ``depth`` hidden layers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU}


class MLP(nn.Module):
    """f(a, b) = head(φ(... φ(W1 [e_a; e_b]) ...)), e = embeddings (or one-hot rows)."""

    def __init__(
        self,
        p: int,
        width: int,
        depth: int,
        embed_dim: int,
        activation: str = "relu",
        bias: bool = True,
        encoding: str = "embed",
    ) -> None:
        super().__init__()
        self.p = p
        self.encoding = encoding
        if encoding == "embed":
            self.embed_a = nn.Embedding(p, embed_dim)
            self.embed_b = nn.Embedding(p, embed_dim)
            in_dim = 2 * embed_dim
        else:
            in_dim = 2 * p
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Linear(in_dim, width, bias=bias), ACTIVATIONS[activation]()]
            in_dim = width
        self.hidden = nn.Sequential(*layers)
        self.head = nn.Linear(in_dim, p, bias=bias)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        a, b = pairs[:, 0], pairs[:, 1]
        if self.encoding == "embed":
            x = torch.cat([self.embed_a(a), self.embed_b(b)], dim=1)
        else:
            x = torch.cat([nn.functional.one_hot(a, self.p), nn.functional.one_hot(b, self.p)], dim=1).float()
        return self.head(self.hidden(x))


@torch.no_grad()
def scale_parameters(model: nn.Module, alpha: float) -> None:
    """Multiply every parameter (weights, biases, embeddings, norm gains) by ``alpha``."""
    if alpha != 1.0:
        for parameter in model.parameters():
            parameter.mul_(alpha)


def build_model(config: Mapping[str, Any]) -> nn.Module:
    """The network named by ``config['model']``, initialized and scaled by ``init_scale``."""
    if config["model"] != "mlp":
        raise ValueError(f"model: got {config['model']!r}; allowed: mlp")
    model = MLP(
        p=config["p"],
        width=config["width"],
        depth=config["depth"],
        embed_dim=config["embed_dim"],
        activation=config["activation"],
        bias=config["bias"],
        encoding=config["encoding"],
    )
    scale_parameters(model, config["init_scale"])
    return model
