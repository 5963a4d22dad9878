"""The training loop of one trial. No Ray, no MLflow: it reports through ``on_eval(record)``.

Read top to bottom: build data, model and optimizer from a flat config; step; every
``eval_every`` steps evaluate train/val loss and accuracy and the weight norm, update the onset
tracker and hand a record to ``on_eval``. ``on_eval`` returning True stops the run (``grokray
trial`` stops once grokked; under Ray Tune a ``Stopper`` decides instead).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from grokray.metrics import (
    OnsetTracker,
    compressed_complexity,
    doshi_phase,
    is_log_step,
    liu_phase,
    mlp_neuron_weights,
    neuron_ipr,
    norm_measures,
    spectral_measures,
    weight_norm,
)
from grokray.models import build_model
from grokray.models.replicas import ReplicaMLP, VmapReplicas
from grokray.optim import LangevinNoise, build_optimizer
from grokray.optim.grokfast import Grokfast
from grokray.optim.regularizers import NormConstraint, Regularizer, WeightNoise
from grokray.optim.replicas import ReplicaOptimizer
from grokray.tasks import corrupt, make_modular, make_pool, split

OnEval = Callable[[dict[str, Any]], bool | None]

DOSHI_GENERALIZED = 0.9  # Doshi et al.: a run has generalized once test accuracy reached 90 %


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


def outcome_of(
    onset: OnsetTracker, record: Mapping[str, Any], stop_reason: str, budget: int
) -> dict[str, Any]:
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
        "phase": liu_phase(onset.memorization_step, onset.grokking_step, budget),
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
    onset = OnsetTracker(
        config["memorize_threshold"],
        config["grok_threshold"],
        config["patience"],
        config["memorize_metric"],
        config["grok_metric"],
    )

    steps, eval_every = config["steps"], config["eval_every"]
    history: list[dict[str, Any]] = []
    started = time.perf_counter()
    stop_reason = "budget"
    for step in range(steps + 1):
        if step % eval_every == 0 or step == steps:
            train_loss, train_acc = _evaluate(model, data.train_inputs, data.train_labels, loss_fn)
            val_loss, val_acc = _evaluate(model, data.val_inputs, data.val_labels, loss_fn)
            onset.update(step, train_acc, val_acc, train_loss=train_loss, val_loss=val_loss)
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
            record.update(outcome_of(onset, record, reason, steps))
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
    outcome = outcome_of(onset, last, stop_reason, steps)
    outcome.update(n_train=data.n_train, n_total=data.n_total, history=history)
    return outcome


# ---------------------------------------------------------------------------------------------
# Replicas: R networks of one shape trained at once as one batched model

SHARED_KEYS = (
    "task", "op", "p", "dim", "sparsity", "matrix_size", "rank", "test_size", "data_path", "max_len",
    "vocab_size", "model", "width", "depth", "heads", "embed_dim", "encoding", "activation", "bias",
    "loss", "steps", "eval_every", "batch_size", "optimizer", "beta1", "beta2", "momentum", "device",
    "regularizer", "measures", "complexity_epsilon", "causal", "layer_norm",
)  # fmt: skip

# What the plain single-model loop ``train`` implements; anything else takes the batched engine.
_PLAIN = {
    "task": ("modular",),
    "model": ("mlp",),
    "regularizer": ("none",),
    "optimizer": ("adamw", "adam", "sgd"),
}
_PLAIN_OFF = ("corruption", "grokfast_lambda", "weight_noise", "norm_constraint")

# GROKRAY_ENGINE: "" (the MLP on token pairs through ReplicaMLP; other models looped on a CPU and
# through vmap on a GPU), "vmap" or "loop" (every model through VmapReplicas, so)
ENGINES = ("", "vmap", "loop")

EVAL_CHUNK = 8192  # examples per forward pass at evaluation (bounds memory of large pools)


def _plain_loop_covers(config: Mapping[str, Any]) -> bool:
    return all(config[k] in allowed for k, allowed in _PLAIN.items()) and not any(
        config[k] for k in _PLAIN_OFF
    )


def train_replicas(
    configs: Sequence[Mapping[str, Any]],
    on_eval: Callable[[list[dict[str, Any]]], None] | None = None,
    stop_on_grok: bool = True,
    batched: bool | None = None,
) -> list[dict[str, Any]]:
    """Train one network per config at once; return one outcome per config, in order.

    Configs share shapes and the step schedule (``SHARED_KEYS``) and may differ in seed, lr,
    weight decay, init scale, temperature, training fraction/size, corruption, regularizer
    strength and onset thresholds. Each replica keeps its own split (a mask over the task's
    shared example pool), onset tracker and outcome; a replica that is done (grokked with
    ``stop_on_grok``, diverged) is dropped from the batch. ``on_eval`` gets the records of the
    replicas still training at each evaluation, each with ``replica`` = its index in ``configs``.
    One config takes the plain loop, ``train``, unless ``batched`` or the config uses what only
    the batched engine has (then ``grokray trial`` and a Tune trial run the same arithmetic).
    """
    configs = [dict(c) for c in configs]
    for key in SHARED_KEYS:
        values = {str(c[key]) for c in configs}
        if len(values) > 1:
            raise ValueError(f"{key}: replicas of one trial must share it, got {sorted(values)}")
    if len(configs) == 1 and not batched and _plain_loop_covers(configs[0]):

        def single(record: dict[str, Any]) -> bool:
            record["replica"] = 0
            if on_eval is not None:
                on_eval([record])
            return stop_on_grok and bool(record["grokked"])

        outcome = train(configs[0], on_eval=single)
        outcome["replica"] = 0
        return [outcome]
    return ReplicaRun(configs, on_eval, stop_on_grok).run()


def _stack_masks(n_total: int, index_lists: Sequence[torch.Tensor]) -> torch.Tensor:
    mask = torch.zeros(len(index_lists), n_total, dtype=torch.bool)
    for r, index in enumerate(index_lists):
        mask[r, index] = True
    return mask


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
        self.steps, self.eval_every = first["steps"], first["eval_every"]
        # the task's example pool, shared by every replica; each replica owns a split of it
        pool = self.pool = make_pool(first)
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
        self.train_mask = _stack_masks(self.n_total, [t for t, _ in splits]).to(device)
        self.val_mask = _stack_masks(self.n_total, [v for _, v in splits]).to(device)
        self.corrupted_mask = _stack_masks(
            self.n_total, [t[flags] for (t, _), (_, flags) in zip(splits, relabelled, strict=True)]
        ).to(device)
        self.any_corruption = any(self.corruption)
        # fixed for the whole run, so that dropping finished replicas changes no arithmetic
        self.equal_sizes = len(set(self.n_train)) == 1

        models = []
        for c in configs:
            torch.manual_seed(c["seed"])
            models.append(build_model(c, pool))
        engine = os.environ.get("GROKRAY_ENGINE", "")
        if engine not in ENGINES:
            raise ValueError(
                f"GROKRAY_ENGINE: got {engine!r}; allowed: {', '.join(repr(e) for e in ENGINES)}"
            )
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
            [_Batches(n, batch_size, c["seed"], device) for n, c in zip(self.n_train, configs, strict=True)]
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
        self._gathered: tuple[torch.Tensor, ...] | None = None

    # -- arithmetic -------------------------------------------------------------------------------

    def _forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Outputs (R, n, n_outputs) for inputs (R, n, ...) per replica or (n, ...) shared."""
        if inputs.dim() == self.inputs.dim():  # shared by all replicas
            if self.shared_inputs:
                return self.model(inputs, shared=True)
            inputs = inputs.expand(len(self.active), *inputs.shape)
        return self.model(inputs)

    def _losses(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-example losses, (R, n): cross-entropy, or MSE (to one-hot targets for classes)."""
        if self.regression:
            return (outputs[..., 0] - targets).pow(2)
        if self.loss_kind == "mse":
            target = nn.functional.one_hot(targets, self.n_outputs).to(outputs.dtype)
            return nn.functional.mse_loss(outputs, target, reduction="none").mean(dim=-1)
        flat = nn.functional.cross_entropy(
            outputs.reshape(-1, self.n_outputs), targets.reshape(-1), reduction="none"
        )
        return flat.view(targets.shape)

    def _correct(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.regression:
            return ((outputs[..., 0] - targets).abs() <= self.pool.tolerance).to(outputs.dtype)
        return (outputs.argmax(dim=-1) == targets).to(outputs.dtype)

    def _full_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every replica's training inputs and targets, gathered once (not at every step) until
        replicas leave the batch or a checkpoint loads, which replace the row tensors."""
        cached = self._gathered
        if cached is None or cached[0] is not self.train_index or cached[1] is not self.targets:
            index = self.train_index
            cached = (index, self.targets, self.inputs[index], torch.gather(self.targets, 1, index))
            self._gathered = cached
        return cached[2], cached[3]

    def _train_step(self) -> None:
        if self.batches is None:
            weight = self.train_weight
            inputs, targets = self._full_batch()
        else:
            picks = torch.stack([b.next() for b in self.batches])  # type: ignore[misc]
            index = torch.gather(self.train_index, 1, picks)
            weight = torch.full(index.shape, 1.0 / index.shape[1], device=self.device)
            inputs, targets = self.inputs[index], torch.gather(self.targets, 1, index)
        params = list(self.model.parameters())
        perturbed = self.weight_noise.perturb(params)
        losses = self._losses(self._forward(inputs), targets)
        per_replica = losses.mean(dim=1) if self.equal_sizes and self.batches is None else (
            losses * weight).sum(dim=1)  # fmt: skip
        self.optimizer.zero_grad()
        total = per_replica + self.regularizer(params) if self.regularizer.active else per_replica
        total.sum().backward()
        self.weight_noise.restore(params, perturbed)
        self.grokfast(params)
        self.optimizer.step(losses=per_replica.detach())
        self.norm_constraint(params)

    @torch.no_grad()
    def _outputs_all(self) -> torch.Tensor:
        chunks = [
            self._forward(self.inputs[start : start + EVAL_CHUNK])
            for start in range(0, self.n_total, EVAL_CHUNK)
        ]
        return torch.cat(chunks, dim=1)

    @torch.no_grad()
    def _measures(self, step: int) -> dict[str, torch.Tensor]:
        """Progress measures as (R,) tensors: cheap ones every evaluation, the rest on a log schedule."""
        out: dict[str, torch.Tensor] = {}
        raw = {name: getattr(self.model, name).detach() for name in self.model.names}
        # a diverged replica has inf/NaN weights, on which an SVD raises: measure zeros instead
        # and report NaN for it (no host sync: the flags stay on the device)
        finite = torch.stack([p.flatten(1).isfinite().all(dim=1) for p in raw.values()]).all(dim=0)
        params = {name: p.nan_to_num(0.0, 0.0, 0.0) for name, p in raw.items()}
        if self.pool.truth is not None:
            predicted = self._forward(self.pool.probe.to(self.device))[..., 0]
            truth = self.pool.truth.to(self.device).reshape(1, -1)
            error = (predicted.reshape(len(self.active), -1) - truth).norm(dim=1)
            out["recovery_error"] = error / truth.norm()
        if self.measures == "none":
            return {name: torch.where(finite, value, torch.nan) for name, value in out.items()}
        out.update(norm_measures(params))
        if self.measures == "all" and is_log_step(step, self.eval_every):
            out.update(spectral_measures(params))
            weights = mlp_neuron_weights(params, self.configs[0]["p"], self.configs[0]["encoding"]) if (
                isinstance(self.model, ReplicaMLP)) else None  # fmt: skip
            if weights is not None:
                out["fourier_ipr"] = neuron_ipr(*weights)[1]
            out.update(self._complexity())
        return {name: torch.where(finite, value, torch.nan) for name, value in out.items()}

    def _complexity(self) -> dict[str, torch.Tensor]:
        """DeMoss's compression complexity of each replica over all its parameters (weights,
        embeddings, biases, norm gains), expensive: log schedule only."""
        names = list(self.model.names)
        sizes, naive = [], []
        for i in range(len(self.active)):
            tensors = [getattr(self.model, n)[i].detach() for n in names]
            if not all(bool(t.isfinite().all()) for t in tensors):  # diverged: nothing to compress
                sizes.append(math.nan)
                naive.append(math.nan)
                continue

            def loss_at(approx: list[torch.Tensor], i: int = i) -> float:
                return self._replica_train_loss(i, dict(zip(names, approx, strict=True)))

            result = compressed_complexity(tensors, loss_at, epsilon=self.configs[0]["complexity_epsilon"])
            sizes.append(float(result["complexity_bytes"]))
            naive.append(float(result["naive_bytes"]))
        return {
            "complexity_bytes": torch.tensor(sizes, device=self.device),
            "naive_complexity_bytes": torch.tensor(naive, device=self.device),
        }

    @torch.no_grad()
    def _replica_train_loss(self, row: int, replaced: Mapping[str, torch.Tensor]) -> float:
        """Training loss of batch row ``row`` with some parameters replaced (for the complexity
        search): that replica alone, on its own training examples, at its clean weights."""
        params = {
            name: (replaced[name] if name in replaced else getattr(self.model, name)[row]).unsqueeze(0)
            for name in self.model.names
        }
        index = self.train_index[row, : self.n_train[self.active[row]]]
        buffers = getattr(self.model, "buffer_values", None)
        if buffers:  # VmapReplicas keeps buffers stacked outside the module: the row's alone
            self.model.buffer_values = {name: value[row : row + 1] for name, value in buffers.items()}
        try:
            outputs = torch.func.functional_call(self.model, params, (self.inputs[index].unsqueeze(0),))
        finally:
            if buffers:
                self.model.buffer_values = buffers
        return float(self._losses(outputs, self.targets[row, index].unsqueeze(0)).mean())

    @torch.no_grad()
    def _evaluate(self, step: int, started: float) -> list[dict[str, Any]]:
        outputs = self._outputs_all()
        targets = self.targets
        losses, correct = self._losses(outputs, targets), self._correct(outputs, targets)
        dtype = losses.dtype
        train_mask, val_mask = self.train_mask.to(dtype), self.val_mask.to(dtype)
        n_train, n_val = train_mask.sum(dim=1), val_mask.sum(dim=1)
        norms = torch.sqrt(
            sum(p.detach().double().pow(2).flatten(1).sum(dim=1) for p in self.model.parameters())
        )
        columns = {
            "train_loss": (losses * train_mask).sum(dim=1) / n_train,
            "train_acc": (correct * train_mask).sum(dim=1) / n_train,
            "val_loss": (losses * val_mask).sum(dim=1) / n_val,
            "val_acc": (correct * val_mask).sum(dim=1) / n_val,
            "weight_norm": norms.to(dtype),
        }
        if self.any_corruption:
            corrupted = self.corrupted_mask.to(dtype)
            clean = train_mask - corrupted
            truly = self._correct(outputs, self.clean_targets.expand_as(targets))
            columns["train_acc_clean"] = (truly * clean).sum(dim=1) / clean.sum(dim=1).clamp(min=1)
            columns["train_acc_corrupted"] = (correct * corrupted).sum(dim=1) / corrupted.sum(dim=1).clamp(
                min=1
            )
        columns.update(self._measures(step))
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
            self.ever_generalized[row] |= record["val_acc"] >= DOSHI_GENERALIZED
            diverged = not (math.isfinite(record["train_loss"]) and math.isfinite(record["val_loss"]))
            if diverged:
                reason = "diverged"
            elif onset.grokked and self.stop_on_grok:
                reason = "grokked"
            elif step == self.steps:
                reason = "budget"
            else:
                reason = "running"
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
        if not finished or len(finished) == len(self.active):
            self.active = [row for row in self.active if row not in finished]
            return
        keep = torch.tensor(
            [i for i, row in enumerate(self.active) if row not in finished], device=self.device
        )
        self.active = [row for row in self.active if row not in finished]
        self._keep(keep)

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

    def run(self) -> list[dict[str, Any]]:
        """Train until every replica is done; return the outcomes in config order.

        ``on_eval`` runs after each evaluation, once finished replicas have left the batch: the
        moment at which ``state_dict`` is a consistent checkpoint to resume from.
        """
        started = time.perf_counter() - self.elapsed
        step, resumed = self.step, self.resumed
        while self.active:  # none when resumed from the checkpoint of a finished run
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
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state_dict()`` of a run of the same configs."""
        device = self.device
        self.step, self.elapsed, self.resumed = state["step"], state["elapsed"], True
        self.active = list(state["active"])
        self.histories, self.outcomes = state["histories"], state["outcomes"]
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
