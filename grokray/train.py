"""The training loop of one trial. No Ray, no MLflow: it reports through ``on_eval(record)``.

Read top to bottom: build data, model and optimizer from a flat config; step; every
``eval_every`` steps evaluate train/val loss and accuracy and the weight norm, update the onset
tracker and hand a record to ``on_eval``. ``on_eval`` returning True stops the run (``grokray
trial`` stops once grokked; under Ray Tune a ``Stopper`` decides instead).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from grokray.metrics import OnsetTracker, liu_phase, weight_norm
from grokray.models import build_model
from grokray.models.replicas import ReplicaMLP
from grokray.optim import LangevinNoise, build_optimizer
from grokray.optim.replicas import ReplicaNoise, ReplicaOptimizer
from grokray.tasks import make_modular
from grokray.tasks.modular import all_pairs, split_indices

OnEval = Callable[[dict[str, Any]], bool | None]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _loss_fn(kind: str, p: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if kind == "ce":
        return nn.functional.cross_entropy
    if kind == "mse":
        return lambda logits, labels: nn.functional.mse_loss(
            logits, nn.functional.one_hot(labels, p).to(logits.dtype)
        )
    raise ValueError(f"loss: got {kind!r}; allowed: ce, mse")


class _Batches:
    """Minibatch indices: a fresh seeded permutation per epoch; None for full batch."""

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device) -> None:
        self.n, self.device = n, device
        self.batch_size = batch_size if 0 < batch_size < n else 0
        self.generator = torch.Generator().manual_seed(seed + 0xBA7C)
        self.order = torch.empty(0, dtype=torch.long)
        self.position = 0

    def next(self) -> torch.Tensor | None:
        if not self.batch_size:
            return None
        if self.position + self.batch_size > len(self.order):
            self.order = torch.randperm(self.n, generator=self.generator).to(self.device)
            self.position = 0
        batch = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return batch


@torch.no_grad()
def _evaluate(
    model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, loss_fn: Callable[..., torch.Tensor]
) -> tuple[float, float]:
    logits = model(inputs)
    loss = loss_fn(logits, labels)
    accuracy = (logits.argmax(dim=1) == labels).float().mean()
    return float(loss), float(accuracy)


def outcome_of(onset: OnsetTracker, record: Mapping[str, Any], stop_reason: str) -> dict[str, Any]:
    """The outcome keys of DESIGN.md from the tracker and the last evaluation record."""
    return {
        "memorization_step": onset.memorization_step,
        "grokking_step": onset.grokking_step,
        "grokking_delay": onset.grokking_delay,
        "grokked": onset.grokked,
        "steps_run": record["step"],
        "final_train_acc": record["train_acc"],
        "final_val_acc": record["val_acc"],
        "final_train_loss": record["train_loss"],
        "final_val_loss": record["val_loss"],
        "phase": liu_phase(onset.memorization_step, onset.grokking_step),
        "stop_reason": stop_reason,
    }


def train(config: Mapping[str, Any], on_eval: OnEval | None = None) -> dict[str, Any]:
    """Train one config; return its outcome plus ``history`` (the evaluation records).

    Every record handed to ``on_eval`` carries the curves' values at that step and the outcome
    so far (``stop_reason`` is ``running`` until the last record), so a caller that stops the run
    from outside still holds a complete outcome.
    """
    device = resolve_device(config["device"])
    seed = config["seed"]
    data = make_modular(config["p"], config["op"], config["train_fraction"], config["train_size"], seed).to(
        device
    )
    torch.manual_seed(seed)
    model = build_model(config).to(device)
    optimizer = build_optimizer(model.parameters(), config)
    noise = LangevinNoise(model.parameters(), config["lr"], config["temperature"], seed)
    loss_fn = _loss_fn(config["loss"], config["p"])
    batches = _Batches(data.n_train, config["batch_size"], seed, device)
    onset = OnsetTracker(config["memorize_threshold"], config["grok_threshold"], config["patience"])

    steps, eval_every = config["steps"], config["eval_every"]
    history: list[dict[str, Any]] = []
    started = time.perf_counter()
    stop_reason = "budget"
    for step in range(steps + 1):
        if step % eval_every == 0 or step == steps:
            train_loss, train_acc = _evaluate(model, data.train_inputs, data.train_labels, loss_fn)
            val_loss, val_acc = _evaluate(model, data.val_inputs, data.val_labels, loss_fn)
            onset.update(step, train_acc, val_acc)
            record: dict[str, Any] = {
                "step": step,
                "train_loss": train_loss,
                "train_acc": train_acc,
                "val_loss": val_loss,
                "val_acc": val_acc,
                "weight_norm": weight_norm(model),
                "elapsed_s": time.perf_counter() - started,
            }
            diverged = not (math.isfinite(train_loss) and math.isfinite(val_loss))
            finished = diverged or step == steps
            reason = "diverged" if diverged else ("budget" if finished else "running")
            if onset.grokked and not diverged:
                reason = "grokked" if not finished else "budget"
            record.update(outcome_of(onset, record, reason))
            record["n_train"], record["n_total"] = data.n_train, data.n_total
            history.append(record)
            stop = on_eval(record) if on_eval is not None else False
            if diverged:
                stop_reason = "diverged"
                break
            if finished:
                break
            if stop:
                stop_reason = "grokked" if onset.grokked else "stopped"
                break
        batch = batches.next()
        inputs = data.train_inputs if batch is None else data.train_inputs[batch]
        labels = data.train_labels if batch is None else data.train_labels[batch]
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(inputs), labels).backward()
        optimizer.step()
        noise()

    last = history[-1]
    outcome = outcome_of(onset, last, stop_reason)
    outcome.update(n_train=data.n_train, n_total=data.n_total, history=history)
    return outcome


# ---------------------------------------------------------------------------------------------
# Replicas: R networks of one shape trained at once as one batched model

SHARED_KEYS = (
    "task", "op", "p", "model", "width", "depth", "embed_dim", "encoding", "activation", "bias",
    "loss", "steps", "eval_every", "batch_size", "optimizer", "beta1", "beta2", "momentum", "device",
)  # fmt: skip


def train_replicas(
    configs: Sequence[Mapping[str, Any]],
    on_eval: Callable[[list[dict[str, Any]]], None] | None = None,
    stop_on_grok: bool = True,
    batched: bool | None = None,
) -> list[dict[str, Any]]:
    """Train one network per config at once; return one outcome per config, in order.

    Configs share shapes and the step schedule (``SHARED_KEYS``) and may differ in seed, lr,
    weight decay, init scale, temperature, training fraction/size and onset thresholds. Each
    replica keeps its own split (a mask over the shared pair table), onset tracker and outcome;
    a replica that is done (grokked with ``stop_on_grok``, diverged) is dropped from the batch.
    ``on_eval`` gets the records of the replicas still training at each evaluation, each with
    ``replica`` = its index in ``configs``. One config takes the unbatched path, ``train``,
    unless ``batched`` (how ``grokray trial`` reproduces one replica of a batched trial exactly:
    each replica's arithmetic does not depend on the others in the batch).
    """
    configs = [dict(c) for c in configs]
    for key in SHARED_KEYS:
        values = {str(c[key]) for c in configs}
        if len(values) > 1:
            raise ValueError(f"{key}: replicas of one trial must share it, got {sorted(values)}")
    if len(configs) == 1 and not batched:

        def single(record: dict[str, Any]) -> bool:
            record["replica"] = 0
            if on_eval is not None:
                on_eval([record])
            return stop_on_grok and bool(record["grokked"])

        outcome = train(configs[0], on_eval=single)
        outcome["replica"] = 0
        return [outcome]
    return ReplicaRun(configs, on_eval, stop_on_grok).run()


class ReplicaRun:
    """The state of one batched run; ``run`` is the loop, read top to bottom."""

    def __init__(
        self,
        configs: list[dict[str, Any]],
        on_eval: Callable[[list[dict[str, Any]]], None] | None,
        stop_on_grok: bool,
    ) -> None:
        first = configs[0]
        self.configs, self.on_eval, self.stop_on_grok = configs, on_eval, stop_on_grok
        self.device = device = resolve_device(first["device"])
        self.steps, self.eval_every, self.p = first["steps"], first["eval_every"], first["p"]
        inputs, labels = all_pairs(first["p"], first["op"])
        self.n_total = len(labels)
        self.inputs, self.labels = inputs.to(device), labels.to(device)
        splits = [
            split_indices(self.n_total, c["train_fraction"], c["train_size"], c["seed"]) for c in configs
        ]
        self.n_train = [len(train) for train, _ in splits]
        width = max(self.n_train)
        # per replica: its training indices padded to the longest, and 1/n weights (0 on padding)
        self.train_index = torch.zeros(len(configs), width, dtype=torch.long)
        self.train_weight = torch.zeros(len(configs), width)
        self.train_mask = torch.zeros(len(configs), self.n_total, dtype=torch.bool)
        for r, (train_idx, _) in enumerate(splits):
            self.train_index[r, : len(train_idx)] = train_idx
            self.train_weight[r, : len(train_idx)] = 1.0 / len(train_idx)
            self.train_mask[r, train_idx] = True
        self.train_index = self.train_index.to(device)
        self.train_weight = self.train_weight.to(device)
        self.train_mask = self.train_mask.to(device)
        # fixed for the whole run, so that dropping finished replicas changes no arithmetic
        self.equal_sizes = len(set(self.n_train)) == 1

        models = []
        for c in configs:
            torch.manual_seed(c["seed"])
            models.append(build_model(c))
        self.model = ReplicaMLP(models).to(device)
        params = list(self.model.parameters())
        self.optimizer = ReplicaOptimizer(params, configs)
        self.noise = ReplicaNoise(params, configs)
        self.loss_kind = first["loss"]
        batch_size = first["batch_size"]
        self.batches = (
            [_Batches(n, batch_size, c["seed"], device) for n, c in zip(self.n_train, configs, strict=True)]
            if 0 < batch_size < min(self.n_train) else None
        )  # fmt: skip
        self.onsets = [
            OnsetTracker(c["memorize_threshold"], c["grok_threshold"], c["patience"]) for c in configs
        ]
        self.active = list(range(len(configs)))  # original indices of the rows still in the batch
        self.step, self.elapsed, self.resumed = 0, 0.0, False
        self.histories: list[list[dict[str, Any]]] = [[] for _ in configs]
        self.outcomes: list[dict[str, Any] | None] = [None] * len(configs)

    def _losses(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-example losses, (R, n): cross-entropy, or MSE to one-hot averaged over classes."""
        if self.loss_kind == "mse":
            target = nn.functional.one_hot(labels, self.p).to(logits.dtype)
            return nn.functional.mse_loss(logits, target, reduction="none").mean(dim=-1)
        flat = nn.functional.cross_entropy(logits.reshape(-1, self.p), labels.reshape(-1), reduction="none")
        return flat.view(labels.shape)

    def _train_step(self) -> None:
        if self.batches is None:
            index, weight = self.train_index, self.train_weight
        else:
            picks = torch.stack([b.next() for b in self.batches])  # type: ignore[misc]
            index = torch.gather(self.train_index, 1, picks)
            weight = torch.full(index.shape, 1.0 / index.shape[1], device=self.device)
        rows = self.inputs[index]  # (R, n, 2)
        losses = self._losses(self.model(rows), self.labels[index])
        per_replica = losses.mean(dim=1) if self.equal_sizes and self.batches is None else (
            losses * weight).sum(dim=1)  # fmt: skip
        self.optimizer.zero_grad()
        per_replica.sum().backward()
        self.optimizer.step()
        self.noise()

    @torch.no_grad()
    def _evaluate(self, step: int, started: float) -> list[dict[str, Any]]:
        replicas = len(self.active)
        logits = self.model(self.inputs.expand(replicas, -1, -1))
        labels = self.labels.expand(replicas, -1)
        losses = self._losses(logits, labels)
        correct = (logits.argmax(dim=-1) == labels).to(losses.dtype)
        train_mask = self.train_mask.to(losses.dtype)
        val_mask = 1.0 - train_mask
        n_train, n_val = train_mask.sum(dim=1), val_mask.sum(dim=1)
        norms = torch.sqrt(
            sum(p.detach().double().pow(2).flatten(1).sum(dim=1) for p in self.model.parameters())
        )
        table = torch.stack([
            (losses * train_mask).sum(dim=1) / n_train, (correct * train_mask).sum(dim=1) / n_train,
            (losses * val_mask).sum(dim=1) / n_val, (correct * val_mask).sum(dim=1) / n_val,
            norms.to(losses.dtype),
        ]).T.tolist()  # one device sync per evaluation  # fmt: skip
        elapsed = time.perf_counter() - started
        records = []
        for row, (train_loss, train_acc, val_loss, val_acc, norm) in zip(self.active, table, strict=True):
            onset = self.onsets[row]
            onset.update(step, train_acc, val_acc)
            record: dict[str, Any] = {
                "step": step, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
                "val_acc": val_acc, "weight_norm": norm, "elapsed_s": elapsed,
            }  # fmt: skip
            diverged = not (math.isfinite(train_loss) and math.isfinite(val_loss))
            if diverged:
                reason = "diverged"
            elif onset.grokked and self.stop_on_grok:
                reason = "grokked"
            elif step == self.steps:
                reason = "budget"
            else:
                reason = "running"
            record.update(outcome_of(onset, record, reason))
            record.update(n_train=self.n_train[row], n_total=self.n_total, replica=row)
            self.histories[row].append(record)
            records.append(record)
        return records

    def _drop_finished(self, records: list[dict[str, Any]]) -> None:
        finished = {r["replica"] for r in records if r["stop_reason"] != "running"}
        for record in records:
            if record["replica"] in finished:
                row = record["replica"]
                outcome = outcome_of(self.onsets[row], record, record["stop_reason"])
                outcome.update(n_train=self.n_train[row], n_total=self.n_total, replica=row,
                               history=self.histories[row])  # fmt: skip
                self.outcomes[row] = outcome
        if not finished or len(finished) == len(self.active):
            self.active = [row for row in self.active if row not in finished]
            return
        keep = torch.tensor(
            [i for i, row in enumerate(self.active) if row not in finished], device=self.device
        )
        self.active = [row for row in self.active if row not in finished]
        self.model.keep(keep)
        params = list(self.model.parameters())
        self.optimizer.keep(keep, params)
        self.noise.keep(keep, params)
        self.train_index, self.train_weight = self.train_index[keep], self.train_weight[keep]
        self.train_mask = self.train_mask[keep]
        if self.batches is not None:
            self.batches = [self.batches[i] for i in keep.tolist()]

    def run(self) -> list[dict[str, Any]]:
        """Train until every replica is done; return the outcomes in config order.

        ``on_eval`` runs after each evaluation, once finished replicas have left the batch: the
        moment at which ``state_dict`` is a consistent checkpoint to resume from.
        """
        started = time.perf_counter() - self.elapsed
        step, resumed = self.step, self.resumed
        while True:
            if not resumed and (step % self.eval_every == 0 or step == self.steps):
                records = self._evaluate(step, started)
                self._drop_finished(records)
                self.step, self.elapsed = step, time.perf_counter() - started
                if self.on_eval is not None:
                    self.on_eval(records)
                if not self.active:
                    break
            resumed = False
            self._train_step()
            step += 1
        return [outcome for outcome in self.outcomes if outcome is not None]

    def latest_records(self) -> dict[int, dict[str, Any]]:
        """Each replica's newest evaluation record (also those already done), by replica index."""
        return {row: history[-1] for row, history in enumerate(self.histories) if history}

    # -- checkpoints: everything needed to continue bit for bit ---------------------------------

    def state_dict(self) -> dict[str, Any]:
        """A checkpoint taken in ``on_eval``: resuming from it continues after that evaluation."""
        optimizer = self.optimizer
        return {
            "step": self.step,
            "elapsed": self.elapsed,
            "active": list(self.active),
            "params": {name: getattr(self.model, name).detach().clone() for name in self.model.names},
            "optimizer": {
                "state": [{k: v.clone() for k, v in st.items()} for st in optimizer.state],
                "step_count": optimizer.step_count,
                "lr": list(optimizer.lr),
                "weight_decay": list(optimizer.weight_decay),
            },
            "noise": {
                "scales": list(self.noise.scales),
                "generators": [g.get_state() if g is not None else None for g in self.noise.generators],
            },
            "batches": None
            if self.batches is None
            else [(b.generator.get_state(), b.order.clone(), b.position) for b in self.batches],
            "train_index": self.train_index.clone(),
            "train_weight": self.train_weight.clone(),
            "train_mask": self.train_mask.clone(),
            "onsets": [onset.state_dict() for onset in self.onsets],
            "histories": self.histories,
            "outcomes": self.outcomes,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state_dict()`` of a run of the same configs."""
        device = self.device
        self.step, self.elapsed, self.resumed = state["step"], state["elapsed"], True
        self.active = list(state["active"])
        for name, value in state["params"].items():
            getattr(self.model, name).data = value.to(device)
        params = list(self.model.parameters())
        self.optimizer.params = params
        self.optimizer.state = [
            {k: v.to(device) for k, v in st.items()} for st in state["optimizer"]["state"]
        ]
        self.optimizer.step_count = state["optimizer"]["step_count"]
        self.optimizer.lr = list(state["optimizer"]["lr"])
        self.optimizer.weight_decay = list(state["optimizer"]["weight_decay"])
        self.noise.params, self.noise.scales = params, list(state["noise"]["scales"])
        self.noise.generators = [
            _generator(g, device) if g is not None else None for g in state["noise"]["generators"]
        ]
        if state["batches"] is not None and self.batches is not None:
            kept = [self.batches[row] for row in self.active]
            for batches, (generator, order, position) in zip(kept, state["batches"], strict=True):
                batches.generator.set_state(generator)
                batches.order, batches.position = order.to(device), position
            self.batches = kept
        self.train_index = state["train_index"].to(device)
        self.train_weight = state["train_weight"].to(device)
        self.train_mask = state["train_mask"].to(device)
        for onset, onset_state in zip(self.onsets, state["onsets"], strict=True):
            onset.load_state_dict(onset_state)
        self.histories, self.outcomes = state["histories"], state["outcomes"]


def _generator(state: torch.Tensor, device: torch.device) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.set_state(state)
    return generator
