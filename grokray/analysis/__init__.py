"""Analysis of finished studies: critical data size of grokking and its plots."""

from grokray.analysis.critical import (
    ESTIMATE_KEYS,
    LogisticBootstrap,
    bootstrap_curves,
    bootstrap_logistic,
    critical_data_size,
    critical_point,
    fit_logistic,
    format_estimates,
    grok_probability_by_size,
    split_groups,
)
from grokray.analysis.plots import plot_grok_probability, plot_validation_curves

__all__ = [
    "ESTIMATE_KEYS",
    "LogisticBootstrap",
    "bootstrap_curves",
    "bootstrap_logistic",
    "critical_data_size",
    "critical_point",
    "fit_logistic",
    "format_estimates",
    "grok_probability_by_size",
    "plot_grok_probability",
    "plot_validation_curves",
    "split_groups",
]
