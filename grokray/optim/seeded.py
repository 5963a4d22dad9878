"""Per-replica random streams: one ``torch.Generator`` per replica, sliced and checkpointed with it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch


def generator_from_state(state: torch.Tensor, device: torch.device) -> torch.Generator:
    """A generator on ``device`` that continues from ``state`` (``Generator.get_state()``)."""
    generator = torch.Generator(device=device)
    generator.set_state(state)
    return generator


def generator_states(generators: Sequence[torch.Generator | None]) -> list[torch.Tensor | None]:
    return [g.get_state() if g is not None else None for g in generators]


def load_generators(
    states: Sequence[torch.Tensor | None], device: torch.device
) -> list[torch.Generator | None]:
    return [generator_from_state(s, device) if s is not None else None for s in states]


class PerReplicaNoise:
    """Noise of scale ``scales[r]`` drawn from replica r's own generator (None where the scale is 0).

    Subclasses draw; this base owns the bookkeeping every part of the engine needs: ``keep``
    (finished replicas leave the batch) and a checkpoint that continues bit for bit.
    """

    def __init__(
        self, params: Sequence[torch.nn.Parameter], scales: Sequence[float], seeds: Sequence[int]
    ) -> None:
        self.params = list(params)
        self.scales = list(scales)
        device = self.params[0].device
        self.generators: list[torch.Generator | None] = [
            torch.Generator(device=device).manual_seed(seed) if scale > 0 else None
            for scale, seed in zip(self.scales, seeds, strict=True)
        ]

    def keep(self, index: torch.Tensor, params: Sequence[torch.nn.Parameter]) -> None:
        rows = index.tolist()
        self.params = list(params)
        self.scales = [self.scales[i] for i in rows]
        self.generators = [self.generators[i] for i in rows]

    def state_dict(self) -> dict[str, Any]:
        return {"scales": list(self.scales), "generators": generator_states(self.generators)}

    def load_state_dict(
        self, state: Mapping[str, Any], params: Sequence[torch.nn.Parameter] | None = None
    ) -> None:
        if params is not None:
            self.params = list(params)
        self.scales = list(state["scales"])
        self.generators = load_generators(state["generators"], self.params[0].device)
