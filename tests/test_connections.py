"""How many connections a peer keeps by itself: py-libp2p's auto-connector, held to our low watermark."""

from __future__ import annotations

from contextlib import AsyncExitStack

import multiaddr
import trio
from libp2p.crypto.ed25519 import create_new_key_pair

from mycelium.net.host import LOW_WATERMARK, NetConfig, open_stack

LOOPBACK = (multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0"),)


def test_the_auto_connector_dials_known_peers_only_up_to_the_low_watermark() -> None:
    """py-libp2p's own dials every peer it has heard of (it aims at 200 connections)."""

    async def main() -> tuple[int, int]:
        async with AsyncExitStack() as stacks:

            def a_stack():
                return stacks.enter_async_context(
                    open_stack(create_new_key_pair(), NetConfig(listen=LOOPBACK))
                )

            others = [await a_stack() for _ in range(LOW_WATERMARK + 4)]
            me = await a_stack()
            for other in others:
                me.remember_addrs(other.peer_id, other.dialable_addrs())
            connector = me.host.get_network().auto_connector
            await connector.maybe_connect()
            first = len(me.connected_peers())
            await connector.maybe_connect()
            return first, len(me.connected_peers())

    assert trio.run(main) == (LOW_WATERMARK, LOW_WATERMARK)
