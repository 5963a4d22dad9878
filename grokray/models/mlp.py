"""An MLP over two operands (per-operand token embeddings or one-hot) or over float features."""

from __future__ import annotations

import torch
from torch import nn


class Quadratic(nn.Module):
    """φ(x) = x² (Doshi et al.: the activation under which modular arithmetic is solved analytically)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "quadratic": Quadratic}


class MLP(nn.Module):
    """f(a, b) = head(φ(... φ(W1 [e_a; e_b]) ...)), e = embeddings (or one-hot rows) of a vocabulary of p.

    With ``input_dim`` > 0 the inputs are float features instead: f(x) = head(φ(... φ(W1 x) ...)).
    ``n_outputs`` defaults to p (one logit per residue).
    """

    def __init__(
        self,
        p: int,
        width: int,
        depth: int,
        embed_dim: int,
        activation: str = "relu",
        bias: bool = True,
        encoding: str = "embed",
        n_outputs: int | None = None,
        input_dim: int = 0,
    ) -> None:
        super().__init__()
        self.p = p
        self.encoding = "features" if input_dim > 0 else encoding
        if input_dim > 0:
            in_dim = input_dim
        elif encoding == "embed":
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
        self.head = nn.Linear(in_dim, p if n_outputs is None else n_outputs, bias=bias)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.encoding == "features":
            return self.head(self.hidden(inputs))
        a, b = inputs[:, 0], inputs[:, 1]
        if self.encoding == "embed":
            x = torch.cat([self.embed_a(a), self.embed_b(b)], dim=1)
        else:
            # one-hot by comparison: the same 0/1 floats as F.one_hot, and it works under vmap
            residues = torch.arange(self.p, device=inputs.device)
            x = torch.cat([a.unsqueeze(1) == residues, b.unsqueeze(1) == residues], dim=1).float()
        return self.head(self.hidden(x))


@torch.no_grad()
def scale_parameters(model: nn.Module, alpha: float) -> None:
    """Multiply every parameter (weights, biases, embeddings, norm gains) by ``alpha``."""
    if alpha != 1.0:
        for parameter in model.parameters():
            parameter.mul_(alpha)
