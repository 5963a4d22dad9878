"""The single-model reference: one network, trained by the loop a user would write by hand in
plain PyTorch (``nn.functional`` losses, ``torch.optim``), bit for bit.

It is not the engine (``grokray.engine.run.ReplicaRun`` is: every Tune trial runs it). It is kept
for what needs a hand-written loop's exact arithmetic: ``train_replicas`` of one config that this
loop covers (``covers``: ``grokray trial`` of one seed), the tests that hold the engine to it, and
``make bench``. It reports through ``on_eval(record)``; ``on_eval`` returning True stops the run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from grokray.engine.device import Batches, resolve_device
from grokray.metrics import OnsetTracker, weight_norm
from grokray.models import build_model
from grokray.optim import LangevinNoise, build_optimizer
from grokray.outcomes import outcome_of, stop_reason
from grokray.tasks import make_modular

OnEval = Callable[[dict[str, Any]], bool | None]

# What the plain single-model loop ``train`` implements; anything else takes the batched engine.
_PLAIN = {
    "task": ("modular",),
    "model": ("mlp",),
    "regularizer": ("none",),
    "optimizer": ("adamw", "adam", "sgd"),
}
_PLAIN_OFF = ("corruption", "grokfast_lambda", "weight_noise", "norm_constraint")


def covers(config: Mapping[str, Any]) -> bool:
    """Whether ``train`` implements everything ``config`` asks for."""
    return all(config[k] in allowed for k, allowed in _PLAIN.items()) and not any(
        config[k] for k in _PLAIN_OFF
    )


def _loss_fn(kind: str, p: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if kind == "ce":
        return nn.functional.cross_entropy
    if kind == "mse":
        return lambda logits, labels: nn.functional.mse_loss(
            logits, nn.functional.one_hot(labels, p).to(logits.dtype)
        )
    raise ValueError(f"loss: got {kind!r}; allowed: ce, mse")


@torch.no_grad()
def _evaluate(
    model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, loss_fn: Callable[..., torch.Tensor]
) -> tuple[float, float]:
    logits = model(inputs)
    loss = loss_fn(logits, labels)
    accuracy = (logits.argmax(dim=1) == labels).float().mean()
    return float(loss), float(accuracy)


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
    batches = Batches(data.n_train, config["batch_size"], seed, device)
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
    ended = "budget"
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
            # grokked at the last step: the budget was spent (the engine says grokked)
            reason = stop_reason(
                diverged=diverged,
                grokked=onset.grokked and not finished,
                stop_on_grok=True,
                last_step=finished,
            )
            record.update(outcome_of(onset, record, reason, steps))
            record["n_train"], record["n_total"] = data.n_train, data.n_total
            history.append(record)
            stop = on_eval(record) if on_eval is not None else False
            if diverged:
                ended = "diverged"
                break
            if finished:
                break
            if stop:
                ended = "grokked" if onset.grokked else "stopped"
                break
        batch = batches.next()
        inputs = data.train_inputs if batch is None else data.train_inputs[batch]
        labels = data.train_labels if batch is None else data.train_labels[batch]
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(inputs), labels).backward()
        optimizer.step()
        noise()

    last = history[-1]
    outcome = outcome_of(onset, last, ended, steps)
    outcome.update(n_train=data.n_train, n_total=data.n_total, history=history)
    return outcome
