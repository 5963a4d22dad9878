"""A pack that does not fit in device memory is split, never a failed trial.

``FittingRun`` is what a Tune trial trains: a ``ReplicaRun`` of the whole pack, and when the device
runs out of memory (``torch.OutOfMemoryError`` on a GPU; the CPU allocator's "can't allocate
memory"), the same configs again as a ``SplitRun`` of twice as many parts, until it fits or a part
is a single replica (which then fails as any error does). The parts of a ``SplitRun`` are
``ReplicaRun``\\ s over contiguous slices of the configs, stepped from one evaluation to the next in
turn: every replica keeps its seed, split, initial weights and minibatch order (all drawn per
config), so it trains what it would have trained in one batch, and only one part's activations
(what runs a small network out of memory: replicas × examples × width) live at a time. Their
records are merged per evaluation under the pack's replica numbers, so Tune, the stopper and
MLflow see one trial as before.

A run rebuilt after running out of memory starts again from step 0 (the interrupted step may have
updated some parameters and not others); evaluations up to the last one handed to ``on_eval`` are
trained again but not handed on twice. A checkpoint of a split run records its parts, and
``load_state_dict`` rebuilds them so.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

from grokray.engine.run import ReplicaRun

OnEvals = Callable[[list[dict[str, Any]]], None]
log = logging.getLogger(__name__)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is the device running out of memory (CUDA's, or the CPU allocator's)."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


def part_bounds(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous slices ``[start, stop)`` of ``n`` replicas, sizes differing by at most one."""
    parts = max(1, min(int(parts), n))
    edges = [round(i * n / parts) for i in range(parts + 1)]
    return [(edges[i], edges[i + 1]) for i in range(parts)]


def _renumbered(records: Sequence[Mapping[str, Any]], offset: int) -> list[dict[str, Any]]:
    return [{**record, "replica": int(record["replica"]) + offset} for record in records]


class SplitRun:
    """The replicas of one pack as ``ReplicaRun`` parts over contiguous slices, trained in turn
    from one evaluation to the next; records carry the pack's replica numbers."""

    def __init__(
        self,
        configs: list[dict[str, Any]],
        parts: int,
        stop_on_grok: bool = True,
        engine: str | None = None,
    ) -> None:
        self.configs = configs
        self.bounds = part_bounds(len(configs), parts)
        self.parts = [ReplicaRun(configs[a:b], stop_on_grok, engine) for a, b in self.bounds]

    @property
    def active(self) -> list[int]:
        return [row + a for (a, _), part in zip(self.bounds, self.parts, strict=True) for row in part.active]

    @property
    def step(self) -> int:
        running = [part.step for part in self.parts if part.active]
        return max(running or [part.step for part in self.parts])

    @property
    def histories(self) -> list[list[dict[str, Any]]]:
        return [
            _renumbered(history, a) for (a, _), part in zip(self.bounds, self.parts, strict=True)
            for history in part.histories
        ]  # fmt: skip

    @property
    def outcomes(self) -> list[dict[str, Any] | None]:
        out: list[dict[str, Any] | None] = []
        for (a, _), part in zip(self.bounds, self.parts, strict=True):
            for o in part.outcomes:
                if o is None:
                    out.append(None)
                    continue
                o = {**o, "replica": int(o["replica"]) + a}
                if "history" in o:
                    o["history"] = _renumbered(o["history"], a)
                out.append(o)
        return out

    def latest_records(self) -> dict[int, dict[str, Any]]:
        latest: dict[int, dict[str, Any]] = {}
        for (a, _), part in zip(self.bounds, self.parts, strict=True):
            for row, record in part.latest_records().items():
                latest[row + a] = {**record, "replica": row + a}
        return latest

    def weights(self, row: int) -> dict[str, torch.Tensor] | None:
        for (a, b), part in zip(self.bounds, self.parts, strict=True):
            if a <= row < b:
                return part.weights(row - a)
        return None

    def evaluations(self) -> Iterator[list[dict[str, Any]]]:
        """Each evaluation's records of every part still training (all at the same step: the
        parts share the schedule and are checkpointed together)."""
        loops = [part.evaluations() for part in self.parts]
        live = list(range(len(loops)))
        while live:
            merged: list[dict[str, Any]] = []
            for i in list(live):
                try:
                    records = next(loops[i])
                except StopIteration:
                    live.remove(i)
                    continue
                merged += _renumbered(records, self.bounds[i][0])
            if merged:
                yield merged

    def run(self, on_eval: OnEvals | None = None) -> list[dict[str, Any]]:
        for records in self.evaluations():
            if on_eval is not None:
                on_eval(records)
        return [outcome for outcome in self.outcomes if outcome is not None]

    def state_dict(self) -> dict[str, Any]:
        return {"split": [list(b) for b in self.bounds], "parts": [part.state_dict() for part in self.parts]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if [tuple(b) for b in state["split"]] != self.bounds:
            raise ValueError(f"checkpoint of parts {state['split']}, this run has {self.bounds}")
        for part, part_state in zip(self.parts, state["parts"], strict=True):
            part.load_state_dict(part_state)


class FittingRun:
    """A pack's run that splits itself when it does not fit in memory (see the module docstring);
    the interface of ``ReplicaRun`` that a Tune trial uses."""

    def __init__(
        self, configs: list[dict[str, Any]], stop_on_grok: bool = True, engine: str | None = None
    ) -> None:
        self.configs, self.stop_on_grok, self.engine = configs, stop_on_grok, engine
        self.n_parts = 1
        self.current: ReplicaRun | SplitRun = self._fit(1)
        self.loaded_step = -1

    def _build(self, parts: int) -> ReplicaRun | SplitRun:
        if parts == 1:
            return ReplicaRun(self.configs, self.stop_on_grok, self.engine)
        return SplitRun(self.configs, parts, self.stop_on_grok, self.engine)

    def _fit(self, parts: int) -> ReplicaRun | SplitRun:
        """A run of ``parts`` parts, more where building it runs out of memory."""
        while True:
            try:
                self.n_parts = parts
                return self._build(parts)
            except Exception as error:
                parts = self._more_parts(error)

    def _more_parts(self, error: BaseException) -> int:
        """The next number of parts after ``error``, or ``error`` raised when it is not the device
        running out of memory or the parts are single replicas already."""
        if not is_out_of_memory(error) or self.n_parts >= len(self.configs):
            raise error
        self.current = None  # type: ignore[assignment]
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        parts = min(len(self.configs), 2 * self.n_parts)
        log.warning(
            "a pack of %d replicas did not fit in memory (%s): training it in %d parts",
            len(self.configs), str(error).splitlines()[0][:200], parts,
        )  # fmt: skip
        return parts

    @property
    def active(self) -> list[int]:
        return self.current.active

    @property
    def step(self) -> int:
        return self.current.step

    @property
    def histories(self) -> list[list[dict[str, Any]]]:
        return self.current.histories

    @property
    def outcomes(self) -> list[dict[str, Any] | None]:
        return self.current.outcomes

    def latest_records(self) -> dict[int, dict[str, Any]]:
        return self.current.latest_records()

    def weights(self, row: int) -> dict[str, torch.Tensor] | None:
        return self.current.weights(row)

    def state_dict(self) -> dict[str, Any]:
        return self.current.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a checkpoint of this pack, split into the parts it records."""
        parts = len(state["split"]) if "split" in state else 1
        if parts != self.n_parts:
            self.current = None  # type: ignore[assignment]
            gc.collect()
            self.current = self._fit(parts)
        self.current.load_state_dict(state)
        self.loaded_step = int(self.current.step)

    def run(self, on_eval: OnEvals | None = None) -> list[dict[str, Any]]:
        """Train until every replica is done, in more parts whenever the device runs out of memory;
        ``on_eval`` sees each evaluation once."""
        handed = self.loaded_step  # evaluations up to here were handed on (before a resume: replayed)

        def once(records: list[dict[str, Any]]) -> None:
            nonlocal handed
            step = max(int(r["step"]) for r in records)
            if step <= handed:
                return
            handed = step
            if on_eval is not None:
                on_eval(records)

        while True:
            try:
                return self.current.run(once)
            except Exception as error:
                parts = self._more_parts(error)
                self.current = self._fit(parts)
