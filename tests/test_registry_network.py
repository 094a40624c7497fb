"""The DHT registry and the secure host, with real node processes on loopback."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import replace

import multiaddr
import trio
from conftest import run_cli
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.records.validator import Validator
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport
from records import group_record

from mycelium.net.host import NetConfig, build_host, open_stack
from mycelium.net.messages import decode_group_record, record_to_pb, seal_record
from mycelium.net.registry import Registry
from mycelium.net.signing import Kind, seal
from mycelium.policy.records import GroupRecord, group_key
from mycelium.proto import mycelium_pb2 as pb

LOOPBACK = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]


def list_groups(bootstrap: str, task: str = "digits-mlp") -> list[dict]:
    result = run_cli("groups", "--bootstrap", bootstrap, "--task", task, "--json", "--timeout", "5")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_group_created_on_the_first_of_a_chain_of_five_is_listed_from_the_last_within_10_s(spawn) -> None:
    first = spawn("n0", "--group", "new", "--rounds", "0")
    chain = [first]
    for i in range(1, 5):
        chain.append(spawn(f"n{i}", "--group", "none", "--bootstrap", chain[-1].addr))
    created = first.wait_for(lambda e: e["event"] == "joined" and e["created"], timeout=60)
    ready = chain[-1].wait_for("bootstrapped", timeout=60)
    start = max(created["time"], ready["time"])
    found = []
    while not found and time.time() < start + 30:
        found = [g for g in list_groups(chain[-1].addr) if g["group_id"] == created["group"]]
    assert found, "the group never showed up"
    assert time.time() - start <= 10.0, f"listed after {time.time() - start:.1f} s"
    group = found[0]
    assert [m["peer_id"] for m in group["members"]] == [first.peer_id]
    assert group["capacity"] == 10 and group["policy"] == "open"
    assert set(group["metrics"]) == {"accuracy", "loss", "samples", "rounds_per_minute"}


def test_a_restarted_node_keeps_its_peer_id_and_readvertises_its_group(spawn, tmp_path) -> None:
    boot = spawn("boot", "--group", "none")
    data = tmp_path / "creator-data"
    node = spawn("creator", "--group", "new", "--bootstrap", boot.addr, data_dir=data)
    group = node.wait_for(lambda e: e["event"] == "joined" and e["created"])["group"]
    peer_id = node.peer_id
    node.wait_for("round")
    assert node.stop() == 0
    again = spawn("creator-again", "--group", "new", "--bootstrap", boot.addr, data_dir=data)
    assert again.peer_id == peer_id
    rejoined = again.wait_for("joined")
    assert rejoined["group"] == group and not rejoined["created"]
    deadline = time.time() + 20
    while time.time() < deadline:
        listed = [g for g in list_groups(boot.addr) if g["group_id"] == group]
        if listed and listed[0]["members"][0]["last_seen_s_ago"] < 5:
            break
    assert listed and [m["peer_id"] for m in listed[0]["members"]] == [peer_id]


class AcceptAnything(Validator):
    def validate(self, key: str, value: bytes) -> None:
        pass

    def select(self, key: str, values: list[bytes]) -> int:
        return len(values) - 1


def test_forged_expired_oversized_and_random_records_are_rejected_by_every_node(spawn) -> None:
    creator = spawn("creator", "--group", "new", "--heartbeat", "1")
    others = [spawn(f"n{i}", "--group", "none", "--bootstrap", creator.addr) for i in range(3)]
    group = creator.wait_for(lambda e: e["event"] == "joined" and e["created"])["group"]
    nodes = [creator, *others]
    key = group_key(group).encode()

    async def attack() -> dict[str, list[bool]]:
        key_pair = create_new_key_pair()
        host = build_host(key_pair)
        dht = KadDHT(host, DHTMode.CLIENT)
        dht.register_validator("mycelium", AcceptAnything())
        async with host.run(LOOPBACK):
            peers = []
            for node in nodes:
                info = info_from_p2p_addr(multiaddr.Multiaddr(node.addr))
                await host.connect(info)
                peers.append(info.peer_id)

            async def stored(peer: ID, at: bytes = key) -> bytes | None:
                with trio.fail_after(10):
                    return await dht.value_store._get_from_peer(peer, at)

            with trio.fail_after(60):  # the leader republishes every 15 s until every node holds it
                while not all([await stored(peer) for peer in peers]):
                    await trio.sleep(1)
            honest = {peer: await stored(peer) for peer in peers}
            record = decode_group_record(honest[peers[0]], time.time(), group)
            forged = pb.Envelope()
            forged.ParseFromString(honest[peers[0]])
            forged.payload = record_to_pb(
                replace(record, version=record.version + 100, updated_at=time.time() + 1)
            ).SerializeToString()
            bad_values = {
                "forged signature": forged.SerializeToString(),
                "signed by a non-member": seal(
                    key_pair, Kind.GROUP_RECORD, record_to_pb(replace(record, version=record.version + 100))
                ),
                "random bytes": os.urandom(300),
            }
            results: dict[str, list[bool]] = {}
            for reason, value in bad_values.items():
                results[reason] = [await dht.value_store._store_at_peer(peer, key, value) for peer in peers]
                for peer in peers:
                    assert await stored(peer) == honest[peer], f"{reason} replaced the honest record"
            own_key = group_key(group_record(key_pair).group_id).encode()
            for reason, value in {
                "expired": _sealed(
                    group_record(key_pair, updated_at=time.time() - 120, expires_at=time.time() - 60),
                    key_pair,
                ),
                "dated in the future": _sealed(
                    group_record(key_pair, updated_at=time.time() + 3600), key_pair
                ),
                "oversized": _padded(group_record(key_pair), 40_000, key_pair),
            }.items():
                results[reason] = [
                    await dht.value_store._store_at_peer(peer, own_key, value) for peer in peers
                ]
                assert [await stored(peer, own_key) for peer in peers] == [None] * len(peers), reason
            control = seal_record(key_pair, group_record(key_pair)).signed
            results["control: a valid record of our own"] = [
                await dht.value_store._store_at_peer(peer, own_key, control) for peer in peers
            ]
            assert [await stored(peer, own_key) for peer in peers] == [control] * len(peers)
            return results

    results = trio.run(attack)
    for reason, accepted in results.items():
        expected = reason.startswith("control")
        assert accepted == [expected] * len(nodes), f"{reason}: {accepted}"


def _sealed(record: GroupRecord, key_pair) -> bytes:  # type: ignore[no-untyped-def]
    """Signed bytes of any record, valid or not (seal_record does not check the rules)."""
    return seal(key_pair, Kind.GROUP_RECORD, record_to_pb(record))


def _padded(record: GroupRecord, extra: int, key_pair) -> bytes:  # type: ignore[no-untyped-def]
    """A correctly signed record made oversized by an unknown field (valid in every other way)."""
    message = pb.GroupRecord()
    unknown_field_99 = b"\x9a\x06" + _varint(extra) + bytes(extra)
    message.ParseFromString(record_to_pb(record).SerializeToString() + unknown_field_99)
    return seal(key_pair, Kind.GROUP_RECORD, message)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out + bytes([value]))


def test_a_dialer_offering_only_plaintext_is_refused(spawn) -> None:
    node = spawn("node", "--group", "none")
    target = info_from_p2p_addr(multiaddr.Multiaddr(node.addr))

    async def dial(secure: bool) -> bool:
        key_pair = create_new_key_pair()
        if secure:
            host = build_host(key_pair)
        else:
            host = new_host(key_pair=key_pair, sec_opt={PLAINTEXT_PROTOCOL_ID: InsecureTransport(key_pair)})
        async with host.run(LOOPBACK):
            try:
                with trio.fail_after(10):
                    await host.connect(target)
            except Exception:  # noqa: BLE001 - any failure to connect is a refusal
                return False
            return target.peer_id in host.get_connected_peers()

    assert trio.run(dial, False) is False
    assert trio.run(dial, True) is True  # the same node accepts a Noise dialer


def test_sigterm_and_ctrl_c_stop_a_node_cleanly_within_5_s(spawn) -> None:
    boot = spawn("boot", "--group", "none")
    for sig in (signal.SIGTERM, signal.SIGINT):
        node = spawn(f"node-{sig.name}", "--group", "new", "--bootstrap", boot.addr)
        node.wait_for("round")
        start = time.monotonic()
        node.process.send_signal(sig)
        code = node.process.wait(10)
        assert time.monotonic() - start <= 5.0
        assert code == 0, node.stderr()[-2000:]
        assert node.events()[-1]["event"] == "left" or any(e["event"] == "left" for e in node.events())


def test_putting_an_older_record_than_the_one_stored_locally_is_not_an_error() -> None:
    async def scenario() -> int:
        key_pair = create_new_key_pair()
        config = NetConfig(listen=tuple(LOOPBACK))
        async with open_stack(key_pair, config) as stack:
            registry = Registry(stack.dht, key_pair)
            older = seal_record(key_pair, group_record(key_pair))
            newer = seal_record(key_pair, older.successor(time.time(), 60, leader=older.leader))
            await registry.put_group(newer)
            await registry.put_group(older)  # py-libp2p raises ValueError here; the registry must not
            stored = await registry.get_group(older.group_id, timeout=2)
            stack.nursery.cancel_scope.cancel()
            assert stored is not None
            return stored.version

    assert trio.run(scenario) == 2
