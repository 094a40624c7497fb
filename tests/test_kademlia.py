"""Our Kademlia client (net/kademlia.py) against real py-libp2p DHT servers on loopback."""

from __future__ import annotations

from collections.abc import Callable

import multiaddr
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.kad_dht.common import PROTOCOL_ID as KAD_PROTOCOL
from libp2p.kad_dht.pb.kademlia_pb2 import Message
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from records import group_record

from mycelium.net.framing import FrameReader, frame
from mycelium.net.host import MAX_INBOUND_KAD_STREAMS, NetConfig, Stack, open_stack
from mycelium.net.kademlia import KadClient
from mycelium.net.messages import seal_record
from mycelium.net.registry import Registry
from mycelium.policy.records import group_key

LOOPBACK = (multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0"),)


async def _connect(stack: Stack, others: list[Stack]) -> None:
    for other in others:
        addrs = [multiaddr.Multiaddr(a) for a in other.listen_addrs()]
        await stack.connect(PeerInfo(other.host.get_id(), addrs))


async def _join(stacks: list[Stack], nursery: trio.Nursery) -> Stack:
    """One more DHT server, connected to every stack in `stacks`."""
    opened = trio.Event()
    holder: list[Stack] = []

    async def run() -> None:
        async with open_stack(create_new_key_pair(), NetConfig(listen=LOOPBACK)) as stack:
            holder.append(stack)
            opened.set()
            await trio.sleep_forever()

    nursery.start_soon(run)
    await opened.wait()
    await _connect(holder[0], stacks)
    return holder[0]


async def _network(count: int, nursery: trio.Nursery) -> list[Stack]:
    """`count` DHT servers, each connected to every earlier one."""
    stacks: list[Stack] = []
    for _ in range(count):
        stacks.append(await _join(stacks, nursery))
    return stacks


def _answer_every_request(liar: Stack, answer: Callable[[Message], Message]) -> None:
    """`liar` answers every Kademlia request on its streams with `answer(request)`."""

    async def serve(stream) -> None:  # type: ignore[no-untyped-def]
        frames = FrameReader(stream)
        while True:
            request = Message()
            request.ParseFromString(await frames.read_frame(1 << 20))
            await stream.write(frame(answer(request).SerializeToString()))

    liar.host.set_stream_handler(KAD_PROTOCOL, serve)


def test_a_record_put_by_one_peer_is_read_from_the_network_by_another() -> None:
    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            writer, *servers = await _network(5, nursery)
            key_pair = create_new_key_pair()
            record = seal_record(key_pair, group_record(key_pair))
            await Registry(writer.dht, key_pair, nursery=writer.nursery).put_group(record)
            holders = [s for s in servers if s.dht.value_store.get(group_key(record.group_id).encode())]
            assert len(holders) == len(servers)  # fewer than k servers: every one is a replica
            reader = await _join(servers[-1:], nursery)  # joins later: only the network can answer
            found = await Registry(reader.dht, key_pair, nursery=reader.nursery).get_group(record.group_id)
            assert found is not None and found.signed == record.signed
            nursery.cancel_scope.cancel()

    trio.run(scenario)


def test_a_forged_value_from_one_server_is_ignored_and_the_valid_one_returned() -> None:
    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            writer, honest, liar = await _network(3, nursery)
            key_pair = create_new_key_pair()
            record = seal_record(key_pair, group_record(key_pair))
            key = group_key(record.group_id)

            def forged(request: Message) -> Message:
                answer = Message(type=request.type, key=request.key)
                answer.record.key = request.key
                answer.record.value = record.signed[:-1] + bytes([record.signed[-1] ^ 1])
                return answer

            _answer_every_request(liar, forged)
            await Registry(writer.dht, key_pair, nursery=writer.nursery).put_group(record)
            assert honest.dht.value_store.get(key.encode()) is not None
            reader = await _join([honest, liar], nursery)
            found = await Registry(reader.dht, key_pair, nursery=reader.nursery).get_group(record.group_id)
            assert found is not None and found.signed == record.signed
            nursery.cancel_scope.cancel()

    trio.run(scenario)


def test_back_to_back_requests_to_a_peer_reuse_one_stream() -> None:
    async def scenario() -> int:
        async with trio.open_nursery() as nursery:
            client, *servers = await _network(4, nursery)
            opened = 0

            async def open_counted(peer, protocols):  # type: ignore[no-untyped-def]
                nonlocal opened
                opened += 1
                return await client.host.new_stream(peer, protocols)

            kad = KadClient(
                client.host,
                client.dht.routing_table,
                client.dht.value_store,
                client.dht.validator,
                open_counted,
                client.nursery,
            )
            for _ in range(5):
                assert await kad.get(group_key("0" * 32)) is None
            nursery.cancel_scope.cancel()
            return opened

    assert trio.run(scenario) == 3  # one per server, not one per request


def test_our_dht_server_answers_more_concurrent_streams_than_py_libp2ps_12() -> None:
    async def scenario() -> int:
        async with trio.open_nursery() as nursery:
            client, server = await _network(2, nursery)
            assert server.dht._inbound_limiter.total_tokens == MAX_INBOUND_KAD_STREAMS
            streams = [await client.host.new_stream(server.host.get_id(), [KAD_PROTOCOL]) for _ in range(20)]
            ask = Message(type=Message.MessageType.FIND_NODE, key=b"/mycelium/group/x")
            answered = 0
            for stream in streams:
                await stream.write(frame(ask.SerializeToString()))
            for stream in streams:
                with trio.move_on_after(5):
                    reply = Message()
                    reply.ParseFromString(await FrameReader(stream).read_frame(1 << 20))
                    answered += reply.type == Message.MessageType.FIND_NODE
            nursery.cancel_scope.cancel()
            return answered

    assert trio.run(scenario) == 20


def test_a_refresh_finds_every_peer_of_a_chain_that_knows_only_its_neighbour() -> None:
    async def scenario() -> tuple[int, int]:
        async with trio.open_nursery() as nursery:
            chain: list[Stack] = []
            for _ in range(6):  # each knows only the one started before it
                chain.append(await _join(chain[-1:], nursery))
            last = chain[-1]
            before = last.dht.get_routing_table_size()
            await last.fill_routing_table()
            after = last.dht.get_routing_table_size()
            nursery.cancel_scope.cancel()
            return before, after

    assert trio.run(scenario) == (1, 5)


def test_peers_that_one_connected_liar_makes_up_never_enter_the_routing_table() -> None:
    invented = {ID.from_pubkey(create_new_key_pair().public_key).to_bytes() for _ in range(20)}

    async def scenario() -> tuple[set[bytes], set[bytes]]:
        async with trio.open_nursery() as nursery:
            honest = await _network(10, nursery)
            liar = await _join(honest, nursery)

            def naming_made_up_peers(request: Message) -> Message:
                answer = Message(type=request.type, key=request.key)
                for peer_id in invented:
                    peer = answer.closerPeers.add()
                    peer.id = peer_id
                    peer.addrs.append(multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/1").to_bytes())
                return answer

            _answer_every_request(liar, naming_made_up_peers)
            me = await _join([*honest, liar], nursery)
            await me.fill_routing_table()
            table = {peer.to_bytes() for peer in me.dht.routing_table.get_peer_ids()}
            nursery.cancel_scope.cancel()
        return table, {stack.host.get_id().to_bytes() for stack in honest}

    table, honest_ids = trio.run(scenario)
    assert honest_ids <= table
    assert not table & invented
