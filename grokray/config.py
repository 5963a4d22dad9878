"""The config contract: every config name, its type, default and allowed values, the
domain lists (tasks, ops, models and which task each fits, optimizers, regularizers) and the
cross-field rules of one resolved config. ``StudyError`` is the one-line error of bad input.

Imports neither torch, Ray nor MLflow: a wrong value fails in well under a second, before
anything starts. The builders (``grokray.tasks``, ``grokray.models``, ``grokray.optim``) take
their name lists from here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from grokray.settings import PROJECT_ROOT


class StudyError(ValueError):
    """A study or flag is wrong. ``str(err)`` is the one line the CLI prints (exit code 2)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


# ---------------------------------------------------------------------------------------------
# The config contract (the README's "The config contract"): every name, type, default and range.

OPS = ("+", "-", "*", "/", "x^2+y^2", "x^2+xy+y^2", "x^3+xy^2+y")
TASKS = ("modular", "sparse_recovery", "matrix_completion", "digits", "text")
MODELS = ("mlp", "transformer", "linear", "encoder", "diagonal")
OPTIMIZERS = ("adamw", "adam", "sgd", "wand")
REGULARIZERS = ("none", "l1", "l2", "nuclear", "spectral_entropy")
#: Which models fit which task (``grokray.models.build_model`` refuses the rest the same way).
MODEL_TASKS = {
    "modular": ("mlp", "transformer", "encoder"),
    "sparse_recovery": ("mlp", "linear", "diagonal"),
    "matrix_completion": ("mlp", "transformer", "encoder", "linear"),
    "digits": ("mlp", "linear"),
    "text": ("encoder",),
}
# What the trainer implements today; the rest of the contract is reserved and rejected clearly.
IMPLEMENTED = {
    "task": TASKS,
    "op": OPS,
    "model": MODELS,
    "optimizer": OPTIMIZERS,
    "activation": ("relu", "gelu", "quadratic"),
    "encoding": ("embed", "onehot"),
    "regularizer": REGULARIZERS,
    "loss": ("ce", "mse"),
}


@dataclasses.dataclass(frozen=True)
class Param:
    """One config name: its type, default and allowed range or choices."""

    kind: type
    default: Any
    low: float | None = None  # inclusive unless low_open
    high: float | None = None  # inclusive
    low_open: bool = False
    choices: tuple[Any, ...] | None = None
    help: str = ""

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(str(c) for c in self.choices)
        kind = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[self.kind]
        if self.low is None and self.high is None:
            return kind
        lo = "(" if self.low_open else "["
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        hi = "]" if self.high is not None else ")"
        return f"{kind} in {lo}{low}, {high}{hi}"


def _choices(name: str) -> tuple[Any, ...]:
    return IMPLEMENTED[name]


PARAMS: dict[str, Param] = {
    # task
    "task": Param(str, "modular", choices=_choices("task")),
    "op": Param(str, "+", choices=_choices("op")),
    "p": Param(int, 59, low=2, high=1000),
    "train_fraction": Param(float, 0.5, low=0.0, high=1.0, low_open=True),
    "train_size": Param(int, 0, low=0, help="absolute training examples; 0 = use train_fraction"),
    "corruption": Param(
        float, 0.0, low=0.0, high=1.0, help="label corruption ξ: the first ξ share of training labels random"
    ),
    "encoding": Param(str, "embed", choices=_choices("encoding")),
    "dim": Param(int, 100, low=1, high=100000, help="sparse recovery: signal dimension n"),
    "sparsity": Param(int, 5, low=1, high=100000, help="sparse recovery: non-zeros s of the signal"),
    "matrix_size": Param(int, 10, low=2, high=4096, help="matrix completion: the matrix is m × m"),
    "rank": Param(int, 2, low=1, high=4096, help="matrix completion: rank of the ground truth"),
    "test_size": Param(int, 1000, low=1, high=1000000, help="held-out examples of generated tasks"),
    "data_path": Param(str, "", help="text: a Parquet or CSV file with `text` and `label` columns"),
    "max_len": Param(int, 64, low=2, high=4096, help="text: tokens per example (truncated / padded)"),
    "vocab_size": Param(int, 2000, low=8, high=1000000, help="text: most frequent words kept"),
    # model
    "model": Param(str, "mlp", choices=_choices("model")),
    "width": Param(int, 128, low=1, high=65536),
    "depth": Param(int, 2, low=1, high=64),
    "embed_dim": Param(int, 32, low=1, high=65536),
    "heads": Param(int, 4, low=1, high=256, help="transformer / encoder attention heads"),
    "activation": Param(str, "relu", choices=_choices("activation")),
    "bias": Param(bool, True),
    "init_scale": Param(float, 1.0, low=0.0, low_open=True),
    "init": Param(
        str,
        "default",
        choices=("default", "doshi"),
        help="default: PyTorch's init; doshi: Doshi et al.'s init of the quadratic MLP",
    ),
    "causal": Param(bool, True, help="transformer: causal attention mask"),
    "layer_norm": Param(
        str, "none", choices=("none", "pre", "post"), help="transformer: LayerNorm placement"
    ),
    # optimizer
    "optimizer": Param(str, "adamw", choices=_choices("optimizer")),
    "lr": Param(float, 1e-3, low=0.0, low_open=True),
    "weight_decay": Param(float, 1.0, low=0.0),
    "beta1": Param(float, 0.9, low=0.0, high=1.0),
    "beta2": Param(float, 0.98, low=0.0, high=1.0),
    "momentum": Param(float, 0.9, low=0.0, high=1.0),
    "temperature": Param(float, 0.0, low=0.0),
    "friction": Param(float, 0.5, low=0.0, high=1.0, help="wand: friction c_f"),
    "wand_beta": Param(
        float, 700.0, low=0.0, help="wand: entropy bias β·(x − L0)² above L0 (700: measured in glass.py)"
    ),
    "wand_l0": Param(float, -8.0, help="wand: L0 of the entropy bias, in ln L_train"),
    "wand_wl_height": Param(float, 0.01, low=0.0, help="wand: Wang–Landau deposit height F_WL; 0 = off"),
    "wand_wl_ramp": Param(int, 1000, low=0, help="wand: steps t_WL of f_WL's linear ramp, then 1/t"),
    "grokfast_alpha": Param(float, 0.98, low=0.0, high=1.0, help="Grokfast EMA decay"),
    "grokfast_lambda": Param(float, 0.0, low=0.0, help="Grokfast amplification; 0 = off"),
    # regularizer
    "regularizer": Param(str, "none", choices=_choices("regularizer")),
    "reg_strength": Param(float, 0.0, low=0.0),
    "weight_noise": Param(float, 0.0, low=0.0, help="forward pass at θ + δ·N(0, 1); 0 = off"),
    "norm_constraint": Param(float, 0.0, low=0.0, help="rescale to this global ℓ2 norm each step; 0 = off"),
    # training
    "loss": Param(str, "ce", choices=_choices("loss")),
    "steps": Param(int, 10000, low=1),
    "batch_size": Param(int, 0, low=0, help="0 = full batch"),
    "eval_every": Param(int, 100, low=1),
    "seed": Param(int, 0, low=0, high=2**31 - 1),
    "replicas": Param(int, 1, low=1, high=4096, help="seed replicas trained as one batch; set by seeds="),
    "device": Param(str, "auto", choices=("auto", "cpu", "cuda")),
    # onset
    "memorize_threshold": Param(float, 0.99, low=0.0, high=1.0, low_open=True),
    "grok_threshold": Param(float, 0.99, low=0.0, high=1.0, low_open=True),
    "memorize_metric": Param(
        str,
        "train_acc",
        choices=("train_acc", "train_loss"),
        help="curve of memorization onset: an accuracy (≥ threshold) or a loss (≤ threshold)",
    ),
    "grok_metric": Param(
        str,
        "val_acc",
        choices=("val_acc", "val_loss", "recovery_error"),
        help="curve of generalization onset: an accuracy (≥ threshold) or a loss / error (≤ threshold)",
    ),
    "patience": Param(int, 2, low=1),
    # progress measures
    "measures": Param(
        str,
        "norms",
        choices=("none", "norms", "all"),
        help="norms: ℓ0/ℓ1/ℓ2/nuclear each evaluation; all: also spectral entropy, effective rank, "
        "Fourier IPR and compression complexity on a log-spaced schedule",
    ),
    "complexity_epsilon": Param(
        float,
        1.0,
        low=0.0,
        low_open=True,
        help="compression complexity: tolerance ε on |L(θ̂) − L(θ)| (DeMoss et al.'s main plots: 1)",
    ),
}


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, math.isqrt(n) + 1))


def unknown_name(name: str, field: str | None = None, extra: Sequence[str] = ()) -> StudyError:
    """The error of a name that is not in the contract, with the nearest one if there is one
    (``weight_decy``: did you mean weight_decay?)."""
    import difflib

    known = sorted({*PARAMS, *extra})
    near = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    hint = f" (did you mean {near[0]}?)" if near else ""
    return StudyError(field or name, f"unknown parameter{hint}; allowed: {', '.join(known)}")


def coerce(name: str, value: Any) -> Any:
    """Check one config value against the contract; return it in its canonical type."""
    if name not in PARAMS:
        raise unknown_name(name)
    spec = PARAMS[name]
    if spec.kind is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            value = value.lower() in ("true", "1")
        if not isinstance(value, bool):
            raise StudyError(name, f"got {value!r}; allowed: {spec.describe()}")
    elif spec.kind is int:
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                raise StudyError(name, f"got {value!r}; allowed: {spec.describe()}") from None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise StudyError(name, f"got {value!r}; allowed: {spec.describe()}")
    elif spec.kind is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise StudyError(name, f"got {value!r}; allowed: {spec.describe()}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise StudyError(name, f"got {value!r}; allowed: {spec.describe()}")
        value = float(value)
        if not math.isfinite(value):
            raise StudyError(name, f"got {value!r}; allowed: {spec.describe()}")
    elif spec.kind is str:
        if not isinstance(value, str):
            raise StudyError(name, f"got {value!r}; allowed: {spec.describe()}")
    if spec.choices is not None and value not in spec.choices:
        reserved = ""
        if name in IMPLEMENTED and value in {
            "task": TASKS,
            "op": OPS,
            "model": MODELS,
            "optimizer": OPTIMIZERS,
            "regularizer": REGULARIZERS,
            "activation": ("quadratic",),
        }.get(name, ()):
            reserved = " (reserved by the config contract, not built yet)"
        raise StudyError(name, f"got {value!r}{reserved}; allowed: {spec.describe()}")
    if spec.kind in (int, float):
        too_low = spec.low is not None and (value <= spec.low if spec.low_open else value < spec.low)
        too_high = spec.high is not None and value > spec.high
        if too_low or too_high:
            raise StudyError(name, f"got {value!r}; allowed: {spec.describe()}")
    return value


TEXT_COLUMNS = ("text", "label")


def find_data_file(data_path: str) -> Path | None:
    """A dataset file as given (absolute, or relative to the working directory), else relative to
    the project root, where ``data/`` ships; None if neither is a file. The same rule at
    validation and in the trials (whose working directory Ray sets)."""
    path = Path(data_path).expanduser()
    if path.is_file():
        return path
    if not path.is_absolute() and (PROJECT_ROOT / path).is_file():
        return PROJECT_ROOT / path
    return None


def _check_text_dataset(path: str, train_size: int = 0) -> None:
    """The text task's dataset: an existing .csv or .parquet file with ``text`` and ``label`` columns.

    Only the header (CSV) or the schema (Parquet) is read, so a wrong path fails in a second, before
    Ray starts, instead of in every trial.
    """
    allowed = "a .csv or .parquet file with columns text and label"
    if not path:
        raise StudyError("data_path", f"task=text needs a dataset; allowed: {allowed}")
    file = find_data_file(path)
    if file is None:
        raise StudyError("data_path", f"no such file: {path}; allowed: {allowed}")
    suffix = file.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise StudyError("data_path", f"got {path} ({suffix or 'no suffix'}); allowed: {allowed}")
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            columns = list(pq.read_schema(file).names)
        else:
            import pyarrow.csv as pacsv

            columns = list(pacsv.open_csv(file).schema.names)
    except Exception as err:  # pyarrow's ArrowInvalid and friends: not a readable table
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise StudyError("data_path", f"cannot read {path} ({reason}); allowed: {allowed}") from None
    missing = [c for c in TEXT_COLUMNS if c not in columns]
    if missing:
        raise StudyError(
            "data_path",
            f"{path} lacks column {', '.join(missing)} (has: {', '.join(columns) or 'none'}); "
            f"allowed: {allowed}",
        )
    rows, candidates = text_rows(file)
    if rows < 2 or candidates < 1:
        raise StudyError(
            "data_path",
            f"{path} has {rows} rows; allowed: at least 2 (one held out for test, one to train on)",
        )
    if train_size > candidates:  # every trial would silently train on fewer rows than asked
        raise StudyError(
            "train_size",
            f"got {train_size}; allowed: at most {candidates}, the training rows of {path} "
            f"({rows} rows, {rows - candidates} held out for test)",
        )


def text_rows(file: Path) -> tuple[int, int]:
    """(rows, rows a training set may be drawn from) of a text dataset, as ``grokray.tasks.text``
    splits it: the rows whose ``split`` column says test, else 20 % of them, are held out."""
    if file.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(file, columns=[c for c in ("split",) if c in pq.read_schema(file).names])
    else:
        import pyarrow.csv as pacsv

        table = pacsv.read_csv(file)
    rows = table.num_rows
    if "split" in table.column_names:
        test = sum(str(v).strip().lower() == "test" for v in table.column("split").to_pylist())
        return rows, rows - test if test else 0  # a split column without test rows: refused
    return rows, rows - text_test_rows(rows)


#: The share of a text dataset's rows held out as its test part when it has no ``split`` column.
TEXT_TEST_FRACTION = 0.2


def text_test_rows(n_rows: int) -> int:
    """How many rows of a text dataset without a ``split`` column are held out for test: 20 %,
    at least one, and at least one row left to train on."""
    return min(max(1, round(TEXT_TEST_FRACTION * n_rows)), n_rows - 1)


def _check_task_and_model(config: Mapping[str, Any]) -> None:
    """Rules of the generated tasks, digits, and the model/task fit (modular and text: above)."""
    task, model = config.get("task", "modular"), config.get("model", "mlp")
    if task == "sparse_recovery" and config["sparsity"] > config["dim"]:
        raise StudyError("sparsity", f"got {config['sparsity']}; allowed: at most dim={config['dim']}")
    if task == "matrix_completion":
        m = config["matrix_size"]
        if config["rank"] > m:
            raise StudyError("rank", f"got {config['rank']}; allowed: at most matrix_size={m}")
        if config["train_size"] >= m * m:
            raise StudyError("train_size", f"got {config['train_size']}; allowed: 0 or below {m * m} entries")
    if task == "digits" and config["train_size"] >= 1797:
        raise StudyError("train_size", f"got {config['train_size']}; allowed: 0 or below 1797 (digits)")
    if task in ("sparse_recovery", "matrix_completion") and config["corruption"] > 0:
        raise StudyError("corruption", f"got {config['corruption']}; {task} is a regression: allowed: 0")
    if model in ("transformer", "encoder") and config["width"] % config["heads"]:
        raise StudyError("heads", f"got {config['heads']}; allowed: a divisor of width={config['width']}")
    if task in MODEL_TASKS and model not in MODEL_TASKS[task]:
        raise StudyError("model", f"got {model!r} for task {task}; allowed: {', '.join(MODEL_TASKS[task])}")


def check_config(config: Mapping[str, Any]) -> None:
    """Cross-field rules of one fully resolved config."""
    if config.get("task") == "text":
        _check_text_dataset(str(config.get("data_path", "")), int(config.get("train_size", 0)))
    if config.get("task", "modular") == "modular":
        p, op = config["p"], config["op"]
        if op == "/" and not _is_prime(p):
            raise StudyError("p", f"got {p}; division needs a prime modulus (e.g. 59, 97, 113)")
        n_total = p * (p - 1) if op == "/" else p * p
        if config["train_size"] >= n_total:
            raise StudyError(
                "train_size", f"got {config['train_size']}; allowed: 0 or below {n_total} (p={p})"
            )
    _check_task_and_model(config)
    if config["memorize_threshold"] > 1 or config["grok_threshold"] > 1:
        raise StudyError("grok_threshold", "thresholds are in (0, 1] (an accuracy, or a loss / error bound)")
    if config["grok_metric"] == "recovery_error" and config["task"] not in (
        "sparse_recovery",
        "matrix_completion",
    ):
        raise StudyError(
            "grok_metric",
            f"got 'recovery_error' for task {config['task']}; allowed there: val_acc, val_loss "
            "(recovery_error exists for sparse_recovery and matrix_completion)",
        )
    if config["eval_every"] > config["steps"]:
        raise StudyError(
            "eval_every", f"got {config['eval_every']}; allowed: at most steps={config['steps']}"
        )


def default_config() -> dict[str, Any]:
    return {name: spec.default for name, spec in PARAMS.items()}


# Names that mean something only under some value of another name: a modular study's run logs no
# ``dim`` or ``vocab_size``. (name, the names it needs, the values they must take)
_APPLIES: dict[str, tuple[str, tuple[Any, ...]]] = {
    "op": ("task", ("modular",)),
    "p": ("task", ("modular",)),
    "dim": ("task", ("sparse_recovery",)),
    "sparsity": ("task", ("sparse_recovery",)),
    "matrix_size": ("task", ("matrix_completion",)),
    "rank": ("task", ("matrix_completion",)),
    "test_size": ("task", ("sparse_recovery", "matrix_completion")),
    "data_path": ("task", ("text",)),
    "max_len": ("task", ("text",)),
    "vocab_size": ("task", ("text",)),
    "encoding": ("model", ("mlp",)),
    "embed_dim": ("model", ("mlp",)),
    "init": ("model", ("mlp",)),
    "activation": ("model", ("mlp", "transformer")),
    "heads": ("model", ("transformer", "encoder")),
    "causal": ("model", ("transformer",)),
    "layer_norm": ("model", ("transformer",)),
    "beta1": ("optimizer", ("adamw", "adam")),
    "beta2": ("optimizer", ("adamw", "adam")),
    "momentum": ("optimizer", ("sgd",)),
    "friction": ("optimizer", ("wand",)),
    "wand_beta": ("optimizer", ("wand",)),
    "wand_l0": ("optimizer", ("wand",)),
    "wand_wl_height": ("optimizer", ("wand",)),
    "wand_wl_ramp": ("optimizer", ("wand",)),
    "complexity_epsilon": ("measures", ("all",)),
}


def applicable(config: Mapping[str, Any], searched: Sequence[str] = ()) -> dict[str, Any]:
    """The names of a resolved config that apply to it: another task's, model's or optimizer's
    names left out, ``reg_strength`` only with a regularizer, ``grokfast_alpha`` only with
    Grokfast on, one of ``train_size`` / ``train_fraction`` (the one that sets the size), no
    ``corruption`` for a regression task. What an MLflow run records of its config. A name whose
    rule depends on a ``searched`` name is kept (it applies to some of the study's trials)."""
    searched = set(searched)
    out = {}
    for name, value in config.items():
        rule = _APPLIES.get(name)
        if rule is not None and rule[0] not in searched and config.get(rule[0]) not in rule[1]:
            continue
        out[name] = value
    if config.get("regularizer") == "none" and "regularizer" not in searched:
        out.pop("reg_strength", None)
    if not config.get("grokfast_lambda") and "grokfast_lambda" not in searched:
        out.pop("grokfast_alpha", None)
    if not searched & {"train_size", "train_fraction"}:
        out.pop("train_fraction" if config.get("train_size") else "train_size", None)
    if config.get("task") in ("sparse_recovery", "matrix_completion"):
        out.pop("corruption", None)
    return out
