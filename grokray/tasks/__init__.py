"""Datasets of a trial. Each task builds tensors from a resolved config (no Ray, no MLflow)."""

from grokray.tasks.modular import ModularData, make_modular

__all__ = ["ModularData", "make_modular"]
