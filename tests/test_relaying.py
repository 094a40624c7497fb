"""Group-topic relays go only to subscribers that ask for the author (policy/relaying.py); the heartbeats
of running members say whom they hear."""

from __future__ import annotations

import time
from collections.abc import Callable

import multiaddr
import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.pb import rpc_pb2

from mycelium.errors import InvalidMessage
from mycelium.net.gossip import Topic, run_topic
from mycelium.net.host import NetConfig, Stack, open_stack
from mycelium.net.messages import decode_group_message, seal_group_message
from mycelium.net.signing import Kind, Signed, open_envelope, peer_id_of
from mycelium.net.traffic import Traffic
from mycelium.policy.messages import Heartbeat, Stamp
from mycelium.policy.peers import PeerId
from mycelium.policy.relaying import MAX_DECLARATIONS, MAX_LISTED, Relaying
from mycelium.proto import mycelium_pb2 as pb

HEARTBEAT = 5.0  # the production default (config.Timing.heartbeat)
A, B, C = b"\x00\x24author-a", b"\x00\x24member-b", b"\x00\x24member-c"


def test_we_list_the_authors_heard_directly_within_the_window() -> None:
    relaying = Relaying(HEARTBEAT)
    assert relaying.hears(now=100.0) == frozenset()  # a newcomer has heard nobody yet
    relaying.heard_directly(A, now=100.0)
    relaying.heard_directly(B, now=101.0)
    assert relaying.hears(now=100.0 + relaying.hear_window) == {A, B}
    assert relaying.hears(now=100.1 + relaying.hear_window) == {B}


def test_the_list_keeps_the_latest_authors_heard() -> None:
    relaying = Relaying(HEARTBEAT)
    authors = [i.to_bytes(4, "big") for i in range(MAX_LISTED + 1)]
    for author in authors:
        relaying.heard_directly(author, now=1.0)
    relaying.heard_directly(authors[1], now=1.0)
    assert relaying.hears(now=1.0) == set(authors) - {authors[0]}


@pytest.mark.parametrize(
    ("hears", "age", "author", "relay"),
    [
        (None, 0.0, A, True),  # listed nothing: relay as GossipSub would
        (frozenset(), 0.0, A, True),  # hears nobody itself
        (frozenset({A}), 0.0, A, False),  # hears A itself
        (frozenset({A}), 0.0, B, True),  # B, which it did not list: a member it cannot reach, a newcomer
        (frozenset({A}), 3 * HEARTBEAT, A, False),
        (frozenset({A}), 3 * HEARTBEAT + 0.1, A, True),  # its list is too old: as if none
    ],
    ids=["none", "nobody", "hears the author", "another author", "old", "too old"],
)
def test_relays_skip_only_authors_the_latest_fresh_list_names(
    hears: frozenset[bytes] | None, age: float, author: bytes, relay: bool
) -> None:
    relaying = Relaying(HEARTBEAT)
    relaying.declare(C, hears, now=10.0)
    assert relaying.relay_to(C, author, now=10.0 + age) is relay
    assert relaying.relay_to(B, author, now=10.0 + age)  # another subscriber's list changes nothing for B


def test_a_list_replaces_the_last_one_and_listing_nothing_withdraws_it() -> None:
    relaying = Relaying(HEARTBEAT)
    relaying.declare(C, frozenset({A}), now=1.0)
    relaying.declare(C, frozenset({B}), now=2.0)
    assert relaying.relay_to(C, A, now=2.0) and not relaying.relay_to(C, B, now=2.0)
    relaying.declare(C, None, now=3.0)
    assert relaying.relay_to(C, B, now=3.0)


def test_lists_are_bounded_and_the_oldest_go_first() -> None:
    relaying = Relaying(HEARTBEAT)
    peers = [i.to_bytes(4, "big") for i in range(MAX_DECLARATIONS + 1)]
    for peer in peers:
        relaying.declare(peer, frozenset({A}), now=1.0)
    assert relaying.relay_to(peers[0], A, now=1.0)  # forgotten: relayed to as GossipSub would
    assert not relaying.relay_to(peers[-1], A, now=1.0)


def _beat(heard: frozenset[PeerId] | None) -> tuple[Heartbeat, KeyPair]:
    key_pair = create_new_key_pair()
    return Heartbeat(
        stamp=Stamp(peer_id_of(key_pair), 1, time.time()),
        group_id="g" * 32,
        round=3,
        model_hash=b"\x01" * 32,
        accuracy=0.5,
        addrs=(),
        record_version=1,
        record_digest=b"\x02" * 32,
        heard=heard,
    ), key_pair


@pytest.mark.parametrize(
    "heard", [None, frozenset(), frozenset({PeerId(A), PeerId(B)})], ids=["listed nothing", "nobody", "two"]
)
def test_a_heartbeats_list_of_authors_heard_survives_the_wire(heard: frozenset[PeerId] | None) -> None:
    beat, key_pair = _beat(heard)
    data = seal_group_message(key_pair, beat)
    decoded = decode_group_message(open_envelope(data, Kind.MEMBER_HEARTBEAT, 1 << 20), time.time())
    assert isinstance(decoded, Heartbeat) and decoded.heard == heard


def test_a_heartbeat_listing_more_authors_than_a_group_holds_is_refused() -> None:
    beat, key_pair = _beat(frozenset(PeerId(i.to_bytes(2, "big") + b"peer") for i in range(MAX_LISTED + 1)))
    data = seal_group_message(key_pair, beat)
    with pytest.raises(InvalidMessage, match="heard directly"):
        decode_group_message(open_envelope(data, Kind.MEMBER_HEARTBEAT, 1 << 20), time.time())


# --- real hosts -------------------------------------------------------------------------------------

LOOPBACK = (multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0"),)
TOPIC = "mycelium/group/relay-test"
NAMES = ("a", "b", "c", "d")
KINDS = frozenset({Kind.MEMBER_HEARTBEAT})


def test_relays_skip_members_that_hear_the_author_and_one_it_cannot_reach_still_hears_it() -> None:
    """Four real hosts on one topic, each in the others' mesh; D is not connected to A. Each tells
    the others whom it heard directly, as its heartbeat would: then A's next message goes from B and
    C to D only, and D still gets it."""

    async def scenario() -> tuple[
        dict[str, frozenset[bytes]], dict[str, list[tuple[str, str]]], dict[str, bytes]
    ]:
        config = NetConfig(listen=LOOPBACK)
        pairs = {name: create_new_key_pair() for name in NAMES}
        heard: dict[str, list[str]] = {name: [] for name in NAMES}
        relayings = {name: Relaying(HEARTBEAT) for name in NAMES}
        sent: dict[str, list[tuple[str, str]]] = {name: [] for name in NAMES}  # (to, text) of each send
        async with (
            open_stack(pairs["a"], config) as a,
            open_stack(pairs["b"], config) as b,
            open_stack(pairs["c"], config) as c,
            open_stack(pairs["d"], config) as d,
            trio.open_nursery() as nursery,
        ):
            stacks = dict(zip(NAMES, (a, b, c, d), strict=True))
            raw = {name: stack.host.get_id().to_bytes() for name, stack in stacks.items()}
            name_of = {peer: name for name, peer in raw.items()}
            for one, other in ("ab", "ac", "bc", "bd", "cd"):
                addr = multiaddr.Multiaddr(stacks[other].listen_addrs()[0])
                await stacks[one].host.connect(info_from_p2p_addr(addr))
            for name, stack in stacks.items():
                _record_sends(stack, name_of, sent[name])
                topic = Topic(
                    TOPIC,
                    stack.pubsub,
                    pairs[name],
                    Traffic(),
                    KINDS,
                    relaying=relayings[name],
                )
                ready = trio.Event()
                nursery.start_soon(run_topic, topic, _texts_into(heard[name]), ready, stack.peer_id)
                await ready.wait()
            linked = {"a": "bc", "b": "acd", "c": "abd", "d": "bc"}
            with trio.fail_after(30):
                while any(
                    {name_of[p.to_bytes()] for p in stacks[name].gossipsub.mesh.get(TOPIC, ())} != set(others)
                    for name, others in linked.items()
                ):
                    await trio.sleep(0.1)

            async def publish(name: str, text: str) -> None:
                await stacks[name].pubsub.publish(
                    TOPIC, seal_group_message(pairs[name], _beat_of(pairs[name], text))
                )
                with trio.fail_after(20):
                    while any(text not in heard[other] for other in NAMES if other != name):
                        await trio.sleep(0.05)

            for name in NAMES:  # nobody has listed anything yet: relayed as GossipSub would
                await publish(name, f"hello from {name}")
            now = time.monotonic()
            hears = {name: relayings[name].hears(now) for name in NAMES}
            for name in NAMES:  # what every heartbeat tells every other member
                for other in NAMES:
                    if other != name:
                        relayings[other].declare(raw[name], hears[name], now)
            for name in NAMES:
                sent[name].clear()
            await publish("a", "after the heartbeats")
            await trio.sleep(0.5)  # any late relay
            nursery.cancel_scope.cancel()
        return hears, sent, raw

    hears, sent, raw = trio.run(scenario)
    assert hears["d"] == {raw["b"], raw["c"]}  # A's messages reached D only through them
    assert hears["a"] == {raw["b"], raw["c"]}
    assert hears["b"] == {raw["a"], raw["c"], raw["d"]} and hears["c"] == {raw["a"], raw["b"], raw["d"]}
    assert sorted(sent["a"]) == [("b", "after the heartbeats"), ("c", "after the heartbeats")]
    assert sent["b"] == [("d", "after the heartbeats")]  # not to C, which hears A itself
    assert sent["c"] == [("d", "after the heartbeats")]
    assert sent["d"] == []


def _beat_of(key_pair: KeyPair, text: str) -> Heartbeat:
    beat, _ = _beat(None)
    return Heartbeat(
        **{
            **beat.__dict__,
            "stamp": Stamp(peer_id_of(key_pair), time.time_ns(), time.time()),
            "group_id": text,
        }
    )


def _text_of(signed: Signed) -> str:
    return signed.decode(pb.MemberHeartbeat).group_id


def _texts_into(texts: list[str]) -> Callable[[Signed], None]:
    return lambda signed: texts.append(_text_of(signed))


def _record_sends(stack: Stack, name_of: dict[bytes, str], into: list[tuple[str, str]]) -> None:
    """Record every message the stack's GossipSub sends, by receiver (control-only RPCs are left out)."""
    router = stack.gossipsub
    send = router.send_rpc

    def recording(peer_id: ID, rpc: rpc_pb2.RPC, *args: object, **kwargs: object) -> None:
        for message in rpc.publish:
            into.append(
                (name_of.get(peer_id.to_bytes(), "?"), _text_of(open_envelope(message.data, KINDS, 1 << 20)))
            )
        send(peer_id, rpc, *args, **kwargs)

    router.send_rpc = recording


def test_a_running_members_heartbeats_name_the_members_it_hears_directly(spawn) -> None:  # type: ignore[no-untyped-def]
    """What the relay rule rests on, from real node processes: a listener on the group's topic reads
    every member's heartbeats, and each lists the other members (heard directly), never itself."""
    from test_group_protocol import _stack, form_group

    from mycelium.net.gossip import group_topic

    boot, members, group = form_group(spawn, 3)
    ids = {PeerId(ID.from_base58(node.peer_id).to_bytes()) for node in members}

    async def listen() -> dict[PeerId, frozenset[PeerId] | None]:
        _, opening = await _stack(boot.addr)
        latest: dict[PeerId, frozenset[PeerId] | None] = {}
        async with opening as stack:
            for node in members:
                await stack.host.connect(info_from_p2p_addr(multiaddr.Multiaddr(node.addr)))
            subscription = await stack.pubsub.subscribe(group_topic(group))
            with trio.move_on_after(60):
                while len(latest) < len(ids) or any(latest[a] != ids - {a} for a in ids if a in latest):
                    message = await subscription.get()
                    try:
                        signed = open_envelope(message.data, Kind.MEMBER_HEARTBEAT, 1 << 20)
                    except InvalidMessage:
                        continue  # announcements, records
                    beat = decode_group_message(signed, time.time())
                    if isinstance(beat, Heartbeat) and beat.stamp.author in ids:
                        latest[beat.stamp.author] = beat.heard
        return latest

    latest = trio.run(listen)
    assert set(latest) == ids, latest
    for author, heard in latest.items():
        assert heard == ids - {author}, (author, heard)
