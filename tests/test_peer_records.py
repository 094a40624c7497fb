"""A sender's signed peer record in pubsub RPCs: verified by py-libp2p once, then remembered."""

from __future__ import annotations

import pytest
from libp2p.peer.id import ID
from libp2p.pubsub import gossipsub, pubsub
from libp2p.pubsub.pb.rpc_pb2 import RPC

from mycelium.net import peer_records
from mycelium.net.host import build_host
from mycelium.net.peer_records import MAX_REMEMBERED, RECHECK_SECONDS, VerifiedRecords

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


def test_building_a_host_wraps_py_libp2ps_check_in_both_places_it_is_called() -> None:
    from libp2p.crypto.ed25519 import create_new_key_pair

    build_host(create_new_key_pair())
    for module in (pubsub, gossipsub):
        assert isinstance(module.maybe_consume_signed_record, VerifiedRecords)
    wrapped = pubsub.maybe_consume_signed_record
    peer_records.apply()
    assert pubsub.maybe_consume_signed_record is wrapped  # idempotent
