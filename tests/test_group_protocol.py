"""Group protocol v2 against parties we did not write: an outsider that forges the group's record,
a member that lies about being ahead, a replayer, and nodes killed with SIGKILL. Real node
processes on loopback, production timing."""

from __future__ import annotations

import os
import time
from dataclasses import replace

import multiaddr
import pytest
import trio
from conftest import NodeProcess
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.peerinfo import info_from_p2p_addr

from mycelium.net.gossip import Topic, group_topic
from mycelium.net.host import NetConfig, open_stack, parse_multiaddr
from mycelium.net.messages import GROUP_KINDS, seal_record
from mycelium.net.registry import Registry
from mycelium.net.signing import peer_id_of
from mycelium.net.traffic import Traffic
from mycelium.policy.records import GroupRecord, Member, group_key

CALM = ["--round-interval", "1", "--partition", "iid"]
LOOPBACK = "/ip4/127.0.0.1/tcp/0"


def form_group(spawn, count: int, *extra: str) -> tuple[NodeProcess, list[NodeProcess], str]:  # type: ignore[no-untyped-def]
    """A DHT-only bootstrap peer and `count` learners in one group (the first created it)."""
    boot = spawn("boot", "--group", "none")
    common = ["--bootstrap", boot.addr, *CALM, *extra]
    creator = spawn("m0", "--group", "new", "--shard", f"0/{count}", *common)
    group = creator.wait_for("joined")["group"]
    others = [spawn(f"m{i}", "--group", group, "--shard", f"{i}/{count}", *common) for i in range(1, count)]
    members = [creator, *others]
    for node in members:
        node.wait_for(lambda e: e["event"] == "round" and e["members"] == count, timeout=180)
    return boot, members, group


def events_since(node: NodeProcess, since: float, name: str) -> list[dict]:
    return [e for e in node.events() if e["event"] == name and e["time"] >= since]


async def _stack(bootstrap: str):  # type: ignore[no-untyped-def]
    key_pair = create_new_key_pair()
    config = NetConfig(
        listen=(multiaddr.Multiaddr(LOOPBACK),), bootstrap=(parse_multiaddr(bootstrap, what="b"),)
    )
    return key_pair, open_stack(key_pair, config)


def test_an_outsiders_record_for_a_group_is_refused_by_every_member_and_never_wins_a_dht_read(spawn) -> None:
    boot, members, group = form_group(spawn, 3)
    key = group_key(group)

    async def attack() -> tuple[dict[str, list[bool]], GroupRecord]:
        key_pair, opening = await _stack(boot.addr)
        outsider = peer_id_of(key_pair)
        async with opening as stack:
            await stack.bootstrap(lambda message: None)
            for node in members:
                await stack.host.connect(info_from_p2p_addr(multiaddr.Multiaddr(node.addr)))
            registry = Registry(stack.dht, key_pair)
            with trio.fail_after(60):
                honest = None
                while honest is None:
                    honest = await registry.get_group(group)
            now = time.time()
            me = Member(outsider, now, now)

            def forged(members_listed: tuple[Member, ...]) -> GroupRecord:
                version = honest.successor(now, 60, leader=outsider, members=members_listed)
                return seal_record(key_pair, replace(version, version=honest.version + 1000))

            variants = {
                "lists only itself": forged((me,)),
                "lists itself and every member": forged((*honest.members, me)),
                "takes over: every member but the leader, and itself": forged(
                    (*[m for m in honest.members if m.peer_id != honest.leader], me)
                ),
            }
            topic = Topic(group_topic(group), stack.pubsub, key_pair, Traffic(), GROUP_KINDS)
            await stack.pubsub.subscribe(topic.name)
            await trio.sleep(3)  # let the gossip mesh take us in
            stored_by: dict[str, list[bool]] = {}
            peers = [info_from_p2p_addr(multiaddr.Multiaddr(n.addr)).peer_id for n in members]
            for reason, record in variants.items():
                stored_by[reason] = [
                    await stack.dht.value_store._store_at_peer(peer, key.encode(), record.signed)
                    for peer in peers
                ]
                await topic.publish(record.signed)
            # the outsider also answers DHT reads with its forgery from now on
            stack.dht.value_store.put(key.encode(), variants["lists itself and every member"].signed)
            await trio.sleep(8)

            fresh_key, fresh_opening = await _stack(boot.addr)
            async with fresh_opening as reader:
                await reader.bootstrap(lambda message: None)
                for node in members:
                    await reader.host.connect(info_from_p2p_addr(multiaddr.Multiaddr(node.addr)))
                await reader.host.connect(info_from_p2p_addr(multiaddr.Multiaddr(stack.listen_addrs()[0])))
                await reader.dht.add_peer(stack.host.get_id())
                read = await Registry(reader.dht, fresh_key).get_group(group)
                reader.nursery.cancel_scope.cancel()
            stack.nursery.cancel_scope.cancel()
            assert read is not None
            return stored_by, read

    attacked_at = time.time()
    stored_by, read = trio.run(attack)
    for reason, accepted in stored_by.items():
        assert accepted == [False] * len(members), f"a DHT node stored the forgery that {reason}"
    honest_ids = {m.peer_id for m in members}
    assert {str(p) for p in read.member_ids} == honest_ids, "a fresh DHT read returned the forgery"
    assert str(read.leader) == members[0].peer_id
    time.sleep(3)
    for node in members:
        refused = events_since(node, attacked_at, "record_refused")
        assert refused and refused[0]["reason"] == "forged", f"{node.name}: {refused}"
        assert not events_since(node, attacked_at, "left"), f"{node.name} left its group"
        assert not events_since(node, attacked_at, "rejoining")
        latest = node.rounds()[-1]
        assert latest["group"] == group and latest["members"] == 3


def test_a_member_claiming_a_round_far_ahead_with_a_garbage_model_changes_no_honest_model(spawn) -> None:
    boot = spawn("boot", "--group", "none")
    common = ["--bootstrap", boot.addr, *CALM, "--rounds", "8", "--min-members", "4"]
    honest = [spawn("h0", "--group", "new", "--shard", "0/4", *common)]
    group = honest[0].wait_for("joined")["group"]
    honest += [spawn(f"h{i}", "--group", group, "--shard", f"{i}/4", *common) for i in (1, 2)]
    os.environ["MYCELIUM_ALLOW_ATTACKS"] = "1"
    try:
        liar = spawn("liar", "--group", group, "--shard", "3/4", "--attack", "lie-round", *common)
    finally:
        del os.environ["MYCELIUM_ALLOW_ATTACKS"]
    for node in [*honest, liar]:
        assert node.process.wait(240) == 0, node.stderr()[-2000:]
    for node in honest:
        caught_up = [e for e in node.events() if e["event"] == "caught_up"]
        assert all(e["to_round"] < 1000 for e in caught_up), caught_up
        assert len(node.rounds()) == 8 and node.rounds()[-1]["accuracy"] >= 0.88, node.rounds()[-1]
    by_round: dict[int, set[str]] = {}
    for node in honest:
        for event in node.rounds():
            if event["contributors"] == 4:
                by_round.setdefault(event["round"], set()).add(event["model_hash"])
    assert by_round and all(len(hashes) == 1 for hashes in by_round.values()), by_round


def killed_and_restarted(  # type: ignore[no-untyped-def]
    spawn, boot: NodeProcess, members: list[NodeProcess], group: str, node: NodeProcess, name: str, *args: str
) -> NodeProcess:
    """kill -9 of `node`; once the others have gone on three rounds, the same node (its identity,
    data directory and `args`) again, which must be in step with the group, not training on alone
    from its checkpoint's round."""
    peer_id = node.peer_id
    node.kill()
    killed_at = time.time()
    for survivor in [m for m in members if m is not node and m.process.poll() is None]:
        deadline = time.time() + 60
        while len([e for e in survivor.rounds() if e["time"] > killed_at]) < 3:
            assert time.time() < deadline, f"{survivor.name} stalled after {name} was killed"
            time.sleep(0.5)
    again = spawn(name, "--group", group, "--bootstrap", boot.addr, *CALM, *args, data_dir=node.data_dir)
    assert again.peer_id == peer_id
    group_round = max(r["round"] for m in members if m is not node for r in m.rounds())
    joined = again.wait_for("joined", timeout=120)
    assert joined["group"] == group
    again.wait_for(
        lambda e: e["event"] == "round" and e["group"] == group and e["round"] >= group_round, timeout=120
    )
    return again


def test_kill_9_of_a_member_and_of_the_leader_then_restart_resumes_the_same_group(spawn) -> None:
    boot, members, group = form_group(spawn, 4)
    members[3] = killed_and_restarted(spawn, boot, members, group, members[3], "m3-again", "--shard", "3/4")
    members[0] = killed_and_restarted(spawn, boot, members, group, members[0], "m0-again", "--shard", "0/4")
    start = time.time()
    for node in members:
        node.wait_for(
            lambda e: e["event"] == "round" and e["time"] > start and e["members"] == 4, timeout=120
        )
    for node in members:
        rounds = node.rounds()
        assert all(r["group"] == group for r in rounds)
        gaps = [b["time"] - a["time"] for a, b in zip(rounds, rounds[1:], strict=False)]
        assert max(gaps, default=0) < 60, f"{node.name}: a round took {max(gaps):.0f} s"


def test_a_restarted_leader_catches_up_with_members_that_hold_different_models(spawn) -> None:
    """m1 aggregates by the median, m2 by a trimmed mean, m3 by guarded FedAvg: no two of the members
    that stay hold the same model, so no model has a majority behind it when the leader comes back."""
    boot = spawn("boot", "--group", "none")
    common = ["--bootstrap", boot.addr, *CALM]
    leader = spawn("m0", "--group", "new", "--shard", "0/4", *common)
    group = leader.wait_for("joined")["group"]
    own_rule = {1: ["--aggregator", "median"], 2: ["--aggregator", "trimmed-mean"]}
    members = [leader] + [
        spawn(f"m{i}", "--group", group, "--shard", f"{i}/4", *own_rule.get(i, []), *common)
        for i in (1, 2, 3)
    ]
    for node in members:
        node.wait_for(lambda e: e["event"] == "round" and e["members"] == 4, timeout=180)
    again = killed_and_restarted(spawn, boot, members, group, leader, "m0-again", "--shard", "0/4")
    caught_up = again.wait_for("caught_up", timeout=5)
    first_round = again.wait_for(lambda e: e["event"] == "round" and e["group"] == group)
    if first_round["leader"] == again.peer_id:  # still its own record: only the majority could move it
        assert (caught_up["vouched_by"], caught_up["model"]) == ("majority round", "adopted"), caught_up
    again.wait_for(lambda e: e["event"] == "round" and e["contributors"] >= 3, timeout=60)


@pytest.mark.slow
def test_a_dead_members_heartbeat_replayed_after_two_minutes_does_not_make_it_live(spawn) -> None:
    boot, members, group = form_group(spawn, 3)
    dead = members[2]

    async def replay() -> float:
        key_pair, opening = await _stack(boot.addr)
        async with opening as stack:
            await stack.bootstrap(lambda message: None)
            for node in members:
                await stack.host.connect(info_from_p2p_addr(multiaddr.Multiaddr(node.addr)))
            subscription = await stack.pubsub.subscribe(group_topic(group))
            dead_id = info_from_p2p_addr(multiaddr.Multiaddr(dead.addr)).peer_id.to_bytes()
            with trio.fail_after(30):
                while True:
                    message = await subscription.get()
                    if message.from_id == dead_id:
                        break  # one of its signed messages (a heartbeat or an announcement)
            dead.kill()
            await trio.sleep(125)  # past GossipSub's seen-cache (120 s) and the member expiry (30 s)
            replayed_at = time.time()
            for _ in range(3):
                await stack.gossipsub.publish(stack.host.get_id(), message)
                await trio.sleep(1)
            await trio.sleep(12)
            stack.nursery.cancel_scope.cancel()
            return replayed_at

    replayed_at = trio.run(replay)
    for node in members[:2]:
        after = [e for e in node.rounds() if e["time"] > replayed_at]
        assert after and all(e["members"] == 2 for e in after), f"{node.name}: {after}"
