"""The tracking writer (``grokray/tune/writer.py``): calls made in order in a process of their own,
errors surfaced, nothing made after its driver died, signals left to the driver."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from functools import partial
from pathlib import Path

import pytest

from grokray import settings
from grokray.crash import pid_alive
from grokray.tune import writer as writer_module
from grokray.tune.writer import InlineWriter, ProcessWriter, TrackingWriterError, open_writer

REPO = Path(__file__).resolve().parents[3]


class Recorder:
    """A target that appends each value to a file (so that another process can read it)."""

    def __init__(self, path: str, delay: float = 0.0) -> None:
        self.path, self.delay = Path(path), delay

    def add(self, value: int) -> None:
        time.sleep(self.delay)
        with self.path.open("a") as f:
            f.write(f"{value}\n")

    def boom(self) -> None:
        raise ValueError("the tracking store said no")

    def values(self) -> list[int]:
        return [int(line) for line in self.path.read_text().split()] if self.path.exists() else []

    def pid(self) -> int:
        return os.getpid()


@pytest.mark.parametrize("kind", [ProcessWriter, InlineWriter])
def test_calls_are_made_in_the_order_they_were_sent(tmp_path: Path, kind: type) -> None:
    writer = kind(partial(Recorder, str(tmp_path / "log")))
    try:
        for value in range(200):
            writer.send("add", value)
        assert writer.call("values") == list(range(200))
        writer.send("add", 200)
        writer.drain()
        assert Recorder(str(tmp_path / "log")).values() == list(range(201))
    finally:
        writer.close()


def test_the_process_writer_runs_elsewhere_and_reports_its_cpu(tmp_path: Path) -> None:
    writer = ProcessWriter(partial(Recorder, str(tmp_path / "log")))
    assert writer.call("pid") != os.getpid()
    before = len(writer_module.CLOSED_CPU)
    writer.close()
    assert len(writer_module.CLOSED_CPU) == before + 1 and writer_module.CLOSED_CPU[-1] > 0
    assert writer.process.returncode == 0
    with pytest.raises(TrackingWriterError, match="closed"):
        writer.send("add", 1)


def test_an_error_surfaces_at_the_next_wait_and_later_calls_are_still_made(tmp_path: Path) -> None:
    writer = ProcessWriter(partial(Recorder, str(tmp_path / "log")))
    try:
        writer.send("add", 1)
        writer.send("boom")
        writer.send("add", 2)
        with pytest.raises(TrackingWriterError, match="ValueError: the tracking store said no"):
            writer.drain()
        assert writer.call("values") == [1, 2]  # reported once
    finally:
        writer.close()


def test_a_writer_that_died_is_a_clear_error(tmp_path: Path) -> None:
    writer = ProcessWriter(partial(Recorder, str(tmp_path / "log")))
    writer.drain()
    writer.process.kill()
    writer.process.wait()
    with pytest.raises(TrackingWriterError, match="exited"):
        for _ in range(1000):  # the pipe takes a few messages before it breaks
            writer.send("add", 1)
        writer.drain()


def test_ctrl_c_and_sigterm_are_left_to_the_driver(tmp_path: Path) -> None:
    writer = ProcessWriter(partial(Recorder, str(tmp_path / "log")))
    try:
        writer.drain()
        os.kill(writer.process.pid, signal.SIGINT)
        os.kill(writer.process.pid, signal.SIGTERM)
        writer.send("add", 7)
        assert writer.call("values") == [7]
    finally:
        writer.close()


def test_nothing_is_made_once_its_driver_is_killed(tmp_path: Path) -> None:
    """A driver sends 30 slow calls and kills itself: the writer makes the one in hand and
    exits; it never writes beside a resumed driver."""
    log = tmp_path / "log"
    driver = textwrap.dedent(
        f"""
        import json, os, signal, sys
        from functools import partial
        sys.path.insert(0, {str(REPO)!r})
        from tests.unit.tune.test_writer import Recorder
        from grokray.tune.writer import ProcessWriter
        writer = ProcessWriter(partial(Recorder, {str(log)!r}, 0.2))
        writer.send("add", -1)
        writer.drain()
        for value in range(30):
            writer.send("add", value)
        print(json.dumps({{"writer": writer.process.pid}}), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    out = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, timeout=120)
    assert out.returncode == -signal.SIGKILL, out.stderr
    pid = json.loads(out.stdout.splitlines()[-1])["writer"]
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(pid)
    values = Recorder(str(log)).values()
    assert values[0] == -1 and len(values) <= 3, values  # not the 30 it was sent


def test_the_setting_picks_the_writer_and_refuses_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROKRAY_TRACKING_WRITER", "inline")
    writer = open_writer(partial(Recorder, str(tmp_path / "log")))
    assert isinstance(writer, InlineWriter)
    writer.close()
    monkeypatch.delenv("GROKRAY_TRACKING_WRITER")
    assert settings.current().tracking_writer == "process"
    monkeypatch.setenv("GROKRAY_TRACKING_WRITER", "thread")
    refused = "GROKRAY_TRACKING_WRITER: got 'thread'; allowed: 'process', 'inline'"
    with pytest.raises(ValueError, match=refused):
        settings.current()


def test_a_bad_setting_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from grokray.cli import main

    monkeypatch.setenv("GROKRAY_TRACKING_WRITER", "thread")
    assert main(["run", str(REPO / "studies" / "critical_size.py")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["grokray: error: GROKRAY_TRACKING_WRITER: got 'thread'; allowed: 'process', 'inline'"]
