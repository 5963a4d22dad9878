"""The tracking writer: a study's per-run MLflow writes in a process of their own.

A child run costs the tracking store four or five calls (create, params, metrics with the
outcome, artifacts, end), 20–30 ms of CPU each run on a SQLite file and as many round trips to a
server. Made by the driver, they were most of its time per config (issue 14: 54 ms a config at
10,000 configs), and the driver is the one serial loop of a study. So the driver sends them, as
messages, to a writer process that makes them in order (``ProcessWriter``); the driver goes on
with Tune's bookkeeping.

The rules that keep a killed study consistent:
- **In order.** One writer, one pipe: the messages are made in the order the driver sent them.
- **Never behind Tune's snapshot.** The MLflow callback waits for the writer (``drain``) whenever
  Tune saves the experiment's state (``Callback.get_state``), at the end of the experiment and
  where a crash drill kills the driver. What a restored experiment believes finished has been
  written to MLflow, as when the calls were made by the driver itself.
- **Never after its driver.** The writer checks, before each message, that the driver that
  started it is alive; a killed driver's unmade messages are dropped (the state is then that of a
  driver killed a moment earlier, which ``--resume`` already recovers), so the writer never
  writes beside a resumed driver. It ignores SIGINT and SIGTERM: the driver's own handling of a
  Ctrl-C (or a scheduler's SIGTERM to the process group) ends the study, and the writer finishes
  what it was sent when the driver closes it.
- **Errors surface.** A message that raises (not an outage: those are retried inside, as before)
  is reported to the driver at its next wait, which raises it; later messages are still made.

``GROKRAY_TRACKING_WRITER=inline`` makes the calls in the driver instead (``InlineWriter``: the
behaviour before the writer; the bench compares the two).
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

#: CPU seconds (user + system) of each writer closed in this process, in order: the bench adds them
#: to the driver's own to report where the tracking went
CLOSED_CPU: list[float] = []
_OPEN: list[Writer] = []


class TrackingWriterError(RuntimeError):
    """A tracking call made by the writer raised (its trace is the message), or the writer died."""


class Writer(Protocol):
    def send(self, method: str, *args: Any, **kwargs: Any) -> None: ...
    def call(self, method: str, *args: Any, **kwargs: Any) -> Any: ...
    def drain(self) -> None: ...
    def close(self) -> None: ...


class InlineWriter:
    """The target's methods called at once, in the driver (``GROKRAY_TRACKING_WRITER=inline``)."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self.target = factory()
        _OPEN.append(self)

    def send(self, method: str, *args: Any, **kwargs: Any) -> None:
        getattr(self.target, method)(*args, **kwargs)

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.target, method)(*args, **kwargs)

    def drain(self) -> None:
        pass

    def close(self) -> None:
        if self in _OPEN:
            _OPEN.remove(self)


class ProcessWriter:
    """The target (made by ``factory`` in the writer process) and its method calls, sent over a
    pipe: ``send`` returns at once, ``call`` waits for every earlier message and returns the
    result, ``close`` waits for all and ends the process."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        import cloudpickle  # a study may hold functions defined in its file

        to_child, from_parent = os.pipe()
        to_parent, from_child = os.pipe()
        root = str(Path(__file__).resolve().parents[2])  # where the grokray package is imported from
        path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "grokray.tune.writer", str(to_child), str(from_child), str(os.getpid())],
            pass_fds=(to_child, from_child),
            env=env,
            stdin=subprocess.DEVNULL,
        )
        os.close(to_child)
        os.close(from_child)
        self._out = Connection(from_parent, readable=False)
        self._in = Connection(to_parent, writable=False)
        self._seq = 0
        self._closed = False
        self._post("send", "__init__", (cloudpickle.dumps(factory),), {})
        _OPEN.append(self)

    def _post(self, kind: str, method: str | None, args: tuple, kwargs: dict) -> int:
        if self._closed:
            raise TrackingWriterError("the tracking writer is closed")
        self._seq += 1
        try:
            self._out.send((kind, self._seq, method, args, kwargs))
        except (BrokenPipeError, OSError):
            raise TrackingWriterError(self._died()) from None
        return self._seq

    def _died(self) -> str:
        code = self.process.poll()
        return (
            f"the tracking writer exited (code {code}); its trace is above"
            if code is not None
            else ("the tracking writer stopped answering")
        )

    def _wait(self, seq: int) -> Any:
        while True:
            try:
                got, error, result = self._in.recv()
            except (EOFError, OSError):
                raise TrackingWriterError(self._died()) from None
            if error:
                raise TrackingWriterError(error)
            if got == seq:
                return result

    def send(self, method: str, *args: Any, **kwargs: Any) -> None:
        self._post("send", method, args, kwargs)

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._wait(self._post("call", method, args, kwargs))

    def drain(self) -> None:
        self._wait(self._post("call", None, (), {}))

    def close(self) -> None:
        """Wait for every message, then end the process; its CPU time goes to ``CLOSED_CPU``."""
        if self._closed:
            return
        try:
            cpu = self._wait(self._post("close", None, (), {}))
            CLOSED_CPU.append(float(cpu))
        finally:
            self._closed = True
            if self in _OPEN:
                _OPEN.remove(self)
            self._out.close()
            self._in.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def open_writer(factory: Callable[[], Any]) -> Writer:
    """The writer ``GROKRAY_TRACKING_WRITER`` asks for (``process``, the default, or ``inline``)."""
    from grokray import settings

    if settings.current().tracking_writer == "inline":
        return InlineWriter(factory)
    return ProcessWriter(factory)


def close_all() -> None:
    """Close every writer still open in this process (a study that ended by an exception): what
    they were sent is written before the parent run ends."""
    for writer in list(_OPEN):
        try:
            writer.close()
        except TrackingWriterError as err:
            print(f"grokray: {str(err).strip().splitlines()[-1]}", file=sys.stderr, flush=True)


def _serve(inbox: Connection, outbox: Connection, parent: int) -> int:
    import cloudpickle

    target: Any = None
    error: str | None = None
    while True:
        try:
            kind, seq, method, args, kwargs = inbox.recv()
        except (EOFError, OSError):
            return 0
        if os.getppid() != parent:  # the driver is gone: what it had sent is not made
            return 0
        result = None
        if method is not None:
            try:
                if method == "__init__":
                    target = cloudpickle.loads(args[0])()
                else:
                    result = getattr(target, method)(*args, **kwargs)
            except Exception:
                error = error or traceback.format_exc()
        if kind == "close":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            outbox.send((seq, error, usage.ru_utime + usage.ru_stime))
            return 0
        if kind == "call":
            outbox.send((seq, error, result))
            error = None


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles a Ctrl-C, then closes us
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    inbox_fd, outbox_fd, parent = (int(a) for a in argv)
    inbox, outbox = Connection(inbox_fd, writable=False), Connection(outbox_fd, readable=False)
    if os.getppid() != parent:
        return 0
    return _serve(inbox, outbox, parent)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


__all__ = ["CLOSED_CPU", "InlineWriter", "ProcessWriter", "TrackingWriterError", "close_all", "open_writer"]
