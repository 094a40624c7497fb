"""Groups finding each other, with real node processes on loopback: capacity, invites, lies, dissolution."""

from __future__ import annotations

import os
import signal
import time

import multiaddr
import trio
from conftest import NodeProcess, run_cli
from libp2p.crypto.ed25519 import create_new_key_pair

from mycelium.learn import codec as tensor_codec
from mycelium.learn.models import build_model, fingerprint, get_weights
from mycelium.net.gossip import Topic, discovery_topic
from mycelium.net.host import NetConfig, open_stack, parse_multiaddr
from mycelium.net.join import serve_joins
from mycelium.net.messages import seal_record
from mycelium.net.registry import Registry
from mycelium.net.signing import Kind, peer_id_of
from mycelium.net.traffic import Traffic
from mycelium.net.transfer import BlobStore, TransferService
from mycelium.policy.messages import JoinAnswer, JoinRequest, JoinStatus
from mycelium.policy.records import GroupRecord, JoinPolicy, Member, Metrics, group_id_for

CALM = ["--round-interval", "1", "--partition", "iid"]  # keep many processes from starving 2 cores


def joined(node: NodeProcess) -> list[dict]:
    return [e for e in node.events() if e["event"] == "joined"]


def test_fifteen_nodes_joining_at_once_never_push_a_group_past_its_capacity(spawn) -> None:
    boot = spawn("boot", "--group", "none")
    creator = spawn("creator", "--group", "new", "--capacity", "10", "--bootstrap", boot.addr, *CALM)
    group = creator.wait_for("joined")["group"]
    crowd = [
        spawn(f"n{i}", "--bootstrap", boot.addr, "--shard", f"{i}/15", "--evaluate-every", "0", *CALM)
        for i in range(15)
    ]
    for node in crowd:
        node.wait_for("joined", timeout=240)
    time.sleep(5)  # let every admission settle into the records
    spans = []
    for node in [creator, *crowd]:
        start = None
        for event in node.events():
            if event["event"] == "joined" and event["group"] == group:
                start = event["time"]
            elif event["event"] == "left" and event["group"] == group and start is not None:
                spans.append((start, event["time"]))
                start = None
        if start is not None:
            spans.append((start, float("inf")))
    moments = sorted({t for span in spans for t in span if t != float("inf")})
    busiest = max(sum(a <= t < b for a, b in spans) for t in moments)
    assert busiest <= 10, f"{busiest} members at once"
    assert busiest == 10, "the group filled up"
    sizes = [e["members"] for n in [creator, *crowd] for e in n.rounds() if e["group"] == group]
    assert sizes and max(sizes) <= 10
    elsewhere = [n for n in crowd if joined(n)[-1]["group"] != group]
    assert len(elsewhere) >= 5 and all(joined(n) for n in elsewhere)


def test_an_invite_only_group_admits_only_holders_of_a_members_invite(spawn) -> None:
    boot = spawn("boot", "--group", "none")
    owner = spawn("owner", "--group", "new", "--policy", "invite", "--bootstrap", boot.addr, *CALM)
    group = owner.wait_for("joined")["group"]
    stranger = spawn("stranger", "--group", group, "--bootstrap", boot.addr, *CALM)
    assert stranger.process.wait(120) == 1
    assert "invite-only" in stranger.stderr() and "Traceback" not in stranger.stderr()
    assert not joined(stranger)

    result = run_cli("invite", "--group", group, "--data-dir", str(owner.data_dir))
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    guest = spawn("guest", "--group", group, "--invite", token, "--bootstrap", boot.addr, *CALM)
    admitted = guest.wait_for("joined", timeout=120)
    assert admitted["group"] == group and admitted["created"] is False
    guest.wait_for(lambda e: e["event"] == "round" and e["members"] == 2, timeout=60)


async def _run_liar(bootstrap: str, ready: trio.Event, requests: list[str], info: dict) -> None:
    """A peer advertising a group with accuracy 0.99 whose model is random, and that admits anyone."""
    key_pair = create_new_key_pair()
    me = peer_id_of(key_pair)
    config = NetConfig(
        listen=(multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0"),),
        bootstrap=(parse_multiaddr(bootstrap, what="b"),),
    )
    async with open_stack(key_pair, config) as stack:
        await stack.bootstrap(lambda message: None)
        transfer = TransferService(stack.host, stack.opener, BlobStore(), Traffic())
        weights = get_weights(build_model("mlp", 8, seed=424242))  # never trained
        model_hash = transfer.store.put(
            tensor_codec.encode(weights, tensor_codec.CODECS["fp32"], fingerprint("mlp", weights))
        )
        transfer.store.pin("record", model_hash)
        nonce = os.urandom(16)
        group_id = group_id_for(me, nonce)
        addrs = tuple(a.removesuffix(f"/p2p/{me}") for a in stack.listen_addrs())

        async def admit(request: JoinRequest) -> JoinAnswer:
            requests.append(str(request.author))
            return JoinAnswer(JoinStatus.REFUSED, reason="a trap")

        serve_joins(stack.host, key_pair, admit)
        registry = Registry(stack.dht, key_pair)
        topic = Topic(
            discovery_topic("digits-mlp"), stack.pubsub, key_pair, Traffic(), frozenset({Kind.GROUP_RECORD})
        )
        info["group"] = group_id
        record = None
        while True:
            now = time.time()
            first = GroupRecord(
                group_id=group_id,
                task="digits-mlp",
                name="best group ever",
                model_fingerprint=fingerprint("mlp", weights),
                policy=JoinPolicy.OPEN,
                capacity=10,
                round=500,
                members=(Member(me, now, now, addrs),),
                metrics=Metrics(accuracy=0.99, loss=0.01, samples=100_000),
                version=1,
                updated_at=now,
                expires_at=now + 90,
                creator=me,
                nonce=nonce,
                leader=me,
                model_hash=model_hash,
            )
            unsigned = first if record is None else record.successor(now, 90, leader=me)
            record = seal_record(key_pair, unsigned)
            await registry.put_group(record)
            await registry.advertise("digits-mlp", [group_id])
            await topic.publish(record.signed)
            ready.set()
            await trio.sleep(5)


def test_a_group_advertising_0_99_with_a_random_model_attracts_no_node(spawn) -> None:
    boot = spawn("boot", "--group", "none")
    requests: list[str] = []
    info: dict = {}

    async def scenario() -> tuple[dict, dict]:
        async with trio.open_nursery() as nursery:
            ready = trio.Event()
            nursery.start_soon(_run_liar, boot.addr, ready, requests, info)
            with trio.fail_after(60):
                await ready.wait()
            first = spawn("first", "--bootstrap", boot.addr, "--shard", "0/2", *CALM)
            first_joined = await trio.to_thread.run_sync(lambda: first.wait_for("joined", timeout=120))
            second = spawn("second", "--bootstrap", boot.addr, "--shard", "1/2", *CALM)
            second_joined = await trio.to_thread.run_sync(lambda: second.wait_for("joined", timeout=120))
            evaluated = await trio.to_thread.run_sync(lambda: second.wait_for("evaluated", timeout=10))
            nursery.cancel_scope.cancel()
        return {"first": first_joined, "second": second_joined}, evaluated

    outcome, evaluated = trio.run(scenario)
    liar = info["group"]
    assert outcome["first"]["created"] is True and outcome["first"]["group"] != liar
    assert outcome["second"]["group"] == outcome["first"]["group"], "the honest group is joined instead"
    assert requests == [], "nobody even asked the liar to join"
    seen = {c["group"]: c for c in evaluated["candidates"]}
    assert seen[liar]["advertised"] == 0.99 and seen[liar]["measured"] < 0.4


def test_a_node_whose_group_dies_around_it_finds_another_group_and_keeps_training(spawn) -> None:
    fast = ["--member-expiry", "4", "--heartbeat", "1", *CALM]
    boot = spawn("boot", "--group", "none")
    survivor = spawn("survivor", "--bootstrap", boot.addr, "--shard", "0/5", *fast)
    dissolving = survivor.wait_for("joined")["group"]
    doomed = [
        spawn(f"doomed{i}", "--group", dissolving, "--bootstrap", boot.addr, "--shard", f"{i}/5", *fast)
        for i in (1, 2)
    ]
    other_owner = spawn("other", "--group", "new", "--bootstrap", boot.addr, "--shard", "3/5", *fast)
    other = other_owner.wait_for("joined")["group"]
    spawn("other-member", "--group", other, "--bootstrap", boot.addr, "--shard", "4/5", *fast).wait_for(
        "joined", timeout=120
    )
    for node in doomed:
        node.wait_for("round", timeout=120)
    survivor.wait_for(lambda e: e["event"] == "round" and e["members"] == 3, timeout=60)
    killed_at = time.time()
    for node in doomed:
        node.process.send_signal(signal.SIGKILL)
    left = survivor.wait_for(lambda e: e["event"] == "left" and e["time"] > killed_at, timeout=120)
    # alone, it looks for a group every round: it moves before its group would count as dissolved
    assert left["group"] == dissolving and left["reason"] in ("migrate", "dissolved"), left
    rejoined = survivor.wait_for(lambda e: e["event"] == "joined" and e["time"] > killed_at, timeout=120)
    assert rejoined["group"] != dissolving
    assert rejoined["group"] == other, "the other group with room fits iid data"
    survivor.wait_for(
        lambda e: e["event"] == "round" and e["group"] == other and e["members"] == 3, timeout=120
    )
