"""The cheap subset of the crash sweep (``tools/crash_sweep.py --quick``): the real CLI killed at the
known windows, resumed, every record checked against the uninterrupted study. The full sweep (over
40 kill points) is ``make faults``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.paths import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_kill_at_the_known_windows_leaves_one_clean_record_per_run(tmp_path):
    report = tmp_path / "sweep.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "crash_sweep.py"), "--quick", "--json", str(report)],
        capture_output=True, text=True, timeout=1200, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    found = json.loads(report.read_text())
    kills = found["results"]
    assert [k["kill"] for k in kills] == [
        "runs_open:3 KILL stale",
        "estimate:1 KILL +resume before_fit:1",
        "runs_open:2 KILL stale pack=2",  # the second pack's runs open, unknown to Tune's snapshot
    ]
    for kill in kills:
        assert kill["reached"], kill  # the driver really died at its point
        assert kill["consistent"] and kill["estimate_equal"], kill["problems"]
        assert kill["lost"] == kill["duplicates"] == kill["orphans"] == kill["inconsistent"] == 0
    assert found["baseline"]["critical_fraction"] > 0  # the uninterrupted study has an answer
