"""``grokray submit | status | logs | stop``: a study as a Ray Job on an existing cluster.

``submit`` ships the project directory (``runtime_env.working_dir``, without the virtual
environment, results and databases) and runs ``python -m grokray run STUDY ...`` as the job's
entrypoint on the head node, so the cluster's Python must already have grokray's dependencies
(the same image / virtual environment as this machine). Where the study's results and MLflow
runs go is decided here, before anything is sent: a relative path would land in the job's
temporary working directory and be lost, so it is made absolute when the head runs on this
machine (a loopback address) and refused for a remote head.

Only ``ray.job_submission`` is imported, and only when a command runs (``grokray --help`` stays fast).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shlex
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from grokray import settings
from grokray.config import StudyError

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
EXCLUDES = [
    ".venv",
    "venv",
    ".git",
    "results",
    "mlflow.db",
    "mlruns",
    "mlartifacts",
    "__pycache__",
    "*.egg-info",
    ".pytest_cache",
    ".ruff_cache",
    "build",
    "*.db",
]
# passed through to the job's driver and trials when set here
PASSED_PREFIXES = ("GROKRAY_", "MLFLOW_", "AWS_", "GOOGLE_APPLICATION_CREDENTIALS")
PASSED_NAMES = ("RAY_AUTH_MODE", "RAY_JOB_STOP_WAIT_TIME_S", "RAY_JOB_STOP_SIGNAL")
STOP_WAIT_SECONDS = "60"  # SIGTERM → grokray ends its MLflow runs as KILLED; Ray's default is 3 s


def job_address(address: str | None) -> str:
    """``--address``, else ``$RAY_JOB_ADDRESS``, else ``$RAY_ADDRESS`` when it is an http(s) URL
    (``RAY_ADDRESS=HOST:6379`` names the Ray cluster itself, not its job server), else local."""
    ray_address = os.environ.get("RAY_ADDRESS", "")
    chosen = (
        address
        or os.environ.get("RAY_JOB_ADDRESS")
        or (ray_address if ray_address.startswith(("http://", "https://")) else "")
        or DEFAULT_ADDRESS
    )
    return chosen if "://" in chosen else f"http://{chosen}"


def is_loopback(address: str) -> bool:
    host = (urlsplit(address).hostname or "").lower()
    return host == "localhost" or host.startswith("127.") or host == "::1"


def _sqlite_path(uri: str) -> str | None:
    """The file path of a ``sqlite:///PATH`` URI (absolute when it starts with ``/``), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return uri.removeprefix("sqlite:///")


def placed_storage(storage: str, local_head: bool, cwd: Path) -> str:
    """The results location the job gets: a URI as it is, a local path made absolute."""
    if "://" in storage or Path(storage).is_absolute():
        return storage
    if not local_head:
        raise StudyError(
            "--storage",
            f"'{storage}' is relative to this machine and the job runs on the cluster; "
            "give shared storage (s3://bucket/prefix, gs://..., or an absolute path on the cluster)",
        )
    return str((cwd / storage).resolve())


def placed_database(name: str, uri: str, local_head: bool, cwd: Path) -> str:
    """A ``sqlite:///relative.db`` made absolute for a head on this machine, refused otherwise."""
    path = _sqlite_path(uri)
    if path is None or path.startswith("/") or path in ("", ":memory:"):
        return uri
    if not local_head:
        raise StudyError(
            name,
            f"'{uri}' is a file relative to this machine and the job runs on the cluster; "
            "point it at a tracking server (http://...) or a database the cluster reaches",
        )
    return f"sqlite:///{(cwd / path).resolve()}"


def project_root() -> Path:
    """The directory shipped as the job's working directory: the source checkout grokray is
    imported from (the one with ``pyproject.toml``), else the current directory."""
    root = settings.PROJECT_ROOT
    return root if (root / "pyproject.toml").is_file() else Path.cwd().resolve()


def build_job(
    study_path: str,
    overrides: Sequence[str],
    quick: bool,
    storage: str | None,
    address: str,
    environ: Mapping[str, str],
    cwd: Path,
    root: Path,
) -> dict[str, Any]:
    """``submit_job`` arguments: the entrypoint and its runtime_env. Raises StudyError for a
    study outside the shipped directory or a results/tracking location the job cannot reach."""
    local_head = is_loopback(address)
    study_file = (cwd / study_path).resolve()
    try:
        relative_study = study_file.relative_to(root).as_posix()
    except ValueError:
        raise StudyError(
            "STUDY", f"{study_path} is outside {root}, the directory shipped with the job; put it under it"
        ) from None
    env = {k: v for k, v in environ.items() if k.startswith(PASSED_PREFIXES) or k in PASSED_NAMES}
    env.setdefault("RAY_JOB_STOP_WAIT_TIME_S", STOP_WAIT_SECONDS)
    env.pop("GROKRAY_STORAGE", None)  # given as --storage below, placed
    env["MLFLOW_TRACKING_URI"] = placed_database(
        "MLFLOW_TRACKING_URI",
        environ.get("MLFLOW_TRACKING_URI") or settings.DEFAULT_TRACKING_URI,
        local_head,
        cwd,
    )
    if env.get("GROKRAY_OPTUNA_STORAGE"):
        env["GROKRAY_OPTUNA_STORAGE"] = placed_database(
            "GROKRAY_OPTUNA_STORAGE", env["GROKRAY_OPTUNA_STORAGE"], local_head, cwd
        )
    results = placed_storage(
        storage or environ.get("GROKRAY_STORAGE") or settings.DEFAULT_STORAGE, local_head, cwd
    )
    command = ["python", "-m", "grokray", "run", relative_study]
    for override in overrides:
        command += ["--set", override]
    command += ["--quick"] if quick else []
    command += ["--storage", results]
    return {
        "entrypoint": shlex.join(command),
        "runtime_env": {"working_dir": str(root), "excludes": EXCLUDES, "env_vars": env},
        "results": results,
        "tracking": env["MLFLOW_TRACKING_URI"],
    }


# ---------------------------------------------------------------------------------------------
# Talking to the job server


def connect(address: str) -> Any:
    """A JobSubmissionClient, or StudyError in seconds if nothing answers at ``address``."""
    parts = urlsplit(address)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "", port), timeout=5).close()
    except OSError as err:
        raise StudyError("--address", f"no Ray job server answers at {address} ({err})") from None
    import logging

    from ray.job_submission import JobSubmissionClient

    logging.getLogger("ray").setLevel(logging.ERROR)  # packaging chatter: the job's own log is what counts
    try:
        return JobSubmissionClient(address)
    except (ConnectionError, RuntimeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise StudyError("--address", f"{address} is not a Ray job server ({first})") from None


def job_info(client: Any, job_id: str) -> Any:
    try:
        return client.get_job_info(job_id)
    except RuntimeError as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise StudyError("JOB", f"no job {job_id} at {client.get_address()} ({first})") from None


def exit_code(info: Any) -> int:
    """The job's outcome as grokray's exit codes: 0 done, 130 stopped, else the driver's code (1)."""
    status = str(info.status.value if hasattr(info.status, "value") else info.status)
    if status == "SUCCEEDED":
        return 0
    if status == "STOPPED":
        return 130
    code = getattr(info, "driver_exit_code", None)
    return code if isinstance(code, int) and 0 < code < 128 else 1


def status_name(info: Any) -> str:
    return str(info.status.value if hasattr(info.status, "value") else info.status)


def wait_for_end(client: Any, job_id: str, timeout: float = 3600.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        info = job_info(client, job_id)
        if status_name(info) in TERMINAL or time.monotonic() > deadline:
            return info
        time.sleep(1.0)


def follow(client: Any, job_id: str) -> None:
    """Print the job's logs as they come, until it ends."""

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            print(chunk, end="", flush=True)

    asyncio.run(tail())


# ---------------------------------------------------------------------------------------------
# The commands (called by grokray.cli after its own checks)


def submit(
    study: Any,
    study_path: str,
    overrides: Sequence[str],
    quick: bool,
    storage: str | None,
    address: str | None,
    wait: bool,
) -> int:
    target = job_address(address)
    job = build_job(study_path, overrides, quick, storage, target, os.environ, Path.cwd(), project_root())
    client = connect(target)
    submission_id = f"grokray-{study.name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    job_id = client.submit_job(
        entrypoint=job["entrypoint"],
        runtime_env=job["runtime_env"],
        submission_id=submission_id,
        metadata={"grokray.study": study.name},
    )
    flag = f" --address {target}" if target != DEFAULT_ADDRESS else ""
    print(f"[{study.name}] submitted job {job_id} to {target}", flush=True)
    print(f"  entrypoint: {job['entrypoint']}")
    print(f"  results: {job['results']}  |  tracking: {job['tracking']}")
    print(f"  follow: grokray logs {job_id} --follow{flag}  |  stop: grokray stop {job_id}{flag}", flush=True)
    if not wait:
        return 0
    try:
        follow(client, job_id)
        info = wait_for_end(client, job_id)
    except KeyboardInterrupt:
        print(f"\n[{study.name}] stopped following; job {job_id} goes on (grokray stop {job_id}{flag})")
        return 130
    print(
        f"[{study.name}] job {job_id}: {status_name(info)}" + (f" ({info.message})" if info.message else "")
    )
    return exit_code(info)


def status(job_id: str, address: str | None) -> int:
    client = connect(job_address(address))
    info = job_info(client, job_id)
    print(f"{job_id}: {status_name(info)}" + (f" ({info.message})" if info.message else ""))
    return 0


def logs(job_id: str, address: str | None, follow_logs: bool) -> int:
    client = connect(job_address(address))
    job_info(client, job_id)  # an unknown job: one line, exit 2
    if not follow_logs:
        print(client.get_job_logs(job_id), end="")
        return 0
    try:
        follow(client, job_id)
    except KeyboardInterrupt:
        return 130
    return exit_code(wait_for_end(client, job_id))


def stop(job_id: str, address: str | None, timeout: float = 120.0) -> int:
    """Ask the job to stop (SIGTERM: grokray ends its MLflow runs as KILLED) and wait for its end."""
    client = connect(job_address(address))
    info = job_info(client, job_id)
    if status_name(info) in TERMINAL:
        print(f"{job_id}: already {status_name(info)}")
        return 0
    client.stop_job(job_id)
    info = wait_for_end(client, job_id, timeout)
    print(f"{job_id}: {status_name(info)}" + (f" ({info.message})" if info.message else ""))
    return 0 if status_name(info) in TERMINAL else 1
