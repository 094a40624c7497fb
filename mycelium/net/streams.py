"""Opening streams so that py-libp2p cannot hang the caller.

py-libp2p 0.8.1's `BasicHost.new_stream` cleans up a failed attempt inside a shielded cancel scope
(`net_stream.reset()` under `trio.CancelScope(shield=True)`, with no bound). On a wedged connection
(seen in a 30-node mesh: both ends' receive queues full, neither side reading) that reset never
returns, and no `fail_after` around the call can interrupt it: a node's rejoin stayed stuck for
good. So every stream we open is opened by a task in the stack's own nursery, and the caller waits
for it with a deadline. A caller that gives up gets an error at once; the attempt finishes (or
not) on its own; the peer's connection is dropped, so that the next attempt dials afresh; and at
most a few attempts per peer are in flight, so stuck ones cannot pile up.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.network.exceptions import SwarmException
from libp2p.peer.id import ID

from mycelium.policy.peers import PeerId

log = logging.getLogger(__name__)

OPEN_TIMEOUT = 10.0
MAX_IN_FLIGHT_PER_PEER = 8
DROP_TIMEOUT = 5.0
NO_VALID_CONNECTIONS = "No valid connections available"  # py-libp2p 0.8.1's SwarmException, pinned by a test


OutcomeChannel = trio.MemorySendChannel["INetStream | BaseException"]


async def reset_quietly(stream: INetStream) -> None:
    """Reset a stream we are done with because something went wrong; at most a second, never raises."""
    await close_quietly(stream, graceful=False)


async def close_quietly(stream: INetStream, graceful: bool = True) -> None:
    """Close a stream we are done with (reset it unless `graceful`); at most a second, never raises."""
    with trio.move_on_after(1):
        try:
            await (stream.close() if graceful else stream.reset())
        except Exception as error:  # noqa: BLE001 - already gone
            log.debug("stream %s: %s", "close" if graceful else "reset", error)


class StreamOpenError(Exception):
    """The stream could not be opened (the message says why); the peer may be unreachable or wedged."""


class StreamOpener:
    def __init__(self, host: IHost, nursery: trio.Nursery) -> None:
        self._host = host
        self._nursery = nursery
        self._in_flight: Counter[PeerId] = Counter()

    async def open(
        self, peer: PeerId, protocols: Sequence[TProtocol], timeout: float = OPEN_TIMEOUT
    ) -> INetStream:
        if self._in_flight[peer] >= MAX_IN_FLIGHT_PER_PEER:
            raise StreamOpenError(f"{MAX_IN_FLIGHT_PER_PEER} streams to {peer.short} are still opening")
        send, receive = trio.open_memory_channel[INetStream | BaseException](1)
        self._in_flight[peer] += 1
        self._nursery.start_soon(self._attempt, peer, list(protocols), send)
        with trio.move_on_after(timeout) as scope:
            outcome = await receive.receive()
        receive.close()
        if scope.cancelled_caught:
            self._nursery.start_soon(self._drop_connection, peer)
            raise StreamOpenError(f"no stream to {peer.short} within {timeout:.0f} s")
        if isinstance(outcome, BaseException):
            raise StreamOpenError(f"{type(outcome).__name__}: {outcome}") from None
        return outcome

    async def _attempt(
        self,
        peer: PeerId,
        protocols: list[TProtocol],
        send: trio.MemorySendChannel[INetStream | BaseException],
    ) -> None:
        try:
            try:
                outcome: INetStream | BaseException = await self._new_stream(ID(peer.raw), protocols)
            except Exception as error:  # noqa: BLE001 - handed to the caller
                outcome = error
            try:
                send.send_nowait(outcome)
            except (trio.BrokenResourceError, trio.WouldBlock):
                if not isinstance(outcome, BaseException):  # the caller gave up: nobody will use it
                    await reset_quietly(outcome)
        finally:
            self._in_flight[peer] -= 1
            if self._in_flight[peer] <= 0:
                del self._in_flight[peer]

    async def _new_stream(self, peer: ID, protocols: list[TProtocol]) -> INetStream:
        """py-libp2p's new_stream, once more over a fresh dial when it found only closed connections
        (they can close while it waits for a stream slot or a dial)."""
        self._forget_closed_connections(peer)
        try:
            return await self._host.new_stream(peer, protocols)
        except SwarmException as error:
            if NO_VALID_CONNECTIONS not in str(error):
                raise
        self._forget_closed_connections(peer)
        return await self._host.new_stream(peer, protocols)

    def _forget_closed_connections(self, peer: ID) -> None:
        """Take connections that are closed out of the swarm's records, so that `new_stream` dials.

        py-libp2p 0.8.1 marks a connection closed first, then awaits its muxer's close, and only then
        removes it from its records (`SwarmConn.close`). Until then `new_stream` finds only closed
        connections and raises "No valid connections available" instead of dialing; when the muxer's
        close hangs (a wedged connection), that lasts for good. At 100 peers on 2 cores, 367 of 560
        failed group evaluations had met it, some holders many times over (benchmarks/RESULTS.md).
        `remove_conn` only forgets the connection; its own close still runs to its end.
        """
        swarm = self._host.get_network()
        for connection in swarm.get_connections(peer):
            if connection.is_closed:
                swarm.remove_conn(connection)  # type: ignore[attr-defined]  # Swarm's, not in INetworkService

    async def _drop_connection(self, peer: PeerId) -> None:
        """Close a connection that could not open a stream in time, so the next attempt dials afresh."""
        with trio.move_on_after(DROP_TIMEOUT):
            try:
                await self._host.disconnect(ID(peer.raw))
                log.info("dropped the connection to %s: it could not open a stream in time", peer.short)
            except Exception as error:  # noqa: BLE001 - best effort
                log.debug("disconnect %s: %s", peer.short, error)
