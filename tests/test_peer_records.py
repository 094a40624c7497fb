"""A sender's signed peer record in pubsub RPCs: verified by py-libp2p once, then remembered."""

from __future__ import annotations

import pytest
from libp2p.peer.id import ID
from libp2p.pubsub import gossipsub, pubsub
from libp2p.pubsub.pb.rpc_pb2 import RPC

from mycelium.net import peer_records
from mycelium.net.host import build_host
from mycelium.net.peer_records import (
    MAX_REMEMBERED,
    RECHECK_SECONDS,
    RESEND_SECONDS,
    SentRecords,
    VerifiedRecords,
)

ALICE, BOB = ID(b"alice"), ID(b"bob")
HOST = object()


def rpc(record: bytes | None) -> RPC:
    message = RPC()
    if record is not None:
        message.senderRecord = record
    return message


class Checker:
    """Stands in for py-libp2p's check: records starting with b"bad" fail."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, message: RPC, host: object, peer: ID) -> bool:
        self.calls += 1
        return not message.senderRecord.startswith(b"bad")


@pytest.mark.parametrize(
    "steps, accepted, checks",
    [
        # (sender, record, seconds later) ...
        ([(ALICE, b"r1", 0), (ALICE, b"r1", 1)], [True, True], 1),
        ([(ALICE, b"r1", 0), (ALICE, b"r2", 1)], [True, True], 2),  # a new record is checked
        ([(ALICE, b"r1", 0), (BOB, b"r1", 1)], [True, True], 2),  # another sender is checked
        ([(ALICE, b"bad", 0), (ALICE, b"bad", 1)], [False, False], 2),  # failures are not remembered
        ([(ALICE, b"r1", 0), (ALICE, b"bad", 1), (ALICE, b"r1", 1)], [True, False, True], 2),
        ([(ALICE, b"r1", 0), (ALICE, b"r1", RECHECK_SECONDS)], [True, True], 2),  # checked again a minute on
        ([(ALICE, None, 0), (BOB, None, 0)], [True, True], 0),  # nothing to check
    ],
)
def test_a_record_is_verified_once_per_sender_and_minute(steps, accepted, checks) -> None:
    now = [0.0]
    checker = Checker()
    consume = VerifiedRecords(checker, clock=lambda: now[0])
    results = []
    for sender, record, later in steps:
        now[0] += later
        results.append(consume(rpc(record), HOST, sender))
    assert (results, checker.calls) == (accepted, checks)


def test_the_memory_of_verified_records_is_bounded() -> None:
    checker = Checker()
    consume = VerifiedRecords(checker, clock=lambda: 0.0)
    for n in range(MAX_REMEMBERED + 1):
        consume(rpc(b"r"), HOST, ID(n.to_bytes(4, "big")))
    consume(rpc(b"r"), HOST, ID((MAX_REMEMBERED).to_bytes(4, "big")))  # the newest: remembered
    consume(rpc(b"r"), HOST, ID((0).to_bytes(4, "big")))  # the oldest: forgotten, checked again
    assert checker.calls == MAX_REMEMBERED + 2


class Host:
    """Stands in for a py-libp2p host (weakly referenced, as hosts are)."""


class Issuer:
    """Stands in for py-libp2p's `env_to_send_in_RPC`: a new envelope every call, numbered."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, host: object) -> tuple[bytes, bool]:
        self.calls += 1
        return f"envelope {self.calls}".encode(), True


@pytest.mark.parametrize(
    "steps, sent, builds",
    [
        # (host, seconds later) ...
        ([("a", 0), ("a", 1), ("a", RESEND_SECONDS - 1.5)], [b"envelope 1"] * 3, 1),
        ([("a", 0), ("a", RESEND_SECONDS)], [b"envelope 1", b"envelope 2"], 2),  # built again 10 s on
        ([("a", 0), ("b", 0), ("a", 0)], [b"envelope 1", b"envelope 2", b"envelope 1"], 2),  # per host
    ],
)
def test_our_record_is_built_once_per_host_and_resend_period(steps, sent, builds) -> None:
    now = [0.0]
    issuer = Issuer()
    envelope_for = SentRecords(issuer, clock=lambda: now[0])
    hosts = {"a": Host(), "b": Host()}
    results = []
    for host, later in steps:
        now[0] += later
        results.append(envelope_for(hosts[host])[0])
    assert (results, issuer.calls) == (sent, builds)


def test_a_closed_host_leaves_no_built_record_behind() -> None:
    envelope_for = SentRecords(Issuer())
    host = Host()
    envelope_for(host)
    del host
    assert len(envelope_for._built) == 0  # noqa: SLF001 - the bound is the property under test


def test_building_a_host_wraps_py_libp2ps_record_functions_in_both_places_they_are_called() -> None:
    from libp2p.crypto.ed25519 import create_new_key_pair

    build_host(create_new_key_pair())
    for module in (pubsub, gossipsub):
        assert isinstance(module.maybe_consume_signed_record, VerifiedRecords)
        assert isinstance(module.env_to_send_in_RPC, SentRecords)
    wrapped, built = pubsub.maybe_consume_signed_record, pubsub.env_to_send_in_RPC
    peer_records.apply()
    assert (pubsub.maybe_consume_signed_record, pubsub.env_to_send_in_RPC) == (wrapped, built)  # idempotent
