"""Networks of a trial: ``build_model(config, pool)`` builds the one ``config['model']`` names.

Every model works under ``torch.func.vmap`` over stacked parameters (R seed replicas at once):
no in-place ops on parameters, no ``.item()``, no branch on data, every parameter 1-D or 2-D.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from grokray.config import MODEL_TASKS
from grokray.models.diagonal import Diagonal
from grokray.models.encoder import Encoder
from grokray.models.linear import DeepLinear
from grokray.models.mlp import MLP, scale_parameters
from grokray.models.transformer import Transformer
from grokray.tasks import Pool, make_pool

__all__ = ["MLP", "DeepLinear", "Diagonal", "Encoder", "Transformer", "build_model", "scale_parameters"]

#: Tasks whose inputs are rows of int64 token ids with nothing padded (two tokens per example).
TOKEN_PAIR_TASKS = ("modular", "matrix_completion")
#: Which tasks each model fits, from the config contract (``grokray.config.MODEL_TASKS``).
MODEL_HINT = "; ".join(
    f"{model}: {', '.join(task for task, models in MODEL_TASKS.items() if model in models)}"
    for model in dict.fromkeys(m for models in MODEL_TASKS.values() for m in models)
)


def build_model(config: Mapping[str, Any], pool: Pool | None = None) -> nn.Module:
    """The network named by ``config['model']`` for ``pool`` (made from config if None), init
    scaled by ``init_scale``. Draws its init from torch's global generator: seed it first."""
    if pool is None:
        pool = make_pool(config)
    name, task = config["model"], config["task"]
    width, depth, bias = config["width"], config["depth"], config["bias"]
    init = config.get("init", "default")
    if init != "default" and name != "mlp":
        raise ValueError(f"init: {init!r} is defined for model=mlp only; got model={name!r}")
    if name == "mlp" and (pool.input_dim or task in TOKEN_PAIR_TASKS):
        model: nn.Module = MLP(
            p=pool.vocab_size,
            width=width,
            depth=depth,
            embed_dim=config["embed_dim"],
            activation=config["activation"],
            bias=bias,
            encoding=config["encoding"],
            n_outputs=pool.n_outputs,
            input_dim=pool.input_dim,
            init=init,
        )
    elif name == "transformer" and task in TOKEN_PAIR_TASKS:
        model = Transformer(
            pool.vocab_size,
            pool.seq_len,
            pool.n_outputs,
            width,
            depth,
            config["heads"],
            bias=bias,
            layer_norm=config.get("layer_norm", "none"),
            causal=config.get("causal", True),
            activation=config.get("activation", "relu"),
        )
    elif name == "encoder" and (task == "text" or task in TOKEN_PAIR_TASKS):
        model = Encoder(
            pool.vocab_size,
            pool.seq_len,
            pool.n_outputs,
            width,
            depth,
            config["heads"],
            bias=bias,
            padding=task == "text",
        )
    elif name == "linear" and (pool.input_dim or task == "matrix_completion"):
        matrix_size = config["matrix_size"] if task == "matrix_completion" else 0
        model = DeepLinear(pool.input_dim, pool.n_outputs, width, depth, matrix_size=matrix_size)
    elif name == "diagonal" and pool.input_dim and pool.n_outputs == 1:  # features → one number
        model = Diagonal(pool.input_dim, depth)
    else:
        raise ValueError(f"model: {name!r} does not fit task {task!r}; {MODEL_HINT}")
    scale_parameters(model, config["init_scale"])
    return model
