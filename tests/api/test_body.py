"""Reading bodies: a client that disconnects while its work waits withdraws that work."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request
from starlette.types import Message

from warden.api.body import unless_disconnected
from warden.errors import ClientDisconnected


def request_with(messages: list[Message]) -> Request:
    queue: asyncio.Queue[Message] = asyncio.Queue()
    for message in messages:
        queue.put_nowait(message)
    return Request({"type": "http", "method": "POST", "path": "/", "headers": []}, queue.get)


def test_when_the_client_disconnects_first_then_the_work_is_cancelled() -> None:
    async def scenario() -> bool:
        started, cancelled = asyncio.Event(), asyncio.Event()

        async def work() -> str:
            started.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return "done"

        with pytest.raises(ClientDisconnected):
            await unless_disconnected(request_with([{"type": "http.disconnect"}]), work())
        await asyncio.sleep(0)
        return cancelled.is_set() or not started.is_set()

    assert asyncio.run(scenario())


def test_when_the_work_finishes_first_then_its_result_comes_back() -> None:
    async def scenario() -> str:
        async def work() -> str:
            return "done"

        return await unless_disconnected(request_with([]), work())

    assert asyncio.run(scenario()) == "done"
