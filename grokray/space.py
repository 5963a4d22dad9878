"""Search-space primitives of a study: ``uniform``, ``loguniform``, ``integer``, ``categorical``,
``grid`` (each a ``Dimension``). No torch, Ray or MLflow."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One searched name. ``kind`` is uniform, loguniform, int or categorical."""

    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    log: bool = False
    step: float | None = None
    default: Any = None

    def grid_values(self) -> tuple[Any, ...] | None:
        """Values for a grid sampler: choices, or an int/stepped range; None if continuous."""
        if self.choices is not None:
            return self.choices
        if self.kind == "int":
            step = int(self.step or 1)
            return tuple(range(int(self.low), int(self.high) + 1, step))  # type: ignore[arg-type]
        if self.step is not None:
            n = round((self.high - self.low) / self.step)  # type: ignore[operator]
            return tuple(round(self.low + i * self.step, 12) for i in range(n + 1))  # type: ignore[operator]
        return None

    def first(self) -> Any:
        """The value ``grokray trial`` uses when the name is not ``--set``."""
        if self.default is not None:
            return self.default
        if self.choices is not None:
            return self.choices[0]
        if self.kind == "int":
            return round((self.low + self.high) / 2)  # type: ignore[operator]
        if self.log:
            return math.sqrt(self.low * self.high)  # type: ignore[operator]
        return (self.low + self.high) / 2  # type: ignore[operator]


def uniform(low: float, high: float, *, step: float | None = None, default: Any = None) -> Dimension:
    """A float drawn uniformly from [low, high] (a grid of ``step`` for the grid sampler)."""
    return Dimension("uniform", float(low), float(high), step=step, default=default)


def loguniform(low: float, high: float, *, default: Any = None) -> Dimension:
    """A float drawn log-uniformly from [low, high] (low > 0)."""
    return Dimension("loguniform", float(low), float(high), log=True, default=default)


def integer(low: int, high: int, *, step: int = 1, log: bool = False, default: Any = None) -> Dimension:
    """An integer in [low, high]."""
    return Dimension("int", low, high, step=step, log=log, default=default)


def categorical(choices: Sequence[Any], *, default: Any = None) -> Dimension:
    """One of ``choices``."""
    return Dimension("categorical", choices=tuple(choices), default=default)


def grid(values: Sequence[Any], *, default: Any = None) -> Dimension:
    """A fixed list of values: every sampler draws from it; the grid sampler visits each."""
    return Dimension("grid", choices=tuple(values), default=default)
