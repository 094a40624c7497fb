"""The rules every node applies to group records: one version on its own, one version against
another (who may write the next one), what a node with no history believes, and when a leader owes
outsiders a copy. Tables of cases."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from libp2p.crypto.ed25519 import create_new_key_pair

from mycelium.errors import InvalidMessage
from mycelium.net.invites import invite_problem, make_invite
from mycelium.net.messages import (
    MAX_GROUP_RECORD_BYTES,
    decode_group_record,
    decode_value,
    record_to_pb,
    seal_index,
    seal_record,
)
from mycelium.net.signing import SCHEMA_VERSION, Kind, open_envelope, peer_id_of, seal
from mycelium.policy.listing import Listing
from mycelium.policy.records import (
    GroupIndex,
    GroupRecord,
    IndexEntry,
    JoinPolicy,
    Member,
    Metrics,
    Standing,
    believe,
    best_record,
    group_id_for,
    group_key,
    merge_index,
    standing,
    task_key,
)
from mycelium.proto import mycelium_pb2 as pb

NOW = 1_800_000_000.0
KEYS = {name: create_new_key_pair(bytes([i + 1]) * 32) for i, name in enumerate("ABCDEO")}
PEERS = {name: peer_id_of(key) for name, key in KEYS.items()}
# peer order of the test peers, so that the tables can say who ranks before whom
ORDER = sorted(PEERS, key=lambda name: PEERS[name])


def pid(name: str):  # type: ignore[no-untyped-def]
    return PEERS[name]


def members(*names: str) -> tuple[Member, ...]:
    return tuple(Member(pid(n), NOW, NOW) for n in sorted(names, key=lambda n: PEERS[n]))


def first_version(creator: str = "A", *listed: str) -> GroupRecord:
    nonce = b"n" * 16
    return GroupRecord(
        group_id=group_id_for(pid(creator), nonce),
        task="digits-mlp",
        name="g",
        model_fingerprint="mlp:0123456789abcdef",
        policy=JoinPolicy.OPEN,
        capacity=10,
        round=3,
        members=members(creator, *listed),
        metrics=Metrics(accuracy=0.875, loss=0.25, samples=100),  # exact in float32
        version=1,
        updated_at=NOW,
        expires_at=NOW + 60,
        creator=pid(creator),
        nonce=nonce,
        leader=pid(creator),
    )


def signed(record: GroupRecord, by: str | None = None) -> GroupRecord:
    return seal_record(KEYS[by or _name(record.leader)], record)


def _name(peer) -> str:  # type: ignore[no-untyped-def]
    return next(n for n, p in PEERS.items() if p == peer)


def next_version(held: GroupRecord, leader: str, *listed: str, dt: float = 1.0) -> GroupRecord:
    record = held.successor(NOW + dt, 60, leader=pid(leader), members=members(*listed))
    return signed(record)


def key_of(record: GroupRecord) -> str:
    return group_key(record.group_id)


V1 = signed(first_version("A", "B", "C"))


# --- one version on its own -------------------------------------------------------------------


def test_a_first_version_signed_by_its_creator_is_accepted() -> None:
    decoded = decode_value(key_of(V1), V1.signed, NOW)
    assert decoded == V1 and decoded.leader == pid("A") and decoded.digest == V1.digest


def _forged_signature(record: GroupRecord) -> bytes:
    envelope = pb.Envelope()
    envelope.ParseFromString(signed(record).signed)
    envelope.signature = bytes(64)
    return envelope.SerializeToString()


def _tampered_payload(record: GroupRecord) -> bytes:
    envelope = pb.Envelope()
    envelope.ParseFromString(signed(record).signed)
    envelope.payload = record_to_pb(replace(record, capacity=64)).SerializeToString()
    return envelope.SerializeToString()


def _claims_another_author(record: GroupRecord) -> bytes:
    envelope = pb.Envelope()
    envelope.ParseFromString(seal_record(KEYS["O"], record).signed)
    envelope.author = pid("A").raw
    return envelope.SerializeToString()


def _unknown_schema(record: GroupRecord) -> bytes:
    envelope = pb.Envelope()
    envelope.ParseFromString(signed(record).signed)
    envelope.schema_version = SCHEMA_VERSION + 1
    return envelope.SerializeToString()


def _raw(record: GroupRecord, by: str) -> bytes:
    return seal(KEYS[by], Kind.GROUP_RECORD, record_to_pb(record))


REJECTED = {
    "forged signature": (_forged_signature, "bad signature"),
    "payload changed after signing": (_tampered_payload, "bad signature"),
    "key of another peer than the author": (_claims_another_author, "does not belong"),
    "signed by someone else than its leader": (lambda r: _raw(r, "B"), "not by its leader"),
    "leader not a member": (lambda r: _raw(replace(r, leader=pid("O")), "O"), "not a member it lists"),
    "version 1 led by a non-creator": (lambda r: _raw(replace(r, leader=pid("B")), "B"), "creator"),
    "version 2 naming no predecessor": (lambda r: _raw(replace(r, version=2), "A"), "names no predecessor"),
    "version 1 naming a predecessor": (lambda r: _raw(replace(r, previous=b"x" * 32), "A"), "no predecessor"),
    "expired": (lambda r: _raw(replace(r, expires_at=NOW - 1), "A"), "expired"),
    "dated in the future": (
        lambda r: _raw(replace(r, updated_at=NOW + 3600, expires_at=NOW + 3700), "A"),
        "future",
    ),
    "expiring too far ahead": (lambda r: _raw(replace(r, expires_at=NOW + 10 * 86400), "A"), "too far"),
    "unknown schema version": (_unknown_schema, "schema version"),
    "random bytes": (lambda r: os.urandom(200), "undecodable|expected"),
    "empty value": (lambda r: b"", "schema version"),
    "oversized": (lambda r: _raw(r, "A") + bytes(MAX_GROUP_RECORD_BYTES), "exceeds"),
    "group id not bound to creator": (lambda r: _raw(replace(r, nonce=b"m" * 16), "A"), "not bound"),
    "more members than capacity": (lambda r: _raw(replace(r, capacity=1), "A"), "exceed the capacity"),
    "member listed twice": (lambda r: _raw(replace(r, members=members("A") * 2), "A"), "listed twice"),
    "index bytes under a group key": (
        lambda r: seal_index(KEYS["A"], GroupIndex("digits-mlp", (), NOW, NOW + 60)),
        "expected a GROUP_RECORD",
    ),
}


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_invalid_group_records_are_rejected(case: str) -> None:
    build, reason = REJECTED[case]
    record = first_version("A", "B")
    with pytest.raises(InvalidMessage, match=reason):
        decode_value(key_of(record), build(record), NOW)


def test_a_record_stored_under_another_groups_key_is_rejected() -> None:
    other = group_id_for(pid("A"), b"o" * 16)
    with pytest.raises(InvalidMessage, match="stored under"):
        decode_value(group_key(other), V1.signed, NOW)


def test_keys_outside_our_namespaces_are_rejected() -> None:
    with pytest.raises(InvalidMessage, match="no record type"):
        decode_value("/mycelium/other/x", V1.signed, NOW)


# --- one version against another: who may write the next one ----------------------------------
# Peer order of the test keys decides who takes over from whom; the cases below name peers by
# their rank, so that they read the same whatever the keys' bytes are.

R = ORDER  # R[0] ranks first, R[1] second, ...


def chain_of(leader: str, *listed: str) -> GroupRecord:
    """A signed version 2 of a group, led by `leader` (version 1 by the creator R[0])."""
    first = signed(first_version(R[0], *[n for n in listed if n != R[0]], leader))
    return next_version(first, leader, leader, *listed)


HELD = chain_of(R[2], R[0], R[1], R[3], R[4])  # led by the middle-ranked member

STANDING = {
    "the same version": (lambda h: h, Standing.SAME),
    "the leader writes the next version": (lambda h: next_version(h, R[2], *h_names(h)), Standing.SUCCESSOR),
    "the leader admits a newcomer": (
        lambda h: next_version(h, R[2], *h_names(h), R[5]),
        Standing.SUCCESSOR,
    ),
    "the leader drops a member": (lambda h: next_version(h, R[2], R[0], R[1], R[2]), Standing.SUCCESSOR),
    "the leader skips versions (a holder missed some)": (
        lambda h: signed(
            replace(next_version(h, R[2], *h_names(h)), version=h.version + 5, previous=b"p" * 32)
        ),
        Standing.SUCCESSOR,
    ),
    "first in order takes over, dropping the leader": (
        lambda h: next_version(h, R[0], R[0], R[1], R[3], R[4]),
        Standing.SUCCESSOR,
    ),
    "second takes over, dropping the leader and the first": (
        lambda h: next_version(h, R[1], R[1], R[3]),
        Standing.SUCCESSOR,
    ),
    "a takeover that keeps someone ranked before the new leader": (
        lambda h: next_version(h, R[1], R[0], R[1], R[3]),
        Standing.UNENTITLED,
    ),
    "a takeover that keeps the old leader": (
        lambda h: next_version(h, R[0], R[0], R[1], R[2]),
        Standing.UNENTITLED,
    ),
    "a takeover that adds a member": (lambda h: next_version(h, R[0], R[0], R[1], R[5]), Standing.UNENTITLED),
    "an outsider that lists itself": (lambda h: outsider_version(h, R[5]), Standing.UNENTITLED),
    "an outsider that lists itself and every member": (
        lambda h: outsider_version(h, R[5], *h_names(h)),
        Standing.UNENTITLED,
    ),
    "a member that is not the leader writes the next version": (
        lambda h: next_version(h, R[3], *h_names(h)),
        Standing.UNENTITLED,
    ),
    "the next version names another predecessor (a sibling branch)": (
        lambda h: signed(replace(next_version(h, R[2], *h_names(h)), previous=b"q" * 32)),
        Standing.UNENTITLED,
    ),
    "an earlier version": (
        lambda h: signed(replace(h, version=1, previous=b"", leader=pid(R[0]))),
        Standing.STALE,
    ),
    "another group": (lambda h: signed(first_version(R[3])), Standing.OTHER_GROUP),
}


def h_names(record: GroupRecord) -> list[str]:
    return [_name(m.peer_id) for m in record.members]


def outsider_version(held: GroupRecord, outsider: str, *listed: str) -> GroupRecord:
    """A version written by `outsider`, which the held version does not list, naming itself leader."""
    record = held.successor(NOW + 1, 60, leader=pid(outsider), members=members(outsider, *listed))
    return signed(record, by=outsider)


@pytest.mark.parametrize("case", sorted(STANDING))
def test_who_may_write_the_next_version(case: str) -> None:
    build, expected = STANDING[case]
    offered = build(HELD)
    if expected is not Standing.OTHER_GROUP:
        decode_value(key_of(offered), offered.signed, NOW + 1)  # every case is valid on its own
    assert standing(HELD, offered) is expected


def test_a_holder_with_no_unexpired_version_believes_any_valid_one() -> None:
    forged = outsider_version(HELD, R[5])
    assert believe(None, forged, NOW)
    assert not believe(HELD, forged, NOW)
    assert believe(replace(HELD, expires_at=NOW - 1), forged, NOW)


# --- what a node with no history believes -------------------------------------------------------

LATER = next_version(HELD, R[2], *h_names(HELD))
FORGED_ALONE = outsider_version(HELD, R[5])
FORGED_WITH_ALL = outsider_version(HELD, R[5], *h_names(HELD))

BEST = {
    "a version and its successor: the successor": ([HELD, LATER], 1),
    "a successor first: the successor": ([LATER, HELD], 0),
    "identical copies: the first (a DHT node keeps what it stores)": ([HELD, HELD], 0),
    "honest then forged alone: honest (first on a tie)": ([HELD, FORGED_ALONE], 0),
    "forged alone then honest: the first again (our own write wins a local put)": ([FORGED_ALONE, HELD], 0),
    "forged listing everyone, after honest: honest (its leader is listed by both)": (
        [HELD, FORGED_WITH_ALL],
        0,
    ),
    "forged listing everyone, first: honest all the same": ([FORGED_WITH_ALL, HELD], 1),
    "one forged copy among honest old and new copies: the newest honest": (
        [FORGED_ALONE, HELD, LATER, HELD, FORGED_ALONE],
        2,
    ),
    "forged copies outnumbered by honest ones": ([FORGED_ALONE, FORGED_ALONE, HELD, LATER, LATER], 3),
}


@pytest.mark.parametrize("case", sorted(BEST))
def test_what_a_node_with_no_history_believes(case: str) -> None:
    candidates, expected = BEST[case]
    assert best_record(candidates) == expected


def test_a_version_is_always_dated_after_the_one_it_replaces_even_when_the_clock_lags() -> None:
    later = HELD.successor(NOW - 100, 60, leader=HELD.leader)
    assert later.updated_at > HELD.updated_at and later.version == HELD.version + 1
    assert later.previous == HELD.digest


# --- task indexes, invites, envelopes ------------------------------------------------------------


def test_index_merge_keeps_live_entries_drops_expired_ones_and_refreshes() -> None:
    a, b, c = (group_id_for(pid("A"), bytes([i]) * 16) for i in range(3))
    current = GroupIndex("t", (IndexEntry(a, NOW + 10), IndexEntry(b, NOW - 1)), NOW - 5, NOW + 100)
    merged = merge_index(current, "t", [IndexEntry(c, NOW + 50), IndexEntry(a, NOW + 5)], NOW, 60)
    assert {e.group_id: e.expires_at for e in merged.entries} == {a: NOW + 10, c: NOW + 50}
    assert merged.updated_at > current.updated_at
    decoded = decode_value(task_key("t"), seal_index(KEYS["O"], merged), NOW)
    assert decoded.live_group_ids(NOW) == sorted([a, c])


def test_an_index_under_another_tasks_key_is_rejected() -> None:
    index = GroupIndex("t", (), NOW, NOW + 60)
    with pytest.raises(InvalidMessage, match="stored under"):
        decode_value(task_key("u"), seal_index(KEYS["O"], index), NOW)


def test_envelopes_of_one_kind_cannot_be_replayed_as_another() -> None:
    data = seal(KEYS["A"], Kind.MEMBER_HEARTBEAT, pb.MemberHeartbeat(group_id="x"))
    envelope = pb.Envelope()
    envelope.ParseFromString(data)
    envelope.kind = Kind.UPDATE_ANNOUNCE
    with pytest.raises(InvalidMessage, match="bad signature"):
        open_envelope(envelope.SerializeToString(), Kind.UPDATE_ANNOUNCE, 10_000)


def test_invites_admit_only_whom_they_name_while_signed_by_a_member() -> None:
    group = V1.group_id
    issuers = frozenset({pid("A"), pid("B")})
    for_outsider = make_invite(KEYS["B"], group, pid("O"), NOW + 60, b"x" * 8)
    assert invite_problem(for_outsider, group, pid("O"), issuers, NOW) is None
    assert invite_problem(for_outsider, group, pid("A"), issuers, NOW) == "invite is for another peer"
    assert invite_problem(for_outsider, group, pid("O"), issuers, NOW + 61) == "invite expired"
    assert invite_problem(for_outsider, "0" * 32, pid("O"), issuers, NOW) == "invite is for another group"
    self_signed = make_invite(KEYS["O"], group, None, NOW + 60, b"y" * 8)
    assert (
        invite_problem(self_signed, group, pid("O"), issuers, NOW) == "invite not signed by a current member"
    )
    assert "undecodable" in (invite_problem(b"\xff" * 20, group, pid("O"), issuers, NOW) or "")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_decoding_arbitrary_bytes_raises_only_invalid_message(data: bytes) -> None:
    for key in (key_of(V1), task_key("digits-mlp")):
        with pytest.raises(InvalidMessage):
            decode_value(key, data, NOW)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=400), st.binary(min_size=1, max_size=8))
def test_flipping_bytes_of_a_signed_record_never_yields_an_accepted_forgery(
    position: int, noise: bytes
) -> None:
    data = bytearray(V1.signed)
    index = position % len(data)
    for offset, byte in enumerate(noise):
        if index + offset < len(data):
            data[index + offset] ^= byte or 1
    try:
        decoded = decode_group_record(bytes(data), NOW, V1.group_id)
    except InvalidMessage:
        return
    assert decoded == V1  # only a change in an ignored byte (e.g. unknown field) may pass


REPUBLISH = 15.0  # production default (config.Timing.republish)
LISTING_CASES = {
    "the first version": (None, first_version("A", "B"), 0.0, True),
    "a version a round later, same leader and members": (
        first_version("A", "B"),
        replace(first_version("A", "B"), round=4, version=2),
        1.0,
        False,
    ),
    "the same members, a period after the last copy": (
        first_version("A", "B"),
        replace(first_version("A", "B"), version=9),
        REPUBLISH,
        True,
    ),
    "a member more": (first_version("A", "B"), first_version("A", "B", "C"), 1.0, True),
    "a member fewer": (first_version("A", "B", "C"), first_version("A", "B"), 1.0, True),
    "a new leader of the same members": (
        first_version("A", "B"),
        replace(first_version("A", "B"), leader=pid("B")),
        1.0,
        True,
    ),
}


@pytest.mark.parametrize(("last", "record", "after", "due"), LISTING_CASES.values(), ids=LISTING_CASES)
def test_outsiders_get_a_copy_when_leader_or_members_change_or_a_period_passed(
    last: GroupRecord | None, record: GroupRecord, after: float, due: bool
) -> None:
    listing = Listing(REPUBLISH)
    if last is not None:
        listing.sent(last, NOW)
    assert listing.due(record, NOW + after) is due
