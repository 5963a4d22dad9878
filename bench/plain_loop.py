"""The reference of the benchmark: one model trained by the loop a user would write by hand.

Same data (``make_modular``), same network (``build_model``), same optimizer settings as a grokray
trial, but none of grokray's machinery: no onset tracker, no records, no weight norm, no noise
hook. ``bench.bench`` divides grokray's throughput by this loop's, measured in the same process,
interleaved, so that the machine's load cancels out of the ratio.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from grokray.engine.device import resolve_device
from grokray.models import build_model
from grokray.tasks import make_modular

WARMUP_STEPS = 20


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_loop(config: Mapping[str, Any], steps: int, warmup: int = WARMUP_STEPS) -> float:
    """Model-steps per second of ``steps`` full-batch AdamW steps on ``config``'s task and network.

    Only the loop is timed: data, model and optimizer are built first, and ``warmup`` steps (plus
    one evaluation) run untimed. Train and val accuracy are evaluated with ``.item()`` every
    ``config['eval_every']`` steps inside the timed loop, as a user watching for grokking would.
    """
    device = resolve_device(config["device"])
    data = make_modular(
        config["p"], config["op"], config["train_fraction"], config["train_size"], config["seed"]
    )
    x, y = data.train_inputs.to(device), data.train_labels.to(device)
    x_val, y_val = data.val_inputs.to(device), data.val_labels.to(device)
    torch.manual_seed(config["seed"])
    model = build_model(config).to(device)
    opt = torch.optim.AdamW(
        model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"], betas=(0.9, 0.98)
    )
    eval_every = config["eval_every"]

    def train_step() -> None:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    def evaluate() -> tuple[float, float]:
        with torch.no_grad():
            train_acc = (model(x).argmax(dim=1) == y).float().mean().item()
            val_acc = (model(x_val).argmax(dim=1) == y_val).float().mean().item()
        return train_acc, val_acc

    for _ in range(warmup):
        train_step()
    evaluate()
    _sync(device)

    started = time.perf_counter()
    for step in range(steps):
        train_step()
        if (step + 1) % eval_every == 0:
            evaluate()
    _sync(device)
    return steps / (time.perf_counter() - started)
