"""grokray: a study service for grokking research (Ray Tune + Optuna + MLflow)."""

from grokray.study import (
    Plot,
    Study,
    StudyError,
    categorical,
    grid,
    integer,
    loguniform,
    uniform,
)

__all__ = ["Plot", "Study", "StudyError", "categorical", "grid", "integer", "loguniform", "uniform"]
__version__ = "0.1.0"
