"""Stoppable runs: a deadline, a client leaving or a run-time cap stops a spinning model's run inside ONNX Runtime.

The spinning model would run for about half a minute on a white image; each test that expects it stopped would
instead hang that long and then fail (no exception), so none of them asserts a duration.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from tests.registry import hostile
from warden.detection import DetectionModel
from warden.detection.runs import DEADLINE, DISCONNECT, RUN_CAP, RunControl, Watchdog, _Watched, stoppable_run
from warden.errors import ClientDisconnected, DeadlineExceeded

WHITE = np.full((64, 64, 3), 255, dtype=np.uint8)
BLACK = np.zeros((64, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def spinner() -> DetectionModel:
    return DetectionModel.load(hostile.spinning())


def _white(model: DetectionModel) -> np.ndarray:
    return model.prepare([WHITE]).tensor


def test_when_the_deadline_passes_during_a_run_then_the_run_is_stopped(spinner: DetectionModel) -> None:
    control = RunControl(time.monotonic() + 0.2)
    with pytest.raises(DeadlineExceeded) as caught:
        spinner.infer(_white(spinner), controls=[control])
    assert (caught.value.stage, caught.value.cause) == ("inference", DEADLINE)


def test_when_a_run_passes_its_cap_then_it_is_stopped_whatever_the_deadline(spinner: DetectionModel) -> None:
    control = RunControl(time.monotonic() + 3600)
    with pytest.raises(DeadlineExceeded) as caught:
        spinner.infer(_white(spinner), controls=[control], cap=0.2)
    assert caught.value.cause == RUN_CAP
    assert "run-time cap (200 ms)" in caught.value.message


def test_when_the_client_leaves_during_a_run_then_it_is_stopped(spinner: DetectionModel) -> None:
    control = RunControl()
    threading.Timer(0.2, control.cancel).start()
    with pytest.raises(ClientDisconnected) as caught:
        spinner.infer(_white(spinner), controls=[control])
    assert caught.value.stage == "inference"


def test_a_shared_run_goes_on_while_one_of_its_requests_still_waits(spinner: DetectionModel) -> None:
    gone, waiting = RunControl(), RunControl(time.monotonic() + 0.4)
    gone.cancel()
    with pytest.raises(DeadlineExceeded) as caught:  # stopped by the deadline of the one still waiting
        spinner.infer(_white(spinner), controls=[gone, waiting])
    assert caught.value.cause == DEADLINE
    first, second = RunControl(), RunControl()
    threading.Timer(0.1, first.cancel).start()
    threading.Timer(0.3, second.cancel).start()
    with pytest.raises(ClientDisconnected):
        spinner.infer(_white(spinner), controls=[first, second])


def test_a_request_that_gave_up_before_its_run_is_not_run(spinner: DetectionModel) -> None:
    watchdog = Watchdog()
    control = RunControl(time.monotonic() - 1)
    with pytest.raises(DeadlineExceeded):
        stoppable_run(spinner._session, {"images": _white(spinner)}, [control], watchdog=watchdog)
    assert watchdog.stopped == 0  # refused before any run, so nothing had to be stopped


def test_the_session_serves_again_after_a_stopped_run(spinner: DetectionModel) -> None:
    with pytest.raises(DeadlineExceeded):
        spinner.infer(_white(spinner), cap=0.1)
    (found,) = spinner.detect_rgb([BLACK])
    assert len(found) == 1  # the model's one known box, from the same session


def test_a_run_in_time_returns_its_output_and_is_not_stopped(spinner: DetectionModel) -> None:
    watchdog = Watchdog()
    control = RunControl(time.monotonic() + 3600)
    black = spinner.prepare([BLACK]).tensor
    (output,) = stoppable_run(spinner._session, {"images": black}, [control], cap=60, watchdog=watchdog)
    assert output.shape == (1, hostile.SLOTS, 6)
    assert watchdog.stopped == 0


def test_a_dedicated_watchdog_counts_what_it_stopped(spinner: DetectionModel) -> None:
    watchdog = Watchdog()
    with pytest.raises(DeadlineExceeded):
        stoppable_run(spinner._session, {"images": _white(spinner)}, cap=0.1, watchdog=watchdog)
    assert watchdog.stopped == 1


NOW = 100.0


@pytest.mark.parametrize(
    ("deadlines", "cancelled", "cap_end", "expected"),
    [
        ([None], [False], None, None),
        ([NOW + 1], [False], None, None),
        ([NOW], [False], None, DEADLINE),
        ([NOW - 1, NOW + 1], [False, False], None, None),  # one member still waits: the batch runs on
        ([NOW - 1, NOW - 2], [False, False], None, DEADLINE),
        ([None, None], [True, True], None, DISCONNECT),
        ([None, NOW - 1], [True, False], None, DEADLINE),  # all gave up, not all by leaving
        ([None, None], [True, False], None, None),
        ([NOW + 10], [False], NOW, RUN_CAP),  # the cap stops a run whatever its requests' deadlines
        ([], [], NOW + 1, None),
        ([], [], NOW - 1, RUN_CAP),
    ],
)
def test_when_a_watched_run_must_stop(
    deadlines: list[float | None], cancelled: list[bool], cap_end: float | None, expected: str | None
) -> None:
    controls = [RunControl(deadline) for deadline in deadlines]
    for control, gone in zip(controls, cancelled, strict=True):
        if gone:
            control.cancel()
    assert _Watched(controls, cap_end).reason(NOW) == expected
