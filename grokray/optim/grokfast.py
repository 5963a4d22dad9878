"""Grokfast (Lee et al. 2024) for R stacked replicas: amplify the slow component of the gradient.

Before each optimizer step, per parameter and replica r:

    ema ← α_r·ema + (1 − α_r)·g
    g   ← g + λ_r·ema                  (in place on ``.grad``)

The EMA starts at zero, so after the first step g becomes g·(1 + λ·(1 − α)). (The authors'
reference code starts it at the first gradient instead, so their first step adds λ·g; the two
agree after a few multiples of 1/(1 − α) steps.) Grokfast raises the effective step size: compare
it against a baseline with a matched learning rate. λ = 0 for every replica makes the call a
no-op (no EMA is kept, gradients stay bit-identical).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from grokray.optim.wand import column


class Grokfast:
    """The EMA gradient filter; ``grokfast(params)`` between ``backward`` and the optimizer step."""

    def __init__(self, params: Sequence[torch.nn.Parameter], configs: Sequence[Mapping[str, Any]]) -> None:
        self.params = list(params)
        self.alpha = [float(c["grokfast_alpha"]) for c in configs]
        self.lamb = [float(c["grokfast_lambda"]) for c in configs]
        self.ema: list[torch.Tensor | None] = [None for _ in self.params]

    @property
    def active(self) -> bool:
        return any(self.lamb)

    @torch.no_grad()
    def __call__(self, params: Sequence[torch.nn.Parameter] | None = None) -> None:
        if not self.active:
            return
        params = self.params if params is None else list(params)
        for i, p in enumerate(params):
            if p.grad is None:
                continue
            alpha = column(self.alpha, p)
            ema = self.ema[i]
            if ema is None:
                ema = self.ema[i] = torch.zeros_like(p.grad)
            ema.mul_(alpha).add_((1 - alpha) * p.grad)
            p.grad.add_(column(self.lamb, p) * ema)

    def keep(self, index: torch.Tensor, params: Sequence[torch.nn.Parameter]) -> None:
        rows = index.tolist()
        self.params = list(params)
        self.alpha = [self.alpha[i] for i in rows]
        self.lamb = [self.lamb[i] for i in rows]
        self.ema = [None if e is None else e[index].contiguous() for e in self.ema]

    def state_dict(self) -> dict[str, Any]:
        return {
            "alpha": list(self.alpha),
            "lambda": list(self.lamb),
            "ema": [None if e is None else e.clone() for e in self.ema],
        }

    def load_state_dict(
        self, state: Mapping[str, Any], params: Sequence[torch.nn.Parameter] | None = None
    ) -> None:
        if params is not None:
            self.params = list(params)
        device = self.params[0].device
        self.alpha, self.lamb = list(state["alpha"]), list(state["lambda"])
        self.ema = [None if e is None else e.to(device).clone() for e in state["ema"]]
