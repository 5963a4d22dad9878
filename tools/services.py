"""Real services for the integration tests and the fault drills (``tools/faults.py``): free
ports, a PostgreSQL server, an ``mlflow server``, a Ray cluster's node count. Each is started as a
process of its own session and stopped by PID. No pytest here (the fixtures are in
``tests/integration/conftest.py``).

PostgreSQL comes from Debian's ``postgresql`` package (``tools/system_deps.sh`` installs it); it
refuses to run as root, so as root it runs as the ``postgres`` user the package creates, on a data
directory that user owns.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grokray.crash import pid_alive

SERVICE_USER = "grokray"


class ServiceMissing(RuntimeError):
    """A service's program is not installed here (a test skips; the drills say so)."""


def mlflow_server_command(backend_store_uri: str, artifacts_dir: Path, port: int) -> list[str]:
    """``mlflow server`` (the one beside this Python) on 127.0.0.1:``port``, one worker."""
    mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
    return [mlflow_bin, "server", "--backend-store-uri", backend_store_uri, "--artifacts-destination",
            str(artifacts_dir), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip


def wait_until_healthy(uri: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    """Wait until ``uri``/health answers 200; RuntimeError if ``process`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"mlflow server exited {process.returncode}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"mlflow server did not answer /health in {timeout} s")


def wait_for_ray_nodes(address: str, count: int, env: dict[str, str], timeout: float = 120) -> None:
    """Wait until the Ray cluster at ``address`` has ``count`` live nodes."""
    code = (
        f"import ray; ray.init(address='{address}', logging_level='ERROR'); "
        "print(len([n for n in ray.nodes() if n['Alive']]))"
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
        if out.stdout.strip().isdigit() and int(out.stdout.strip()) >= count:
            return
        time.sleep(2)
    raise RuntimeError(f"the Ray cluster did not reach {count} nodes")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/VERSION/bin`` that has ``initdb``, if any."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def stop_pid(pid: int, sig: int, timeout: float) -> None:
    """Send ``sig`` to ``pid``, wait up to ``timeout`` seconds for it to exit, then SIGKILL it."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@dataclass
class Postgres:
    """A PostgreSQL server of its own: a temporary data directory, a free port on 127.0.0.1,
    password authentication over TCP for the superuser ``grokray``."""

    base_dir: Path
    port: int
    password: str
    pid: int
    run_as: list[str] = field(default_factory=list)

    @property
    def log_path(self) -> Path:
        return self.base_dir / "postgres.log"

    def url(self, database: str) -> str:
        """A SQLAlchemy URL (what MLflow and Optuna take) of ``database``."""
        return f"postgresql://{SERVICE_USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=SERVICE_USER, password=self.password, dbname=database
        )

    def create_database(self, name: str) -> str:
        """Create database ``name`` (an identifier: letters, digits, _) and return its URL."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"not a plain database name: {name!r}")
        with self.connect() as connection:
            connection.autocommit = True
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    @classmethod
    def start(cls, timeout: float = 60) -> Postgres:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise ServiceMissing("PostgreSQL is not installed (run: bash tools/system_deps.sh)")
        run_as: list[str] = []
        base_dir = Path(tempfile.mkdtemp(prefix="grokray-pg-"))
        if os.geteuid() == 0:  # postgres refuses to run as root: run it as Debian's postgres user
            run_as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(base_dir, "postgres", "postgres")
        password = secrets.token_hex(12)
        password_file = base_dir / "password"
        password_file.write_text(password + "\n")
        if run_as:
            shutil.chown(password_file, "postgres", "postgres")
        data_dir = base_dir / "data"
        log_path = base_dir / "postgres.log"

        def run(*args: str) -> None:
            done = subprocess.run([*run_as, *args], capture_output=True, text=True, timeout=timeout)
            if done.returncode != 0:
                log = log_path.read_text() if log_path.exists() else ""
                shutil.rmtree(base_dir, ignore_errors=True)
                raise RuntimeError(f"{args[0]} failed: {done.stdout}{done.stderr}{log}"[-3000:])

        run(
            str(bin_dir / "initdb"), "-D", str(data_dir), "-U", SERVICE_USER, f"--pwfile={password_file}",
            "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--no-locale",
            "--no-sync",
        )  # fmt: skip
        port = free_port()
        # tests need no durability: fsync off makes MLflow's and Optuna's many small commits cheap
        options = (
            f"-p {port} -k {base_dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        run(str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-l", str(log_path), "-o", options, "-w",
            "-t", str(int(timeout)), "start")  # fmt: skip
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
        return cls(base_dir=base_dir, port=port, password=password, pid=pid, run_as=run_as)

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster), then remove the data directory."""
        stop_pid(self.pid, signal.SIGINT, timeout=30)
        shutil.rmtree(self.base_dir, ignore_errors=True)


@dataclass
class MlflowServer:
    """``mlflow server`` on a backend store (here PostgreSQL), serving artifacts from a local folder."""

    uri: str
    backend_store_uri: str
    artifacts_dir: Path
    process: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    def start(
        cls, backend_store_uri: str, artifacts_dir: Path, log_path: Path, timeout: float = 180, port: int = 0
    ) -> MlflowServer:
        """Start ``mlflow server`` (on ``port``, or a free one) and wait until /health answers."""
        port = port or free_port()
        uri = f"http://127.0.0.1:{port}"
        artifacts_dir.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                mlflow_server_command(backend_store_uri, artifacts_dir, port),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                # no job runner: seven huey consumer processes for GenAI jobs the tests never use
                env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            )  # fmt: skip
        server = cls(uri, backend_store_uri, artifacts_dir, process, log_path)
        try:
            wait_until_healthy(uri, timeout, process)
        except RuntimeError as err:
            server.stop()
            raise RuntimeError(f"{err}: {log_path.read_text()[-3000:]}") from None
        return server

    def restart(self, timeout: float = 180) -> None:
        """Start the server again on the same port, store and artifacts (after ``kill``)."""
        again = MlflowServer.start(
            self.backend_store_uri,
            self.artifacts_dir,
            self.log_path,
            timeout,
            port=int(self.uri.rsplit(":", 1)[1]),
        )
        self.process = again.process

    def kill(self) -> None:
        """SIGKILL to the server's process group: an outage, not a shutdown."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM to the server's process group (the server and its uvicorn workers), then SIGKILL."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
            except ProcessLookupError:
                pass
