"""Datasets of a trial. Each task builds a ``Pool`` from a resolved config (no Ray, no MLflow)."""

from grokray.tasks.modular import ModularData, make_modular
from grokray.tasks.pool import DATA_SEED, Pool, corrupt, make_pool, split

__all__ = ["DATA_SEED", "ModularData", "Pool", "corrupt", "make_modular", "make_pool", "split"]
