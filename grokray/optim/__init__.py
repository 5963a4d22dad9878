"""Optimizers of a trial, and Langevin noise on top of any of them."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch


def build_optimizer(params: Iterable[torch.nn.Parameter], config: Mapping[str, Any]) -> torch.optim.Optimizer:
    """AdamW (decoupled decay), Adam (coupled L2 decay) or SGD with momentum."""
    name, lr, wd = config["optimizer"], config["lr"], config["weight_decay"]
    betas = (config["beta1"], config["beta2"])
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, betas=betas)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, betas=betas)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=config["momentum"])
    raise ValueError(f"optimizer: got {name!r}; allowed: adamw, adam, sgd")


class LangevinNoise:
    """θ ← θ + sqrt(2·lr·T)·ξ, ξ ~ N(0, I), after every optimizer step; T = 0 adds nothing.

    The noise has its own generator so that T > 0 does not shift any other random stream.
    """

    def __init__(
        self, params: Iterable[torch.nn.Parameter], lr: float, temperature: float, seed: int
    ) -> None:
        self.params = list(params)
        self.scale = math.sqrt(2.0 * lr * temperature)
        self.generator: torch.Generator | None = None
        if self.scale > 0:
            device = self.params[0].device
            self.generator = torch.Generator(device=device).manual_seed(seed + 0x5EED)

    @torch.no_grad()
    def __call__(self) -> None:
        if self.generator is None:
            return
        for parameter in self.params:
            noise = torch.randn(
                parameter.shape, generator=self.generator, device=parameter.device, dtype=parameter.dtype
            )
            parameter.add_(noise, alpha=self.scale)
