"""What a Tune trial is and reports: the configs of its seed replicas, the key of each replica's
run, the typed result it reports at every evaluation (``TrialResult``), the results replayed
after a resume, and the curves read back from the ``result.json`` Tune wrote.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from grokray.outcomes import OUTCOME_KEYS, curve_keys, objectives
from grokray.study import Study

#: The key of a packed Tune trial's config: the sampled values of each config it trains
#: (``Study(pack=...)``); a trial of one config (``pack=1``) has them at the top level.
PACK = "pack"


def pack_members(sampled: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The sampled values of each config a Tune trial trains, in replica order."""
    members = sampled.get(PACK)
    return [dict(m) for m in members] if isinstance(members, (list, tuple)) else [dict(sampled)]


def trial_config(study: Study, sampled: Mapping[str, Any]) -> dict[str, Any]:
    """The full config of a Tune trial's first config (its first replica)."""
    return study.resolve(pack_members(sampled)[0])


def seeds_per_config(study: Study) -> int:
    """Replicas per config: the study's seeds, one if ``seed`` is searched."""
    return 1 if "seed" in study.space else study.seeds


def replica_configs(study: Study, sampled: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One config per replica of a trial: for each of its configs, seed, seed+1, … (one replica
    if ``seed`` is searched). Replica ``r`` belongs to config ``r // seeds_per_config(study)``."""
    count = seeds_per_config(study)
    out = []
    for member in pack_members(sampled):
        config = study.resolve(member)
        out.extend({**config, "seed": config["seed"] + i, "replicas": count} for i in range(count))
    return out


def run_key(trial_id: str, replica: int) -> str:
    """The name of one replica of one Tune trial: its MLflow child run and trial-table row."""
    return f"{trial_id}-r{replica}"


def config_key(config: Mapping[str, Any]) -> str:
    """A replica's identity whichever Tune trial trains it: a hash of its full config (seed
    included). A config that a killed driver started and the restored experiment proposes again
    under a new trial id is the same run (``StudyTracker.start_trial``)."""
    text = json.dumps({k: config[k] for k in sorted(config)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def trial_result(
    latest: Mapping[int, Mapping[str, Any]], configs: list[Mapping[str, Any]], per_config: int = 0
) -> dict[str, Any]:
    """What a trial reports to Tune: every replica's latest record, the objectives averaged over
    replicas, and ``stop_reason`` = ``running`` while any replica still trains. ``configs``: each
    replica's config; ``per_config``: replicas per config of a packed trial (its ``per_config``)."""
    records = [dict(latest[r]) for r in sorted(latest)]
    own = [configs[r["replica"]] for r in records]
    scores = [
        objectives({**r, "train_fraction": c["train_fraction"]}, c["steps"])
        for r, c in zip(records, own, strict=True)
    ]
    result: dict[str, Any] = {key: sum(score[key] for score in scores) / len(scores) for key in scores[0]}
    if per_config:
        result["per_config"] = per_config
    result.update(
        step=max(r["step"] for r in records),
        replicas={str(r["replica"]): {k: v for k, v in r.items() if v is not None} for r in records},
        n_grokked=sum(bool(r["grokked"]) for r in records),
        stop_reason="running" if any(r["stop_reason"] == "running" for r in records) else "done",
    )
    return result


def replayed_results(
    histories: list[list[dict[str, Any]]],
    after_step: int,
    configs: list[Mapping[str, Any]],
    per_config: int = 0,
) -> list[dict[str, Any]]:
    """The trial results of every evaluation after ``after_step``, rebuilt from the replicas'
    histories in a checkpoint as ``run_trial`` reported them."""
    steps = sorted({r["step"] for history in histories for r in history if r["step"] > after_step})
    results = []
    for step in steps:
        latest = {}
        for row, history in enumerate(histories):
            upto = [record for record in history if record["step"] <= step]
            if upto:
                latest[row] = upto[-1]
        results.append(trial_result(latest, configs, per_config))
    return results


def replica_rows(
    study: Study, trial_id: str, sampled: Mapping[str, Any], result: Mapping[str, Any]
) -> list[dict]:
    """One row per replica of a trial: its config and the outcome keys of its latest record."""
    replicas = result.get("replicas") or {}
    rows = []
    for replica, config in enumerate(replica_configs(study, sampled)):
        record = replicas.get(str(replica), {})
        row = {
            "trial_id": run_key(trial_id, replica),
            "tune_trial_id": trial_id,
            "replica": replica,
            **config,
        }
        row.update({k: record.get(k) for k in (*OUTCOME_KEYS, "doshi_phase", "n_train", "n_total")})
        # the last value of every other curve (norms, recovery error, clean train accuracy, ...)
        for key in curve_keys(record):
            row.setdefault(f"final_{key}", record[key])
        rows.append(row)
    return rows


def trial_curves(local_path: str | None, trial_id: str, filesystem: Any = None) -> dict[str, pd.DataFrame]:
    """Each replica's evaluation records, read back from the ``result.json`` Tune wrote (a local
    directory, or a path on ``filesystem``)."""
    if not local_path:
        return {}
    if filesystem is not None:
        try:
            with filesystem.open_input_stream(f"{local_path}/result.json") as stream:
                text = stream.read().decode()
        except (FileNotFoundError, OSError):
            return {}
    else:
        path = Path(local_path) / "result.json"
        if not path.exists():
            return {}
        text = path.read_text()
    rows: dict[str, list[dict[str, Any]]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        for replica, record in (json.loads(line).get("replicas") or {}).items():
            rows.setdefault(run_key(trial_id, int(replica)), []).append(
                {"step": record.get("step"), **{k: record.get(k) for k in curve_keys(record)}}
            )
    frames = {}
    for key, records in rows.items():
        frame = (
            pd.DataFrame(records).drop_duplicates("step", keep="last").sort_values("step", ignore_index=True)
        )
        frame.insert(0, "trial_id", key)
        frames[key] = frame
    return frames


def run_name(
    study: Study, config: Mapping[str, Any], key: str, record: Mapping[str, Any] | None = None
) -> str:
    """A child run's name in the MLflow runs table: its size and seed (and the other searched
    values), its outcome once known, its key: ``f=0.3 seed=1 grokked@900 [<trial>-r1]``."""
    size_key = study.size_key() or "train_fraction"
    short = {"train_fraction": "f", "train_size": "n"}.get(size_key, size_key)
    parts = [f"{short}={config[size_key]:.3g}" if size_key in config else "", f"seed={config['seed']}"]
    for name in study.searched_names():
        if name not in (size_key, "seed") and name in config:
            value = config[name]
            parts.append(f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}")
    if record is not None:
        reason = record.get("stop_reason")
        if record.get("grokked"):
            parts.append(f"grokked@{record.get('grokking_step')}")
        elif reason == "budget" and record.get("grok_unconfirmed"):
            parts.append("unconfirmed")  # above the threshold at the budget, patience not reached
        elif reason in ("budget", "diverged", "dominated", "failed"):
            parts.append({"budget": "no grok"}.get(reason, reason))
    return " ".join(p for p in parts if p) + f" [{key}]"
