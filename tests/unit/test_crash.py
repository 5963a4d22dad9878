"""The crash points of the fault sweep: inert unless named, then the N-th pass kills the driver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from tests.paths import ROOT

SCRIPT = (
    "from grokray.crash import crash_point\n"
    "for i in range(3):\n"
    "    crash_point('other'); print('passed', i, flush=True); crash_point('result')\n"
)


def _run(**env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GROKRAY_")}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], env={**environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_crash_point_kills_the_driver_on_its_nth_pass_and_is_inert_otherwise():
    assert _run().stdout.split("\n")[:3] == ["passed 0", "passed 1", "passed 2"]  # unset: inert
    killed = _run(GROKRAY_CRASH_AT="result:2")
    assert killed.returncode == -signal.SIGKILL
    assert killed.stdout.split() == ["passed", "0", "passed", "1"]  # died at the second pass
    assert "crash point result:2: SIGKILL" in killed.stderr
    first = _run(GROKRAY_CRASH_AT="result", GROKRAY_CRASH_SIGNAL="TERM")
    assert first.returncode == -signal.SIGTERM and first.stdout.split() == ["passed", "0"]


def test_every_crash_point_is_passed_somewhere_in_the_package():
    from grokray.crash import POINTS

    source = "\n".join(p.read_text() for p in (ROOT / "grokray").rglob("*.py"))
    for point in POINTS:
        assert f'crash_point("{point}")' in source, point
