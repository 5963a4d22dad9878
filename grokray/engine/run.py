"""The engine: ``ReplicaRun`` trains R networks of one shape at once as one batched model, read
top to bottom in ``run``: every ``eval_every`` steps evaluate (``measures.py``), decide each
replica's outcome (``grokray.outcomes``), drop the finished ones, hand the records to
``on_eval``; then one training step (``step.py``). Every Tune trial runs it; it knows nothing
of Ray or MLflow. ``state_dict`` / ``load_state_dict`` continue a run bit for bit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from grokray import settings
from grokray.engine.device import Batches, resolve_device, stack_masks
from grokray.engine.measures import Measures
from grokray.engine.step import Step
from grokray.metrics import OnsetTracker
from grokray.models import build_model
from grokray.models.replicas import ReplicaMLP, VmapReplicas
from grokray.optim.grokfast import Grokfast
from grokray.optim.regularizers import NormConstraint, Regularizer, WeightNoise
from grokray.optim.replicas import ReplicaOptimizer
from grokray.outcomes import GENERALIZED, doshi_phase, outcome_of, stop_reason
from grokray.tasks import Pool, corrupt, make_pool, split

OnEvals = Callable[[list[dict[str, Any]]], None]


class ReplicaRun(Step, Measures):
    """The state of one batched run; ``run`` is the loop, read top to bottom."""

    def __init__(
        self,
        configs: list[dict[str, Any]],
        stop_on_grok: bool = True,
        engine: str | None = None,
        pool: Pool | None = None,
    ) -> None:
        first = configs[0]
        self.configs, self.stop_on_grok = configs, stop_on_grok
        self.device = device = resolve_device(first["device"])
        self.steps, self.eval_every = first["steps"], first["eval_every"]
        # the task's example pool, shared by every replica; each replica owns a split of it
        pool = self.pool = make_pool(first) if pool is None else pool
        self.n_total = len(pool.targets)
        self.n_outputs, self.regression = pool.n_outputs, pool.regression
        self.inputs = pool.inputs.to(device)
        splits = [split(pool, c) for c in configs]
        relabelled = [corrupt(pool, train_idx, c) for (train_idx, _), c in zip(splits, configs, strict=True)]
        self.n_train = [len(train) for train, _ in splits]
        self.targets = torch.stack([targets for targets, _ in relabelled]).to(device)  # (R, N)
        self.clean_targets = pool.targets.to(device)
        self.corruption = [c["corruption"] for c in configs]
        width = max(self.n_train)
        # per replica: its training indices padded to the longest, and 1/n weights (0 on padding)
        train_index = torch.zeros(len(configs), width, dtype=torch.long)
        train_weight = torch.zeros(len(configs), width)
        for r, (train_idx, _) in enumerate(splits):
            train_index[r, : len(train_idx)] = train_idx
            train_weight[r, : len(train_idx)] = 1.0 / len(train_idx)
        self.train_index, self.train_weight = train_index.to(device), train_weight.to(device)
        self.train_mask = stack_masks(self.n_total, [t for t, _ in splits]).to(device)
        self.val_mask = stack_masks(self.n_total, [v for _, v in splits]).to(device)
        self.corrupted_mask = stack_masks(
            self.n_total, [t[flags] for (t, _), (_, flags) in zip(splits, relabelled, strict=True)]
        ).to(device)
        self.any_corruption = any(self.corruption)
        # fixed for the whole run, so that dropping finished replicas changes no arithmetic
        self.equal_sizes = len(set(self.n_train)) == 1

        models = []
        for c in configs:
            torch.manual_seed(c["seed"])
            models.append(build_model(c, pool))
        engine = settings.current().engine if engine is None else engine
        if engine not in settings.ENGINES:
            allowed = ", ".join(repr(e) for e in settings.ENGINES)
            raise ValueError(f"GROKRAY_ENGINE: got {engine!r}; allowed: {allowed}")
        if first["model"] == "mlp" and pool.inputs.dtype == torch.long and not engine:
            self.model: nn.Module = ReplicaMLP(models)  # hand-written batched matmuls
        else:  # any model: torch.func.vmap on a GPU, one replica after another on a CPU
            loop = engine == "loop" or (not engine and device.type == "cpu")
            self.model = VmapReplicas(models, loop=loop)
        self.model.to(device)
        self.shared_inputs = isinstance(self.model, VmapReplicas)
        params = list(self.model.parameters())
        self.optimizer = ReplicaOptimizer(params, configs)
        self.regularizer = Regularizer(params, configs)
        self.weight_noise = WeightNoise(params, configs)
        self.grokfast = Grokfast(params, configs)
        self.norm_constraint = NormConstraint(params, configs)
        self.loss_kind = first["loss"]
        batch_size = first["batch_size"]
        self.batches = (
            [Batches(n, batch_size, c["seed"], device) for n, c in zip(self.n_train, configs, strict=True)]
            if 0 < batch_size < min(self.n_train) else None
        )  # fmt: skip
        self.onsets = [
            OnsetTracker(
                c["memorize_threshold"],
                c["grok_threshold"],
                c["patience"],
                c["memorize_metric"],
                c["grok_metric"],
            )
            for c in configs
        ]
        self.measures = first["measures"]
        self.ever_generalized = [False] * len(configs)
        self.active = list(range(len(configs)))  # original indices of the rows still in the batch
        self.step, self.elapsed, self.resumed = 0, 0.0, False
        self.histories: list[list[dict[str, Any]]] = [[] for _ in configs]
        self.outcomes: list[dict[str, Any] | None] = [None] * len(configs)
        self.final_weights: dict[int, dict[str, torch.Tensor]] = {}  # each done replica's last weights
        self._gathered: tuple[torch.Tensor, ...] | None = None

    @torch.no_grad()
    def _evaluate(self, step: int, started: float) -> list[dict[str, Any]]:
        columns = self._columns(step)
        dtype = columns["train_loss"].dtype
        names = list(columns)
        table = torch.stack([columns[n].to(dtype) for n in names]).T.tolist()  # one sync per evaluation
        elapsed = time.perf_counter() - started
        records = []
        for row, values in zip(self.active, table, strict=True):
            record: dict[str, Any] = {
                "step": step,
                **dict(zip(names, values, strict=True)),
                "elapsed_s": elapsed,
            }
            onset = self.onsets[row]
            onset.update(step, **{name: record[name] for name in names})
            self.ever_generalized[row] |= record["val_acc"] >= GENERALIZED
            diverged = not (math.isfinite(record["train_loss"]) and math.isfinite(record["val_loss"]))
            reason = stop_reason(
                diverged=diverged,
                grokked=onset.grokked,
                stop_on_grok=self.stop_on_grok,
                last_step=step == self.steps,
            )
            record.update(self._outcome(row, record, reason))
            self.histories[row].append(record)
            records.append(record)
        return records

    def _outcome(self, row: int, record: Mapping[str, Any], reason: str) -> dict[str, Any]:
        outcome = outcome_of(self.onsets[row], record, reason, self.steps)
        outcome["doshi_phase"] = doshi_phase(
            record["train_acc"], record["val_acc"], self.corruption[row], self.ever_generalized[row]
        )
        outcome.update(n_train=self.n_train[row], n_total=self.n_total, replica=row)
        return outcome

    def _drop_finished(self, records: list[dict[str, Any]]) -> None:
        finished = {r["replica"] for r in records if r["stop_reason"] != "running"}
        for record in records:
            if record["replica"] in finished:
                row = record["replica"]
                outcome = self._outcome(row, record, record["stop_reason"])
                outcome["history"] = self.histories[row]
                self.outcomes[row] = outcome
                self.final_weights[row] = self._weights_at(self.active.index(row))
        if not finished or len(finished) == len(self.active):
            self.active = [row for row in self.active if row not in finished]
            return
        keep = torch.tensor(
            [i for i, row in enumerate(self.active) if row not in finished], device=self.device
        )
        self.active = [row for row in self.active if row not in finished]
        self._keep(keep)

    def _weights_at(self, index: int) -> dict[str, torch.Tensor]:
        """The single model's state dict of batch row ``index`` (its parameter and buffer names,
        on the CPU): what ``build_model(config).load_state_dict`` takes."""
        state = {
            self.model.original[name]: getattr(self.model, name)[index].detach().cpu().clone()
            for name in self.model.names
        }
        for name, value in getattr(self.model, "buffer_values", {}).items():
            state[name] = value[index].detach().cpu().clone()
        return state

    def weights(self, row: int) -> dict[str, torch.Tensor] | None:
        """Replica ``row``'s weights: final once it is done, current while it trains."""
        if row in self.active:
            return self._weights_at(self.active.index(row))
        return self.final_weights.get(row)

    def _keep(self, keep: torch.Tensor) -> None:
        self.model.keep(keep)
        params = list(self.model.parameters())
        for part in self._parts():
            part.keep(keep, params)
        for name in ("train_index", "train_weight", "train_mask", "val_mask", "corrupted_mask", "targets"):
            setattr(self, name, getattr(self, name)[keep])
        if self.batches is not None:
            self.batches = [self.batches[i] for i in keep.tolist()]

    def _parts(self) -> list[Any]:
        return [self.optimizer, self.regularizer, self.weight_noise, self.grokfast, self.norm_constraint]

    def run(self, on_eval: OnEvals | None = None) -> list[dict[str, Any]]:
        """Train until every replica is done; return the outcomes in config order.

        ``on_eval`` runs after each evaluation, once finished replicas have left the batch: the
        moment at which ``state_dict`` is a consistent checkpoint to resume from.
        """
        for records in self.evaluations():
            if on_eval is not None:
                on_eval(records)
        return [outcome for outcome in self.outcomes if outcome is not None]

    def evaluations(self) -> Iterator[list[dict[str, Any]]]:
        """The loop of ``run`` as a generator: the records of each evaluation, once finished
        replicas have left the batch (``SplitRun`` steps its parts from one evaluation to the next
        in turn)."""
        started = time.perf_counter() - self.elapsed
        step, resumed = self.step, self.resumed
        while self.active:  # none when resumed from the checkpoint of a finished run
            if not resumed and (step % self.eval_every == 0 or step == self.steps):
                records = self._evaluate(step, started)
                self._drop_finished(records)
                self.step, self.elapsed = step, time.perf_counter() - started
                self.resumed = False
                yield records
                if not self.active:
                    break
            resumed = False
            self._train_step()
            step += 1

    def step_rows(self) -> int:
        """Example-rows of one training step now: replicas still training x the padded width."""
        if self.batches is not None:
            return len(self.active) * self.batches[0].batch_size
        return len(self.active) * int(self.train_index.shape[1])

    def latest_records(self) -> dict[int, dict[str, Any]]:
        """Each replica's newest evaluation record (also those already done), by replica index."""
        return {row: history[-1] for row, history in enumerate(self.histories) if history}

    # -- checkpoints: everything needed to continue bit for bit ---------------------------------

    _ROW_TENSORS = ("train_index", "train_weight", "train_mask", "val_mask", "corrupted_mask", "targets")

    def state_dict(self) -> dict[str, Any]:
        """A checkpoint taken in ``on_eval``: resuming from it continues after that evaluation."""
        return {
            "step": self.step,
            "elapsed": self.elapsed,
            "active": list(self.active),
            "params": {name: getattr(self.model, name).detach().clone() for name in self.model.names},
            "parts": [part.state_dict() for part in self._parts()],
            "batches": None
            if self.batches is None
            else [(b.generator.get_state(), b.order.clone(), b.position) for b in self.batches],
            "rows": {name: getattr(self, name).clone() for name in self._ROW_TENSORS},
            "onsets": [onset.state_dict() for onset in self.onsets],
            "ever_generalized": list(self.ever_generalized),
            "histories": self.histories,
            "outcomes": self.outcomes,
            "final_weights": self.final_weights,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state_dict()`` of a run of the same configs."""
        device = self.device
        self.step, self.elapsed, self.resumed = state["step"], state["elapsed"], True
        self.active = list(state["active"])
        self.histories, self.outcomes = state["histories"], state["outcomes"]
        self.final_weights = dict(state.get("final_weights", {}))  # none in a checkpoint made before
        self.ever_generalized = list(state["ever_generalized"])
        for onset, onset_state in zip(self.onsets, state["onsets"], strict=True):
            onset.load_state_dict(onset_state)
        if not self.active:  # a finished run: its records and outcomes are all there is to resume
            return
        if len(self.active) < len(self.configs):  # shrink every per-replica part to the saved rows
            self.model.keep(torch.tensor(self.active, dtype=torch.long, device=device))
        for name, value in state["params"].items():
            getattr(self.model, name).data = value.to(device)
        params = list(self.model.parameters())
        for part, part_state in zip(self._parts(), state["parts"], strict=True):
            part.load_state_dict(part_state, params)
        if state["batches"] is not None and self.batches is not None:
            kept = [self.batches[row] for row in self.active]
            for batches, (generator, order, position) in zip(kept, state["batches"], strict=True):
                batches.generator.set_state(generator)
                batches.order, batches.position = order.to(device), position
            self.batches = kept
        for name, value in state["rows"].items():
            setattr(self, name, value.to(device))
