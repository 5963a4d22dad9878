"""Networks of a trial."""

from grokray.models.mlp import MLP, build_model, scale_parameters

__all__ = ["MLP", "build_model", "scale_parameters"]
