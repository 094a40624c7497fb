"""Peers that speak the wire protocols badly on purpose must not hurt a running node."""

from __future__ import annotations

import os
import time
from pathlib import Path

import multiaddr
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11

from mycelium.net.framing import encode_varint
from mycelium.net.host import build_host

LOOPBACK = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]


def test_a_garbled_gossip_rpc_does_not_stop_a_node(spawn) -> None:
    node = spawn("node", "--group", "new", "--round-interval", "1")
    node.wait_for("round", timeout=120)
    target = info_from_p2p_addr(multiaddr.Multiaddr(node.addr))

    async def send_garbage() -> None:
        host = build_host(create_new_key_pair())
        async with host.run(LOOPBACK):
            with trio.fail_after(20):
                await host.connect(target)
                for payload in (os.urandom(64), b"\xff" * 40, b"\x0a\x05abc"):
                    stream = await host.new_stream(target.peer_id, [TProtocol(PROTOCOL_ID_V11)])
                    await stream.write(encode_varint(len(payload)) + payload)
                    await trio.sleep(0.5)

    sent_at = time.time()
    trio.run(send_garbage)
    node.wait_for(lambda e: e["event"] == "round" and e["time"] > sent_at + 3, timeout=60)
    assert node.process.poll() is None, node.stderr()[-2000:]


def test_our_own_messages_reach_every_subscribed_peer_even_with_an_empty_mesh() -> None:
    """py-libp2p's meshes can become one-sided; our publishes go to every subscriber (flood publish)."""
    from libp2p.peer.id import ID

    from mycelium.net.host import NetConfig, open_stack

    topic = "mycelium/group/flood-test"

    async def scenario() -> tuple[set[ID], set[ID], set[ID]]:
        config = NetConfig(listen=tuple(LOOPBACK))
        async with (
            open_stack(create_new_key_pair(), config) as a,
            open_stack(create_new_key_pair(), config) as b,
            open_stack(create_new_key_pair(), config) as c,
        ):
            for other in (b, c):
                await a.host.connect(info_from_p2p_addr(multiaddr.Multiaddr(other.listen_addrs()[0])))
            for stack in (a, b, c):
                await stack.pubsub.subscribe(topic)
            others = {b.host.get_id(), c.host.get_id()}
            with trio.fail_after(20):
                while set(a.pubsub.peer_topics.get(topic, ())) != others:
                    await trio.sleep(0.1)
            a.gossipsub.mesh[topic] = set()  # as if the mesh had lost them
            me = a.host.get_id()
            own = set(a.gossipsub._get_peers_to_send([topic], me, me))
            relayed = set(a.gossipsub._get_peers_to_send([topic], b.host.get_id(), b.host.get_id()))
        return own, relayed, others

    own, relayed, others = trio.run(scenario)
    assert own == others
    assert relayed == set()  # relaying stays the mesh's job


def test_a_running_node_survives_a_stream_of_hostile_gossip_joins_and_transfer_requests(spawn) -> None:
    """Fuzzed inputs (tests/test_fuzz.py's mutations, signed by the attacker's key) through the real
    wire paths of a learning node: its group topic's validator, its join handler, its transfer
    handler. It refuses them, keeps training, and its memory stays bounded."""
    import random

    from test_fuzz import FUZZ_INPUTS, hostile, mutate_bytes

    from mycelium.net import join, transfer
    from mycelium.net.framing import frame
    from mycelium.net.gossip import group_topic
    from mycelium.net.host import NetConfig, open_stack
    from mycelium.net.signing import Kind
    from mycelium.policy.peers import PeerId
    from mycelium.proto import mycelium_pb2 as pb

    node = spawn("node", "--group", "new", "--round-interval", "1")
    group = node.wait_for("joined", timeout=120)["group"]
    node.wait_for("round", timeout=120)
    target = info_from_p2p_addr(multiaddr.Multiaddr(node.addr))
    rss_before = _rss_mib(node.process.pid)
    count = max(FUZZ_INPUTS // 4, 100)
    rng = random.Random("running node")
    gossip_kinds = [Kind.MEMBER_HEARTBEAT, Kind.UPDATE_ANNOUNCE, Kind.MEMBER_LEFT, Kind.GROUP_SPLIT]
    gossip_kinds += [Kind.MERGE_OFFER, Kind.GROUP_RECORD]
    request = frame(pb.TransferRequest(content_hash=b"c" * 32, offset=0).SerializeToString())
    victim = PeerId(target.peer_id.to_bytes())

    async def attack() -> int:
        sent = 0
        async with open_stack(create_new_key_pair(), NetConfig(listen=tuple(LOOPBACK))) as stack:
            with trio.fail_after(600):
                await stack.host.connect(target)
                topic = group_topic(group)
                await stack.pubsub.subscribe(topic)
                await trio.sleep(2)
                for _ in range(count):
                    await stack.pubsub.publish(topic, hostile(rng.choice(gossip_kinds), rng))
                    sent += 1
                    if sent % 50 == 0:
                        await trio.sleep(0.05)
                for protocol, make in (
                    (join.PROTOCOL, lambda: frame(hostile(Kind.JOIN_REQUEST, rng))),
                    (transfer.PROTOCOL, lambda: mutate_bytes(request, rng)),
                ):
                    for _ in range(count):
                        stream = await stack.opener.open(victim, [protocol])
                        with trio.move_on_after(2):
                            try:
                                await stream.write(make())
                                await stream.close()
                            except Exception:  # noqa: BLE001 - the node may reset us first: its right
                                pass
                        sent += 1
        return sent

    sent_at = time.time()
    sent = trio.run(attack)
    assert sent == 3 * count
    node.wait_for(lambda e: e["event"] == "round" and e["time"] > sent_at + 3, timeout=120)
    assert node.process.poll() is None, node.stderr()[-2000:]
    grown = _rss_mib(node.process.pid) - rss_before
    print(f"{sent} hostile inputs; node RSS grew {grown:.0f} MiB")
    assert grown < 150


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")
