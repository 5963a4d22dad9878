"""grokray: a study service for grokking research (Ray Tune + Optuna + MLflow)."""

from grokray.study import (
    Study,
    StudyError,
    categorical,
    grid,
    integer,
    loguniform,
    uniform,
)

__all__ = ["Study", "StudyError", "categorical", "grid", "integer", "loguniform", "uniform"]
__version__ = "0.1.0"
