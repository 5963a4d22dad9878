"""Training, with no Ray and no MLflow: ``train_replicas(configs)`` trains one network per config
at once and returns one outcome per config.

- ``run.py``: ``ReplicaRun``, the engine (the loop, the outcome of each evaluation, checkpoints);
- ``step.py``: one training step; ``measures.py``: what an evaluation measures;
- ``reference.py``: the single-model reference loop (plain PyTorch, bit for bit), for one config
  it covers, the tests and the benchmark;
- ``split.py``: ``FittingRun``, what a Tune trial trains: a pack in parts of similar training-set
  size (less padding), split further when it does not fit in device memory;
- ``device.py``: device, minibatch order, split masks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from grokray.engine import reference
from grokray.engine.run import ReplicaRun

__all__ = ["SHARED_KEYS", "ReplicaRun", "reference", "train_replicas"]

SHARED_KEYS = (
    "task", "op", "p", "dim", "sparsity", "matrix_size", "rank", "test_size", "data_path", "max_len",
    "vocab_size", "model", "width", "depth", "heads", "embed_dim", "encoding", "activation", "bias",
    "loss", "steps", "eval_every", "batch_size", "optimizer", "beta1", "beta2", "momentum", "device",
    "regularizer", "measures", "complexity_epsilon", "causal", "layer_norm",
)  # fmt: skip


def train_replicas(
    configs: Sequence[Mapping[str, Any]],
    on_eval: Callable[[list[dict[str, Any]]], None] | None = None,
    stop_on_grok: bool = True,
    batched: bool | None = None,
    engine: str | None = None,
) -> list[dict[str, Any]]:
    """Train one network per config at once; return one outcome per config, in order.

    Configs share shapes and the step schedule (``SHARED_KEYS``) and may differ in seed, lr,
    weight decay, init scale, temperature, training fraction/size, corruption, regularizer
    strength and onset thresholds. Each replica keeps its own split (a mask over the task's
    shared example pool), onset tracker and outcome; a replica that is done (grokked with
    ``stop_on_grok``, diverged) is dropped from the batch. ``on_eval`` gets the records of the
    replicas still training at each evaluation, each with ``replica`` = its index in ``configs``.
    Several configs train as a Tune trial trains them (``split.FittingRun``: on a CPU, full-batch
    replicas of very different training-set sizes in parts of similar size). One config takes the
    single-model reference (``reference.train``, a hand-written loop's arithmetic), unless
    ``batched`` or the config uses what only the engine has (then ``grokray trial`` and a Tune
    trial run the same arithmetic).
    """
    configs = [dict(c) for c in configs]
    for key in SHARED_KEYS:
        values = {str(c[key]) for c in configs}
        if len(values) > 1:
            raise ValueError(f"{key}: replicas of one trial must share it, got {sorted(values)}")
    if len(configs) == 1 and not batched and reference.covers(configs[0]):

        def single(record: dict[str, Any]) -> bool:
            record["replica"] = 0
            if on_eval is not None:
                on_eval([record])
            return stop_on_grok and bool(record["grokked"])

        outcome = reference.train(configs[0], on_eval=single)
        outcome["replica"] = 0
        return [outcome]
    from grokray.engine.split import FittingRun  # what a Tune trial trains: parts of similar size

    return FittingRun(configs, stop_on_grok, engine).run(on_eval)
