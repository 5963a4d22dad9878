"""grokray: a study service for grokking research (Ray Tune + Optuna + MLflow)."""

from grokray.config import StudyError
from grokray.space import categorical, grid, integer, loguniform, uniform
from grokray.study import Plot, Study

__all__ = [
    "Plot",
    "Study",
    "StudyError",
    "categorical",
    "grid",
    "integer",
    "load_model",
    "loguniform",
    "uniform",
]


def load_model(run_id: str, tracking_uri: str | None = None):  # type: ignore[no-untyped-def]
    """(network, config) of an MLflow child run, from its ``weights.pt`` (``grokray.weights``)."""
    from grokray.weights import load_model as load

    return load(run_id, tracking_uri)


__version__ = "0.1.0"
