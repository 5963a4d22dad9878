"""A run's trained network, for analysis (Fourier features, circuits): each MLflow child run has
``weights.pt`` (its config and its final state dict), and ``grokray.load_model(run_id)`` rebuilds
the network from it::

    import grokray
    model, config = grokray.load_model("3f2c...")       # the child run's id, from the MLflow UI
    model(torch.tensor([[3, 5]]))                       # logits of 3 + 5 mod p
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

WEIGHTS_FILE = "weights.pt"


def save_weights(path: str | Path, config: Mapping[str, Any], state: Mapping[str, Any]) -> Path:
    """Write ``{"config": config, "state_dict": state}`` to ``path`` (torch.save)."""
    import torch

    path = Path(path)
    torch.save({"config": dict(config), "state_dict": dict(state)}, path)
    return path


def model_from(payload: Mapping[str, Any]) -> Any:
    """The network of a ``weights.pt`` payload, its weights loaded, in eval mode."""
    from grokray.models import build_model

    model = build_model(payload["config"])
    model.load_state_dict(payload["state_dict"])
    return model.eval()


def load_model(run_id: str, tracking_uri: str | None = None) -> tuple[Any, dict[str, Any]]:
    """(network, config) of the MLflow child run ``run_id``, from its ``weights.pt`` artifact."""
    import tempfile

    import torch
    from mlflow.tracking import MlflowClient

    from grokray import settings

    client = MlflowClient(tracking_uri or settings.current().tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(run_id, WEIGHTS_FILE, tmp)
        payload = torch.load(local, weights_only=False)
    return model_from(payload), payload["config"]
