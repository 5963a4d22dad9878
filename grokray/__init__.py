"""grokray: a study service for grokking research (Ray Tune + Optuna + MLflow)."""

from grokray.config import StudyError
from grokray.space import categorical, grid, integer, loguniform, uniform
from grokray.study import Plot, Study

__all__ = ["Plot", "Study", "StudyError", "categorical", "grid", "integer", "loguniform", "uniform"]
__version__ = "0.1.0"
