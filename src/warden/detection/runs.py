"""Model runs that can be stopped: a request's deadline, its client leaving, or a run-time cap ends them.

ONNX Runtime checks a run's ``RunOptions.terminate`` flag between kernels, inside ``Loop``
and ``Scan`` bodies too, and then fails the run and frees the thread that made it. Every
run gets its own options; one watchdog thread per process sets the flag when every
request waiting for the run has given up (its deadline passed, or its client left), or
when the run has taken longer than its cap. A run shared by a batch is stopped only when
all its requests have given up, or by the cap. A single kernel is not interrupted: what
bounds it is the session's memory limit (the largest tensor a kernel may make).
"""

from __future__ import annotations

import contextlib
import heapq
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

import onnxruntime as ort

from warden.errors import ClientDisconnected, DeadlineExceeded

Clock = Callable[[], float]

DEADLINE: Final = "deadline"
RUN_CAP: Final = "run_cap"
DISCONNECT: Final = "disconnect"


class RunControl:
    """One request's say over the runs made for it: a deadline (on the monotonic clock) and a cancel switch.

    Thread-safe: the event loop cancels (its client left) while a worker runs the model.
    """

    def __init__(self, deadline: float | None = None) -> None:
        self.deadline = deadline
        self._cancelled = threading.Event()
        self._watchdogs: set[Watchdog] = set()
        self._lock = threading.Lock()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Give up (the client left): a run waiting only on this request and others that gave up is stopped."""
        self._cancelled.set()
        with self._lock:
            watchdogs = list(self._watchdogs)
        for watchdog in watchdogs:
            watchdog.poke()

    def given_up(self, now: float) -> str | None:
        """Why this request no longer wants an answer at ``now`` (``deadline``, ``disconnect``), else ``None``."""
        if self._cancelled.is_set():
            return DISCONNECT
        if self.deadline is not None and now >= self.deadline:
            return DEADLINE
        return None

    def _attach(self, watchdog: Watchdog) -> None:
        with self._lock:
            self._watchdogs.add(watchdog)


class _Watched:
    """A run in flight: its options (whose flag stops it), the requests waiting for it, and its cap's end."""

    def __init__(self, controls: Sequence[RunControl], cap_end: float | None) -> None:
        self.options = ort.RunOptions()
        self.options.log_severity_level = 4  # a stopped run is expected here: no error line from ONNX Runtime
        self.controls = tuple(controls)
        self.cap_end = cap_end
        self.cut: str | None = None

    def reason(self, now: float) -> str | None:
        """Why the run should stop at ``now``, if it should: every request gave up, or the cap passed."""
        if self.cap_end is not None and now >= self.cap_end:
            return RUN_CAP
        if not self.controls:
            return None
        reasons = [control.given_up(now) for control in self.controls]
        if all(reasons):
            return DISCONNECT if all(r == DISCONNECT for r in reasons) else DEADLINE
        return None

    def due(self) -> float:
        """The earliest time the run may have to stop without anyone cancelling (``inf``: never)."""
        waiting = [c.deadline for c in self.controls if not c.cancelled]
        latest = math.inf if not self.controls else max((d if d is not None else math.inf for d in waiting), default=0)
        return min(latest, self.cap_end if self.cap_end is not None else math.inf)


class Watchdog:
    """One thread that stops the runs it watches when they are due; started on first use, a daemon."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._watched: set[_Watched] = set()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped: dict[str, int] = {}

    @property
    def stopped(self) -> int:
        """Runs this watchdog has stopped, for any reason."""
        return sum(self.stopped_by().values())

    def stopped_by(self) -> dict[str, int]:
        """Runs stopped so far by reason (``deadline``, ``run_cap``, ``disconnect``), for metrics."""
        with self._cond:
            return dict(self._stopped)

    def poke(self) -> None:
        """Look again now (a request gave up)."""
        with self._cond:
            self._cond.notify()

    @contextlib.contextmanager
    def watching(self, watched: _Watched) -> Iterator[None]:
        """Watch ``watched`` for the duration of the block."""
        for control in watched.controls:
            control._attach(self)
        with self._cond:
            self._watched.add(watched)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="warden-run-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                self._watched.discard(watched)

    def _loop(self) -> None:
        with self._cond:
            while True:
                now = self.clock()
                due: list[float] = []
                for watched in self._watched:
                    if watched.cut is not None:
                        continue
                    reason = watched.reason(now)
                    if reason is not None:
                        watched.cut = reason
                        watched.options.terminate = True
                        self._stopped[reason] = self._stopped.get(reason, 0) + 1
                    else:
                        heapq.heappush(due, watched.due())
                wait = None if not due or math.isinf(due[0]) else max(due[0] - now, 0.0) + 0.0005
                self._cond.wait(wait)


WATCHDOG: Final = Watchdog()
"""The process's watchdog: every stoppable run is watched by it unless a caller brings its own."""


def stoppable_run(
    session: ort.InferenceSession,
    feeds: dict[str, Any],
    controls: Sequence[RunControl] = (),
    cap: float | None = None,
    *,
    watchdog: Watchdog = WATCHDOG,
) -> list[Any]:
    """``session.run`` that stops when every request in ``controls`` gives up, or after ``cap`` seconds.

    A stopped run raises ``DeadlineExceeded`` (stage ``inference``; cause ``deadline`` or ``run_cap``)
    or ``ClientDisconnected`` (every request's client left). With no controls and no cap the run is
    made unwatched.
    """
    if not controls and cap is None:
        return session.run(None, feeds)  # type: ignore[no-any-return]
    now = watchdog.clock()
    watched = _Watched(controls, None if cap is None else now + cap)
    early = watched.reason(now)
    if early is not None:
        raise _cut(early, cap)
    with watchdog.watching(watched):
        try:
            return session.run(None, feeds, watched.options)  # type: ignore[no-any-return]
        except Exception:
            if watched.cut is not None:
                raise _cut(watched.cut, cap) from None
            raise


def _cut(reason: str, cap: float | None) -> Exception:
    if reason == RUN_CAP:
        shown = f"{(cap or 0) * 1000:.0f} ms"
        return DeadlineExceeded(
            f"the model ran longer than its version's run-time cap ({shown}) and was stopped",
            stage="inference",
            cause=RUN_CAP,
        )
    if reason == DISCONNECT:
        return ClientDisconnected("the client disconnected while the model ran; the run was stopped", stage="inference")
    return DeadlineExceeded("the deadline passed while the model ran; the run was stopped", stage="inference")
