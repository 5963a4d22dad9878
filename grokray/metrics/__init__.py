"""Progress measures and grokking-onset detection (pure functions, no Ray, no MLflow)."""

from grokray.metrics.norms import weight_norm
from grokray.metrics.onset import OnsetTracker, liu_phase

__all__ = ["OnsetTracker", "liu_phase", "weight_norm"]
