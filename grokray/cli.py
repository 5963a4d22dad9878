"""``grokray run | trial | report``: commands, flags, exit codes, printing.

Exit codes: 0 done, 1 the study ran but failed, 2 bad input (one line naming the field), 130
interrupted. Heavy imports (Ray, torch, MLflow) happen only after the input has been checked.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from grokray import settings
from grokray.config import StudyError
from grokray.outcomes import OUTCOME_KEYS, curve_keys
from grokray.study import load_study

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        command = " ".join(self.prog.split()[1:])  # "grokray run" -> "run"; "grokray" -> ""
        print(
            f"grokray: error: {message} (see grokray {command + ' ' if command else ''}--help)",
            file=sys.stderr,
        )
        sys.exit(EXIT_BAD_INPUT)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="grokray", description="Study service for grokking research.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def study_args(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("study", metavar="STUDY", help="a study file, e.g. studies/critical_size.py")
        sub.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="fix a config value (NAME=a,b,c pins a grid); repeatable",
        )
        sub.add_argument("--quick", action="store_true", help="the study's fast profile")

    run = commands.add_parser("run", help="run a study on Ray Tune, track it in MLflow")
    study_args(run)
    run.add_argument(
        "--storage",
        default=None,
        help="results directory or pyarrow URI (default: $GROKRAY_STORAGE or ./results)",
    )
    run.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS or local)")
    run.add_argument("--resume", action="store_true", help="continue the study in the results directory")
    run.add_argument("--no-early-stop", action="store_true", help="run every trial to its step budget")
    run.add_argument(
        "--optuna-storage",
        default=None,
        metavar="URL",
        help="keep Optuna's study in this database, e.g. postgresql://user:pw@host/db or sqlite:///optuna.db "
        "(default: $GROKRAY_OPTUNA_STORAGE or in memory)",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="Ray's own progress tables and logs")

    trial = commands.add_parser("trial", help="run one config in-process (no Ray, no MLflow)")
    study_args(trial)
    trial.add_argument("--json", action="store_true", help="print the outcome as JSON")
    trial.add_argument("--no-stop", action="store_true", help="keep training after grokking")

    report = commands.add_parser("report", help="reprint a study's estimate from MLflow")
    report.add_argument("name", metavar="STUDY_NAME", help="a study's name, or its study file")
    report.add_argument("--json", action="store_true")

    links = commands.add_parser("links", help="the MLflow UI address of each study's runs")
    links.add_argument("--base", default="http://127.0.0.1:5000", help="the UI's address (make ui's default)")

    address_help = "Ray job server (default: $RAY_JOB_ADDRESS, an http $RAY_ADDRESS, http://127.0.0.1:8265)"
    submit = commands.add_parser("submit", help="run a study as a Ray Job on an existing cluster")
    study_args(submit)
    submit.add_argument("--address", default=None, help=address_help)
    submit.add_argument(
        "--storage", default=None, help="results URI or path the cluster reaches (default: $GROKRAY_STORAGE)"
    )
    submit.add_argument("--no-wait", action="store_true", help="return once submitted, without the logs")
    for name, text in (("status", "a job's status"), ("logs", "a job's logs"), ("stop", "stop a job")):
        job = commands.add_parser(name, help=text)
        job.add_argument("job_id", metavar="JOB")
        job.add_argument("--address", default=None, help=address_help)
        if name == "logs":
            job.add_argument("--follow", action="store_true", help="keep printing until the job ends")
    return parser


def resume_command(args: argparse.Namespace, program: Sequence[str] | None = None) -> str:
    """The command that continues an interrupted ``run``, as it can be typed here: the program as
    this process was started (``python -m grokray`` from the venv, or the ``grokray`` script),
    with the same study, overrides and storage, and ``--resume``."""
    import shlex

    if program is None:
        script = Path(sys.argv[0])
        program = [str(script)] if script.name == "grokray" else [sys.executable, "-m", "grokray"]
    words = [*program, "run", args.study]
    for override in args.overrides:
        words += ["--set", override]
    words += ["--quick"] if args.quick else []
    words += ["--storage", args.storage] if getattr(args, "storage", None) else []
    words += ["--address", args.address] if getattr(args, "address", None) else []
    return " ".join(shlex.quote(word) for word in [*words, "--resume"])


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings.current()  # a GROKRAY_* variable with a value it does not allow
    except ValueError as err:
        print(f"grokray: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        if args.command == "report":
            return _report(args)
        if args.command == "links":
            return _links(args)
        if args.command in ("status", "logs", "stop"):
            return _job(args)
        study = load_study(args.study, args.overrides, quick=args.quick)
        if args.command == "trial":
            _check_one_config(args.overrides)
    except StudyError as err:
        print(f"grokray: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        if args.command == "trial":
            return _trial(study, args)
        if args.command == "submit":
            from grokray import jobs

            return jobs.submit(
                study, args.study, args.overrides, args.quick, args.storage, args.address, not args.no_wait
            )
        return _run(study, args)
    except StudyError as err:  # found once the study met its results directory (e.g. --resume)
        print(f"grokray: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"\ngrokray: interrupted; continue with: {resume_command(args)}", file=sys.stderr)
        return 130


def _job(args: argparse.Namespace) -> int:
    from grokray import jobs

    if args.command == "status":
        return jobs.status(args.job_id, args.address)
    if args.command == "logs":
        return jobs.logs(args.job_id, args.address, args.follow)
    return jobs.stop(args.job_id, args.address)


def _check_one_config(overrides: Sequence[str]) -> None:
    """``grokray trial`` trains one config of one seed: a grid or a seed count is refused, not
    silently cut to its first value."""
    for assignment in overrides:
        key, _, raw = assignment.partition("=")
        key = key.strip()
        if key == "seeds":
            raise StudyError(
                "seeds", "grokray trial trains one seed; give --set seed=N (grokray run trains seeds=N)"
            )
        if "," in raw:
            raise StudyError(
                key,
                f"got a grid ({raw.strip()}); grokray trial trains one config: give one value "
                "(grokray run sweeps a grid)",
            )


def _trial(study: Any, args: argparse.Namespace) -> int:
    import torch

    from grokray.engine import train_replicas

    # the thread count of a Tune trial, so that the numerics (and the outcome) are the same
    torch.set_num_threads(max(1, int(study.cpus_per_trial)))
    config = study.resolve({})
    shown = {
        k: config[k]
        for k in (
            "p",
            "op",
            "train_fraction",
            "seed",
            "steps",
            "lr",
            "weight_decay",
            "init_scale",
            "temperature",
        )
    }
    print("grokray trial: " + " ".join(f"{k}={v}" for k, v in shown.items()), file=sys.stderr)

    def on_eval(record: dict[str, Any]) -> None:
        print(
            f"  step {record['step']:>7}  train_acc {record['train_acc']:.3f}"
            f"  val_acc {record['val_acc']:.3f}  train_loss {record['train_loss']:.3g}"
            f"  val_loss {record['val_loss']:.3g}",
            file=sys.stderr,
            flush=True,
        )

    # the batched engine a Tune trial runs: a replica's arithmetic does not depend on the others,
    # so this reproduces the outcome of that seed's replica exactly
    [outcome] = train_replicas(
        [config],
        on_eval=lambda records: on_eval(records[0]),
        stop_on_grok=study.early_stop and not args.no_stop,
        batched=True,
    )
    result = {k: outcome[k] for k in OUTCOME_KEYS}
    result["doshi_phase"] = outcome.get("doshi_phase")
    last = outcome["history"][-1] if outcome.get("history") else {}
    # the last value of every other curve: norms, recovery error, clean train accuracy, ...
    finals = {f"final_{k}": last[k] for k in curve_keys(last) if f"final_{k}" not in result}
    shown = [*OUTCOME_KEYS, "doshi_phase", *finals]
    result.update(finals)
    result.update(n_train=outcome["n_train"], n_total=outcome["n_total"], config=config)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key in shown:
            print(f"{key:>26}: {result[key]}")
    return 0


def _run(study: Any, args: argparse.Namespace) -> int:
    import os

    from grokray.tracking import check_reachable, claim_study_name
    from grokray.tune.run import StudyFailed, run_study

    try:
        check_reachable()
    except ConnectionError as err:
        raise StudyError("MLFLOW_TRACKING_URI", f"{err}; start the server or unset the variable") from None
    # a name taken by another file: exit 2
    claim_study_name(study.name, os.path.basename(args.study), description=study.description)

    knobs = settings.current()
    storage = args.storage or knobs.storage
    if args.no_early_stop:
        study = dataclasses.replace(study, early_stop=False)
    for note in study.notes():
        print(f"[{study.name}] note: {note}", flush=True)
    print(
        f"[{study.name}] {'at most ' if study.sampler == 'boundary' else ''}{study.total_trials} runs "
        f"({study.num_configs} configs x {study.seeds} seeds), "
        + (
            f"up to {study.configs_per_pack()} configs a Tune trial (pack={study.pack}), "
            f"{study.max_concurrent} trials at a time; "
            if study.configs_per_pack() > 1
            else f"{study.max_concurrent} configs training at a time; "
        )
        + f"tracking: {settings.current().tracking_uri}",
        flush=True,
    )
    try:
        summary = run_study(
            study,
            storage=storage,
            address=args.address,
            verbose=args.verbose,
            resume=args.resume,
            optuna_storage=args.optuna_storage or knobs.optuna_storage,
        )
    except StudyFailed as failed:
        print(f"\ngrokray: study failed: {failed}", file=sys.stderr)
        return 1
    print()
    what = "Critical data size" if summary.get("sweeps_size", True) else "Outcomes"
    task = (  # op and p mean something for modular arithmetic only
        f"op {summary['op']}, p={summary['p']}" if summary["task"] == "modular" else f"task {summary['task']}"
    )
    print(
        f"{what} of {study.name} (budget {summary['budget_steps']} steps, {task}, "
        f"regularizer {summary['regularizer']}):"
    )
    print(summary["table"])
    print(
        f"\nresults: {summary['results_dir']}  |  MLflow parent run: {summary['parent_run_id']} "
        f"(browse with: make ui)"
    )
    return 0 if summary["n_trials"] > summary["n_failed"] else 1


def _links(args: argparse.Namespace) -> int:
    from grokray.tracking import study_links

    links = study_links(args.base)
    if not links:
        print(f"grokray: no study in {settings.current().tracking_uri} yet (make run makes one)")
    for name, url in links:
        print(f"{name}: {url}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from grokray.analysis import format_estimates
    from grokray.tracking import jsonable, load_estimate

    name = args.name
    if name.endswith(".py"):  # a study file: its study's name
        try:
            name = load_study(name).name
        except StudyError as err:
            print(f"grokray: error: {err}", file=sys.stderr)
            return EXIT_BAD_INPUT
    try:
        payload = load_estimate(name)
    except LookupError as err:
        print(f"grokray: error: STUDY_NAME: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(jsonable(payload["estimates"]), indent=2))
    else:
        print(f"{payload['study']} (budget {payload['budget_steps']} steps, run {payload['run_id']}):")
        print(format_estimates(payload["estimates"]))
        if payload.get("per_size"):
            import pandas as pd

            from grokray.analysis.sizes import format_size_summary

            print("\nper size:")
            print(format_size_summary(pd.DataFrame(payload["per_size"])))
    return 0
