"""A pack trains in parts: of similar training-set size, and never a failed trial for memory.

``FittingRun`` is what a Tune trial trains. Full-batch training pads every replica's split to the
largest in its batch, so on a CPU a pack whose sizes differ trains in parts of similar size
(``plan_parts``: the cut of the size-sorted replicas that minimizes a step's modelled cost,
``size_parts``); equal sizes, minibatches and GPUs take one part. When the device runs out of
memory (``torch.OutOfMemoryError`` on a GPU; the CPU allocator's "can't allocate memory"), the
same configs train again with every part cut in two (``halves``), until it fits or a part is a
single replica (which then fails as any error does). A ``SplitRun``'s parts are ``ReplicaRun`` runs
over lists of the configs, stepped from one evaluation to the next (side by side on a CPU with
more than one thread, one thread a part; in turn otherwise): every replica keeps its seed, split,
initial weights and minibatch order (all drawn per config), so it trains what it would have
trained in one batch (for the pair MLP bit for bit, whatever the padding: ``ActLinear``), and on
a GPU only one part's activations (what runs a small network out of memory: replicas × examples ×
width) live at a time. Their records are merged per evaluation under the pack's replica numbers,
so Tune, the stopper and MLflow see one trial as before.

A run rebuilt after running out of memory starts again from step 0 (the interrupted step may have
updated some parameters and not others); evaluations up to the last one handed to ``on_eval`` are
trained again but not handed on twice. A checkpoint of a split run records its parts, and
``load_state_dict`` rebuilds them so.
"""

from __future__ import annotations

import gc
import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import torch

from grokray.engine.device import resolve_device
from grokray.engine.run import ReplicaRun
from grokray.tasks import Pool, make_pool
from grokray.tasks.pool import train_count

OnEvals = Callable[[list[dict[str, Any]]], None]
log = logging.getLogger(__name__)
# a part's fixed cost per full-batch step on a CPU, in example-rows of the step's own cost: one
# step of R = 1 ... 16 one-hot p = 47 MLPs (width 128) at 10-90 % of the pairs, 2 threads, costs
# about 0.7 ms + 0.6-0.7 us a row with the first layer as a table gather (docs/throughput.md)
CPU_PART_OVERHEAD_ROWS = 1000.0


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


def size_parts(sizes: Sequence[int], overhead_rows: float) -> list[list[int]]:
    """The replicas (indices into ``sizes``, their training-set sizes) in parts of similar size,
    so that each part pads only to its own largest: the partition of the size-sorted replicas into
    contiguous runs that minimizes the modelled cost of a full-batch step, the sum over parts of
    ``overhead_rows + len(part) x largest size in part`` (a part's fixed cost per step, in
    example-rows, plus the rows it computes). One part where the sizes agree or padding is cheaper
    than another part's overhead. Parts come smallest sizes first, each in index order."""
    order = sorted(range(len(sizes)), key=lambda i: (sizes[i], i))
    n = len(order)
    best = [0.0] + [math.inf] * n  # best[j]: the cheapest cost of the first j sorted replicas
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        largest = sizes[order[j - 1]]
        for i in range(j):
            cost = best[i] + overhead_rows + (j - i) * largest
            if cost < best[j]:
                best[j], cut[j] = cost, i
    parts, j = [], n
    while j > 0:
        parts.append(sorted(order[cut[j] : j]))
        j = cut[j]
    return parts[::-1]


def halves(parts: Sequence[Sequence[int]]) -> list[list[int]]:
    """Every part of more than one replica cut in two (contiguous halves, in its order)."""
    out: list[list[int]] = []
    for part in parts:
        middle = (len(part) + 1) // 2
        out += [list(part[:middle]), list(part[middle:])] if len(part) > 1 else [list(part)]
    return out


def _renumbered(records: Sequence[Mapping[str, Any]], rows: Sequence[int]) -> list[dict[str, Any]]:
    return [{**record, "replica": rows[int(record["replica"])]} for record in records]


def part_workers(parts: Sequence[ReplicaRun]) -> int:
    """How many parts of a pack train at once: one a thread of ``torch.get_num_threads()`` on a
    CPU (at most one a part); one on a GPU, whose kernels queue on one stream anyway, and one
    where OpenMP's idle threads spin (``OMP_WAIT_POLICY=ACTIVE``: they hold the cores the parts'
    threads would use; measured on the bench's 16-config pack, 2 threads: side by side 2.7 s
    against 2.1 s in turn there, and 1.7 s against 2.0 s with the policy unset, 2.0 s against
    4.9 s with ``PASSIVE``)."""
    if len(parts) < 2 or any(part.device.type != "cpu" for part in parts):
        return 1
    if os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "ACTIVE":
        return 1
    return max(1, min(torch.get_num_threads(), len(parts)))


def _advance(loop: Iterator[list[dict[str, Any]]]) -> list[dict[str, Any]] | None:
    """The next evaluation's records of a part, or None once it is done."""
    return next(loop, None)


class SplitRun:
    """The replicas of one pack as ``ReplicaRun`` parts (``parts``: lists of indices into
    ``configs``, or a number of contiguous slices), trained in turn from one evaluation to the
    next; records carry the pack's replica numbers."""

    def __init__(
        self,
        configs: list[dict[str, Any]],
        parts: int | Sequence[Sequence[int]],
        stop_on_grok: bool = True,
        engine: str | None = None,
        pool: Pool | None = None,
    ) -> None:
        self.configs = configs
        if isinstance(parts, int):
            parts = [list(range(a, b)) for a, b in part_bounds(len(configs), parts)]
        self.groups = [[int(i) for i in group] for group in parts]
        if sorted(i for g in self.groups for i in g) != list(range(len(configs))):
            raise ValueError(f"parts {self.groups} do not cover the {len(configs)} replicas once")
        pool = make_pool(configs[0]) if pool is None else pool
        self.parts = [ReplicaRun([configs[i] for i in g], stop_on_grok, engine, pool) for g in self.groups]
        self._where = {row: (p, k) for p, g in enumerate(self.groups) for k, row in enumerate(g)}

    @property
    def active(self) -> list[int]:
        return sorted(g[row] for g, part in zip(self.groups, self.parts, strict=True) for row in part.active)

    @property
    def step(self) -> int:
        running = [part.step for part in self.parts if part.active]
        return max(running or [part.step for part in self.parts])

    @property
    def histories(self) -> list[list[dict[str, Any]]]:
        return [_renumbered(self.parts[p].histories[k], self.groups[p]) for p, k in self._order()]

    def _order(self) -> list[tuple[int, int]]:
        """(part, row in part) of each replica, in the pack's order."""
        return [self._where[row] for row in range(len(self.configs))]

    @property
    def outcomes(self) -> list[dict[str, Any] | None]:
        out: list[dict[str, Any] | None] = []
        for p, k in self._order():
            o = self.parts[p].outcomes[k]
            if o is not None:
                o = {**o, "replica": self.groups[p][k]}
                if "history" in o:
                    o["history"] = _renumbered(o["history"], self.groups[p])
            out.append(o)
        return out

    def latest_records(self) -> dict[int, dict[str, Any]]:
        latest: dict[int, dict[str, Any]] = {}
        for g, part in zip(self.groups, self.parts, strict=True):
            for row, record in part.latest_records().items():
                latest[g[row]] = {**record, "replica": g[row]}
        return dict(sorted(latest.items()))

    def weights(self, row: int) -> dict[str, torch.Tensor] | None:
        if row not in self._where:
            return None
        p, k = self._where[row]
        return self.parts[p].weights(k)

    def evaluations(self) -> Iterator[list[dict[str, Any]]]:
        """Each evaluation's records of every part still training (all at the same step: the
        parts share the schedule and are checkpointed together), in the pack's replica order.

        On a CPU with more than one thread (``torch.get_num_threads()``), the parts train from one
        evaluation to the next concurrently, one thread each (``part_workers``), each part's ops
        then on one core (``torch.set_num_threads(1)`` while the pack trains, restored after):
        a part of a few small replicas keeps one core busy but not two, and its Python overhead
        overlaps the other part's arithmetic. A part's arithmetic is the same on one thread as on
        two (``tests/unit/engine/test_split.py``)."""
        loops = [part.evaluations() for part in self.parts]
        live = list(range(len(loops)))
        workers = part_workers(self.parts)
        pool = ThreadPoolExecutor(workers, thread_name_prefix="grokray-part") if workers > 1 else None
        threads = torch.get_num_threads()
        try:
            if pool is not None:
                torch.set_num_threads(1)
            while live:
                # the costliest parts first: a free worker takes the next (longest processing time first)
                live.sort(key=lambda i: -self.parts[i].step_rows())
                if pool is None:
                    results = [_advance(loops[i]) for i in live]
                else:
                    futures = [pool.submit(_advance, loops[i]) for i in live]
                    wait(futures)  # every part idle again before an error is raised or a checkpoint taken
                    results = [future.result() for future in futures]
                merged: list[dict[str, Any]] = []
                for i, records in list(zip(live, results, strict=True)):
                    if records is None:
                        live.remove(i)
                        continue
                    merged += _renumbered(records, self.groups[i])
                if merged:
                    yield sorted(merged, key=lambda record: record["replica"])
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
                torch.set_num_threads(threads)

    def run(self, on_eval: OnEvals | None = None) -> list[dict[str, Any]]:
        for records in self.evaluations():
            if on_eval is not None:
                on_eval(records)
        return [outcome for outcome in self.outcomes if outcome is not None]

    def state_dict(self) -> dict[str, Any]:
        parts = [part.state_dict() for part in self.parts]
        # read from a checkpoint as from a ReplicaRun's: "step" (the trainable picks the newest
        # checkpoint by it) and "final_weights" (each done replica's weights.pt, by pack number)
        final = {
            group[k]: weights
            for group, state in zip(self.groups, parts, strict=True)
            for k, weights in state["final_weights"].items()
        }
        return {"step": self.step, "final_weights": final, "groups": self.groups, "parts": parts}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        groups = checkpoint_groups(state, len(self.configs))
        if groups != self.groups:
            raise ValueError(f"checkpoint of parts {groups}, this run has {self.groups}")
        for part, part_state in zip(self.parts, state["parts"], strict=True):
            part.load_state_dict(part_state)


def checkpoint_groups(state: Mapping[str, Any], n: int) -> list[list[int]]:
    """The parts a checkpoint was trained in (one part: a ``ReplicaRun``'s state; ``split``: the
    contiguous bounds of a checkpoint written before parts were sorted by size)."""
    if "groups" in state:
        return [[int(i) for i in g] for g in state["groups"]]
    if "split" in state:
        return [list(range(int(a), int(b))) for a, b in state["split"]]
    return [list(range(n))]


def plan_parts(configs: Sequence[Mapping[str, Any]], pool: Pool) -> list[list[int]]:
    """The parts a pack trains in before any runs out of memory: one, or on a CPU with full-batch
    training sets of different sizes, ``size_parts`` by ``CPU_PART_OVERHEAD_ROWS`` (on a GPU the
    cost of another part is not measured: one part)."""
    n = len(configs)
    first = configs[0]
    sizes = [train_count(pool, c) for c in configs]
    full_batch = not 0 < first["batch_size"] < min(sizes)
    if len(set(sizes)) == 1 or not full_batch or resolve_device(first["device"]).type != "cpu":
        return [list(range(n))]
    return size_parts(sizes, CPU_PART_OVERHEAD_ROWS)


class FittingRun:
    """A pack's run in parts of similar training-set size (``plan_parts``), split further when it
    does not fit in memory (see the module docstring); the interface of ``ReplicaRun`` that a
    Tune trial uses."""

    def __init__(
        self, configs: list[dict[str, Any]], stop_on_grok: bool = True, engine: str | None = None
    ) -> None:
        self.configs, self.stop_on_grok, self.engine = configs, stop_on_grok, engine
        self.pool = make_pool(configs[0])
        self.groups = plan_parts(configs, self.pool)
        self.current: ReplicaRun | SplitRun = self._fit(self.groups)
        self.loaded_step = -1

    @property
    def n_parts(self) -> int:
        return len(self.groups)

    def _build(self, groups: list[list[int]]) -> ReplicaRun | SplitRun:
        if len(groups) == 1:
            return ReplicaRun(self.configs, self.stop_on_grok, self.engine, self.pool)
        return SplitRun(self.configs, groups, self.stop_on_grok, self.engine, self.pool)

    def _fit(self, groups: list[list[int]]) -> ReplicaRun | SplitRun:
        """A run in these parts, more where building it runs out of memory."""
        while True:
            try:
                self.groups = groups
                return self._build(groups)
            except Exception as error:
                groups = self._more_parts(error)

    def _more_parts(self, error: BaseException) -> list[list[int]]:
        """The parts cut in two after ``error``, or ``error`` raised when it is not the device
        running out of memory or the parts are single replicas already."""
        if not is_out_of_memory(error) or self.n_parts >= len(self.configs):
            raise error
        self.current = None  # type: ignore[assignment]
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        groups = halves(self.groups)
        log.warning(
            "a pack of %d replicas did not fit in memory (%s): training it in %d parts",
            len(self.configs), str(error).splitlines()[0][:200], len(groups),
        )  # fmt: skip
        return groups

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
        """Continue from a checkpoint of this pack, in the parts it records."""
        groups = checkpoint_groups(state, len(self.configs))
        if groups != self.groups:
            self.current = None  # type: ignore[assignment]
            gc.collect()
            self.current = self._fit(groups)
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
                self.current = self._fit(self._more_parts(error))
