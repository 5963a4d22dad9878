"""The 10,000-config study of issue 14 (``bench/scale_study.py``): wall clock, and the driver's own
time per config, against a hand-written loop over the same kind of configs.

Run ``python -m bench.scale [--configs N] [--server] [--json PATH]`` (or ``make bench
ARGS="--scale N"``). The study runs as its users run it (``python -m grokray run``, local Ray, MLflow
in a SQLite file, or with ``--server`` a real ``mlflow server`` on PostgreSQL) in a temporary directory; the
driver process reports its own CPU time (``getrusage``: Ray's processes and the trials' workers
are not in it), and the tracking writer's process its own (``grokray/tune/writer.py``; none with
``GROKRAY_TRACKING_WRITER=inline``, where the driver makes the MLflow calls).
The plain loop builds each config's data, network and optimizer and trains its 50
steps, for ``--plain`` configs drawn from the same space, timed whole and scaled to the study's
count: what the same configs cost with no scheduling, search or tracking at all.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
STUDY_FILE = REPO / "bench" / "scale_study.py"
WALL_TARGET_S = 600.0  # "10,000-config study: <= 10 minutes here"
DRIVER_TARGET_MS = 20.0  # "driver time <= 20 ms per config"


def _driver(argv: Sequence[str]) -> int:
    """``python -m grokray`` in this process, then its CPU time (user + system) to $SCALE_RUSAGE."""
    from grokray.cli import main

    started = time.perf_counter()
    try:
        code = main(list(argv))
    finally:
        from grokray.tune.writer import CLOSED_CPU

        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = usage.ru_utime + usage.ru_stime
        writer = sum(CLOSED_CPU) if CLOSED_CPU else None  # the tracking writer's process, if one ran
        Path(os.environ["SCALE_RUSAGE"]).write_text(
            json.dumps({"cpu_s": cpu, "writer_cpu_s": writer, "wall_s": time.perf_counter() - started})
        )
    return code


def plain_seconds(count: int, seed: int = 0) -> float:
    """Seconds of a hand-written loop over ``count`` configs of the study's space: each built and
    trained its ``steps`` (full batch, AdamW), evaluated once at the end."""
    import torch
    import torch.nn.functional as F

    from bench.scale_study import study
    from grokray.config import default_config
    from grokray.models import build_model
    from grokray.tasks import make_modular

    rng = random.Random(seed)
    base = {**default_config(), **study.config, "device": "cpu", "seed": 0}
    started = time.perf_counter()
    for _ in range(count):
        config = {
            **base,
            "train_fraction": rng.uniform(0.1, 0.9),
            "lr": 10 ** rng.uniform(-3, -2),
            "weight_decay": 10 ** rng.uniform(-2, 0),
            "init_scale": rng.uniform(0.5, 2.0),
        }
        data = make_modular(config["p"], config["op"], config["train_fraction"], config["train_size"], 0)
        torch.manual_seed(0)
        model = build_model(config)
        opt = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
        for _ in range(config["steps"]):
            opt.zero_grad()
            F.cross_entropy(model(data.train_inputs), data.train_labels).backward()
            opt.step()
        with torch.no_grad():
            (model(data.val_inputs).argmax(1) == data.val_labels).float().mean().item()
    return time.perf_counter() - started


def _ended_runs(uri: str) -> int:
    """Ended child runs of the study in its tracking store, counted page by page."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("scale")
    if experiment is None:
        return 0
    count, token = 0, None
    while True:
        page = client.search_runs(
            [experiment.experiment_id],
            "tags.`grokray.role` = 'trial' and attributes.status != 'RUNNING'",
            max_results=5000,
            page_token=token,
        )
        count += len(page)
        token = page.token
        if not token:
            return count


def run_scale(configs: int, plain: int = 20, server: bool = False) -> dict[str, Any]:
    """The study once, with MLflow in a SQLite file (``make run``'s default) or, with ``server``, on
    a real ``mlflow server`` over PostgreSQL (a cluster's setup; started here, stopped after)."""
    if server:
        from tools.services import MlflowServer, Postgres

        postgres = Postgres.start()
        base = postgres.base_dir
        try:
            backend = postgres.create_database("mlflow")
            mlflow = MlflowServer.start(
                backend, base.with_name(base.name + "-artifacts"), base.with_name(base.name + ".log")
            )
            try:
                return _run_scale(configs, plain, mlflow.uri)
            finally:
                mlflow.stop()
        finally:
            postgres.stop()
    return _run_scale(configs, plain, None)


def _run_scale(configs: int, plain: int, tracking_uri: str | None) -> dict[str, Any]:
    import pandas as pd

    with tempfile.TemporaryDirectory(prefix="grokray-scale-") as tmp:
        env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri or f"sqlite:///{tmp}/mlflow.db"}
        env["SCALE_RUSAGE"] = f"{tmp}/rusage.json"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        for key in ("RAY_ADDRESS", "GROKRAY_STORAGE"):
            env.pop(key, None)
        command = [sys.executable, "-m", "bench.scale", "--driver", "run", str(STUDY_FILE)]
        command += ["--storage", f"{tmp}/results", "--set", f"num_samples={configs}"]
        print(f"  scale study: grokray {' '.join(command[4:])}", flush=True)
        started = time.perf_counter()
        proc = subprocess.run(command, cwd=tmp, env=env, check=False)  # its progress lines show
        wall = time.perf_counter() - started
        result: dict[str, Any] = {"configs": configs, "wall_s": wall, "returncode": proc.returncode}
        result["tracking"] = "mlflow server on PostgreSQL" if tracking_uri else "SQLite file"
        usage_path = Path(tmp, "rusage.json")
        if usage_path.exists():
            usage = json.loads(usage_path.read_text())
            result.update(driver_cpu_s=usage["cpu_s"], writer_cpu_s=usage.get("writer_cpu_s"))
        result["tracking_writer"] = env.get("GROKRAY_TRACKING_WRITER") or "process"
        table_path = Path(tmp, "results", "scale", "trials.parquet")
        if table_path.exists():
            table = pd.read_parquet(table_path)
            result.update(table_rows=len(table), tune_trials=int(table["tune_trial_id"].nunique()))
        if tracking_uri or Path(tmp, "mlflow.db").exists():
            result.update(mlflow_runs=_ended_runs(env["MLFLOW_TRACKING_URI"]))
    print(f"    {wall:.1f} s, exit {proc.returncode}", flush=True)
    print(f"  plain loop: {plain} configs of the same space, built and trained one after another", flush=True)
    seconds = plain_seconds(plain)
    result.update(plain_configs=plain, plain_s_per_config=seconds / plain)
    return result


def report(result: dict[str, Any]) -> list[str]:
    """The table of ``run_scale``'s result and its two targets."""
    n, get = result["configs"], result.get
    cpu, wall, writer = get("driver_cpu_s"), result["wall_s"], get("writer_cpu_s")
    plain = result["plain_s_per_config"] * n
    lines = [
        f"Scale: bench/scale_study.py, {n} configs (1 seed, 50 steps, random search, pack=256), "
        f"MLflow: {get('tracking', '?')}",
        f"  exit {result['returncode']}  |  trial table {get('table_rows', '-')} rows  |  "
        f"MLflow {get('mlflow_runs', '-')} ended child runs  |  Tune trials {get('tune_trials', '-')}",
        f"  wall clock            {wall:8.1f} s   {1000 * wall / n:7.1f} ms per config",
        "  driver CPU            "
        + (f"{cpu:8.1f} s   {1000 * cpu / n:7.1f} ms per config" if cpu is not None else "  not measured"),
        "  tracking writer CPU   "
        + (
            f"{writer:8.1f} s   {1000 * writer / n:7.1f} ms per config   (its own process: the child runs' "
            "MLflow calls)"
            if writer is not None
            else f"  none (GROKRAY_TRACKING_WRITER={get('tracking_writer', '?')}: the driver makes the calls)"
        ),
        f"  plain loop (scaled)   {plain:8.1f} s   {1000 * result['plain_s_per_config']:7.1f} ms per config"
        f"   (grokray / plain: {result['wall_s'] / plain:.2f})",
    ]
    wall_ok = result["returncode"] == 0 and result["wall_s"] <= WALL_TARGET_S * n / 10000
    lines.append(f"  {'PASS' if wall_ok else 'FAIL'}  wall clock <= {WALL_TARGET_S * n / 10000:.0f} s "
                 f"({WALL_TARGET_S:.0f} s per 10,000 configs)")  # fmt: skip
    driver_ok = cpu is not None and 1000 * cpu / n <= DRIVER_TARGET_MS
    lines.append(f"  {'PASS' if driver_ok else 'FAIL'}  driver CPU <= {DRIVER_TARGET_MS:.0f} ms per config")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--driver"]:
        return _driver(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--configs", type=int, default=10000, help="configs of the study (default 10000)")
    parser.add_argument("--plain", type=int, default=20, help="configs the plain loop times (default 20)")
    parser.add_argument(
        "--server", action="store_true", help="MLflow on a real mlflow server over PostgreSQL, not SQLite"
    )
    parser.add_argument("--json", metavar="PATH", help="write the result as JSON")
    args = parser.parse_args(argv)
    result = run_scale(args.configs, args.plain, args.server)
    print("\n".join(report(result)))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0 if result["returncode"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
