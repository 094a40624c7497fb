"""Calling into py-libp2p so that it cannot hang the caller.

py-libp2p 0.8.1 runs parts of its cleanup inside shielded cancel scopes with no bound (a stream's
reset in `BasicHost.new_stream`, a connection's close in the swarm, a Yamux read lock's release).
On a wedged connection those never return, and a `move_on_after` around the call cannot interrupt
them: in a 30-node mesh a node sat 577 s "between rounds", long past its watchdog's cancel. So a
DHT operation runs in a task of the stack's own nursery, and the caller waits for its outcome with
a deadline. A caller that gives up gets `trio.TooSlowError` at once; the task is cancelled too (it
stops as soon as py-libp2p lets it) and at most `limit` such tasks run at a time, so stuck ones
cannot pile up (streams have their own guard: streams.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

T = TypeVar("T")

DEFAULT_LIMIT = 32
GRACE = 5.0  # the task's own deadline is the caller's plus this


class Detached:
    def __init__(self, nursery: trio.Nursery | None, limit: int = DEFAULT_LIMIT) -> None:
        """Without a nursery, calls run inline (short-lived tools and tests)."""
        self._nursery = nursery
        self._limit = limit
        self.in_flight = 0

    async def run(self, call: Callable[[], Awaitable[T]], timeout: float) -> T:
        """`call()`'s result, or its exception; `trio.TooSlowError` after `timeout` seconds."""
        if self._nursery is None:
            with trio.fail_after(timeout):
                return await call()
        if self.in_flight >= self._limit:
            raise trio.TooSlowError(f"{self.in_flight} network calls are still running")
        send, receive = trio.open_memory_channel[tuple[bool, object]](1)
        self.in_flight += 1
        self._nursery.start_soon(self._attempt, call, timeout + GRACE, send)
        with trio.move_on_after(timeout) as scope:
            succeeded, value = await receive.receive()
        receive.close()
        if scope.cancelled_caught:
            raise trio.TooSlowError(f"no answer within {timeout:.0f} s")
        if not succeeded:
            raise value  # type: ignore[misc]
        return value  # type: ignore[return-value]

    async def _attempt(
        self,
        call: Callable[[], Awaitable[object]],
        deadline: float,
        send: trio.MemorySendChannel[tuple[bool, object]],
    ) -> None:
        try:
            with trio.move_on_after(deadline):
                try:
                    outcome: tuple[bool, object] = (True, await call())
                except Exception as error:  # noqa: BLE001 - handed to the caller
                    outcome = (False, error)
                try:
                    send.send_nowait(outcome)
                except (trio.BrokenResourceError, trio.WouldBlock):
                    pass  # the caller gave up
        finally:
            self.in_flight -= 1
