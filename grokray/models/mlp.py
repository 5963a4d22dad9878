"""An MLP over two operands (per-operand token embeddings or one-hot) or over float features."""

from __future__ import annotations

import torch
from torch import nn


class Quadratic(nn.Module):
    """φ(x) = x² (Doshi et al.: the activation under which modular arithmetic is solved analytically)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "quadratic": Quadratic}
INITS = ("default", "doshi")


def doshi_init_std(width: int) -> float:
    """σ of Doshi et al.'s init of both layers of their width-N network: √0.25 / (2N)^(1/3).

    From ``fcn`` in github.com/d-doshi/Grokking (utils/models.py, "standard initialization"):
    ``normal_(weight, 0, 0.25**0.5 / np.power(2 * h_size, 1/3))`` for fc1 and fc2 alike, N = h_size
    the hidden width (the cube root as the network's output W·(U e_a + V e_b)² is cubic in the
    weights). Width 500 gives σ = 0.05, against PyTorch's default U(±1/√fan_in): σ ≈ 0.041 for U,
    V and 0.026 for W at p = 97.
    """
    return 0.25**0.5 / (2 * width) ** (1 / 3)


class MLP(nn.Module):
    """f(a, b) = head(φ(... φ(W1 [e_a; e_b]) ...)), e = embeddings (or one-hot rows) of a vocabulary of p.

    With ``input_dim`` > 0 the inputs are float features instead: f(x) = head(φ(... φ(W1 x) ...)).
    ``n_outputs`` defaults to p (one logit per residue).

    ``init="doshi"`` draws both weight matrices from N(0, ``doshi_init_std(width)``²) after the
    default init (so under the same seed the weights are exactly those of Doshi et al.'s ``fcn``).
    It is defined for their network only: depth 1, no biases, one-hot operands.
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
        init: str = "default",
    ) -> None:
        super().__init__()
        if init not in INITS:
            raise ValueError(f"init: got {init!r}; allowed: {', '.join(INITS)}")
        if init == "doshi" and (depth != 1 or bias or input_dim > 0 or encoding != "onehot"):
            raise ValueError(
                f"init: 'doshi' is Doshi et al.'s init of their network, an MLP with depth=1, "
                f"bias=false and encoding=onehot on two operands; got depth={depth}, bias={bias}, "
                f"encoding={'features' if input_dim > 0 else encoding}. Set those, or init=default"
            )
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
        if init == "doshi":
            std = doshi_init_std(width)
            nn.init.normal_(self.hidden[0].weight, mean=0.0, std=std)
            nn.init.normal_(self.head.weight, mean=0.0, std=std)

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
