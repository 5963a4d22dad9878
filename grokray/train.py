"""The training loop of one trial. No Ray, no MLflow: it reports through ``on_eval(record)``.

Read top to bottom: build data, model and optimizer from a flat config; step; every
``eval_every`` steps evaluate train/val loss and accuracy and the weight norm, update the onset
tracker and hand a record to ``on_eval``. ``on_eval`` returning True stops the run (``grokray
trial`` stops once grokked; under Ray Tune a ``Stopper`` decides instead).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from grokray.metrics import OnsetTracker, liu_phase, weight_norm
from grokray.models import build_model
from grokray.optim import LangevinNoise, build_optimizer
from grokray.tasks import make_modular

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
