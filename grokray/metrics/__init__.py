"""Progress measures and grokking-onset detection (pure functions, no Ray, no MLflow)."""

from grokray.metrics.complexity import compressed_complexity, lossy_compress, naive_bytes
from grokray.metrics.fourier import ipr, mlp_neuron_weights, neuron_ipr, prune_by_ipr
from grokray.metrics.norms import norm_measures, weight_matrices, weight_norm
from grokray.metrics.onset import OnsetTracker
from grokray.metrics.schedule import is_log_step
from grokray.metrics.spectral import (
    effective_rank,
    spectral_entropy,
    spectral_entropy_penalty,
    spectral_measures,
)

__all__ = [
    "OnsetTracker",
    "compressed_complexity",
    "effective_rank",
    "ipr",
    "is_log_step",
    "lossy_compress",
    "mlp_neuron_weights",
    "naive_bytes",
    "neuron_ipr",
    "norm_measures",
    "prune_by_ipr",
    "spectral_entropy",
    "spectral_entropy_penalty",
    "spectral_measures",
    "weight_matrices",
    "weight_norm",
]
