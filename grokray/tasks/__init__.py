"""Datasets of a trial. Each task builds a ``Pool`` from a resolved config (no Ray, no MLflow);
``make_pool`` dispatches on ``config['task']`` over the tasks of the config contract
(``grokray.config.TASKS``). Task modules import ``pool.py`` only, never this package's API."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from grokray.config import TASKS
from grokray.tasks.modular import ModularData, make_modular
from grokray.tasks.pool import DATA_SEED, Pool, corrupt, split

__all__ = ["BUILDERS", "DATA_SEED", "ModularData", "Pool", "corrupt", "make_modular", "make_pool", "split"]

#: task name → (module, function) of its pool builder, imported when used: each task pulls in what
#: it needs (pandas, scikit-learn) only then.
BUILDERS = {
    "modular": ("grokray.tasks.modular", "modular_pool"),
    "sparse_recovery": ("grokray.tasks.sparse", "sparse_pool"),
    "matrix_completion": ("grokray.tasks.matrix", "matrix_pool"),
    "digits": ("grokray.tasks.digits", "digits_pool"),
    "text": ("grokray.tasks.text", "text_pool"),
}


def make_pool(config: Mapping[str, Any]) -> Pool:
    """The pool of ``config['task']``; depends only on non-seed keys (same pool for every replica)."""
    task = config["task"]
    if task not in BUILDERS:
        raise ValueError(f"task: got {task!r}; allowed: {', '.join(TASKS)}")
    module, function = BUILDERS[task]
    return getattr(importlib.import_module(module), function)(config)
