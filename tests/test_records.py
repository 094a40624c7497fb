"""The rules every node applies to DHT values, as a table of accepted and rejected values."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from mycelium.errors import InvalidMessage
from mycelium.net.records import (
    MAX_GROUP_RECORD_BYTES,
    GroupIndex,
    GroupRecord,
    IndexEntry,
    Member,
    Metrics,
    Policy,
    decode_group_record,
    decode_value,
    group_id_for,
    group_key,
    invite_problem,
    make_invite,
    merge_index,
    select_newest,
    task_key,
)
from mycelium.net.signing import SCHEMA_VERSION, Kind, open_envelope, seal
from mycelium.proto import mycelium_pb2 as pb

NOW = 1_800_000_000.0
CREATOR = create_new_key_pair(b"\x01" * 32)
MEMBER = create_new_key_pair(b"\x02" * 32)
OUTSIDER = create_new_key_pair(b"\x03" * 32)


def pid(key_pair) -> ID:  # type: ignore[no-untyped-def]
    return ID.from_pubkey(key_pair.public_key)


def make_record(**changes: object) -> GroupRecord:
    nonce = b"n" * 16
    record = GroupRecord(
        group_id=group_id_for(pid(CREATOR), nonce),
        task="digits-mlp",
        name="g",
        model_fingerprint="mlp:0123456789abcdef",
        policy=Policy.OPEN,
        capacity=10,
        round=3,
        members=(Member(pid(CREATOR), NOW, NOW), Member(pid(MEMBER), NOW, NOW)),
        metrics=Metrics(accuracy=0.875, loss=0.25, samples=100),  # exact in float32
        version=7,
        updated_at=NOW,
        expires_at=NOW + 60,
        creator=pid(CREATOR),
        nonce=nonce,
    )
    return replace(record, **changes)  # type: ignore[arg-type]


def key_of(record: GroupRecord) -> str:
    return group_key(record.group_id)


def test_a_record_signed_by_its_creator_is_accepted() -> None:
    record = make_record()
    decoded = decode_value(key_of(record), record.seal(CREATOR), NOW)
    assert decoded == record
    assert decoded.signer == pid(CREATOR)


def test_a_record_signed_by_a_listed_member_is_accepted() -> None:
    record = make_record()
    assert decode_value(key_of(record), record.seal(MEMBER), NOW).signer == pid(MEMBER)


def _forged_signature(record: GroupRecord) -> bytes:
    envelope = pb.Envelope()
    envelope.ParseFromString(record.seal(CREATOR))
    envelope.signature = bytes(64)
    return envelope.SerializeToString()


def _tampered_payload(record: GroupRecord) -> bytes:
    envelope = pb.Envelope()
    envelope.ParseFromString(record.seal(CREATOR))
    envelope.payload = replace(record, capacity=64).to_proto().SerializeToString()
    return envelope.SerializeToString()


def _claims_another_author(record: GroupRecord) -> bytes:
    envelope = pb.Envelope()
    envelope.ParseFromString(record.seal(OUTSIDER))
    envelope.author = pid(CREATOR).to_bytes()
    return envelope.SerializeToString()


def _unknown_schema(record: GroupRecord) -> bytes:
    envelope = pb.Envelope()
    envelope.ParseFromString(record.seal(CREATOR))
    envelope.schema_version = SCHEMA_VERSION + 1
    return envelope.SerializeToString()


REJECTED = {
    "forged signature": (_forged_signature, "bad signature"),
    "payload changed after signing": (_tampered_payload, "bad signature"),
    "key of another peer than the author": (_claims_another_author, "does not belong"),
    "signer neither creator nor member": (lambda r: r.seal(OUTSIDER), "neither the creator nor a member"),
    "expired": (lambda r: replace(r, expires_at=NOW - 1).seal(CREATOR), "expired"),
    "dated in the future": (
        lambda r: replace(r, updated_at=NOW + 3600, expires_at=NOW + 3700).seal(CREATOR),
        "future",
    ),
    "expiring too far ahead": (lambda r: replace(r, expires_at=NOW + 10 * 86400).seal(CREATOR), "too far"),
    "unknown schema version": (_unknown_schema, "schema version"),
    "random bytes": (lambda r: os.urandom(200), "undecodable|expected"),
    "empty value": (lambda r: b"", "schema version"),
    "oversized": (
        lambda r: replace(r, name="x" * 100).seal(CREATOR) + bytes(MAX_GROUP_RECORD_BYTES),
        "exceeds",
    ),
    "group id not bound to creator": (lambda r: replace(r, nonce=b"m" * 16).seal(CREATOR), "not bound"),
    "more members than capacity": (lambda r: replace(r, capacity=1).seal(CREATOR), "exceed the capacity"),
    "member listed twice": (
        lambda r: replace(r, members=(Member(pid(MEMBER), NOW, NOW),) * 2).seal(MEMBER),
        "listed twice",
    ),
    "index bytes under a group key": (
        lambda r: GroupIndex("digits-mlp", (), NOW, NOW + 60).seal(CREATOR),
        "expected a GROUP_RECORD",
    ),
}


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_invalid_group_records_are_rejected(case: str) -> None:
    build, reason = REJECTED[case]
    record = make_record()
    with pytest.raises(InvalidMessage, match=reason):
        decode_value(key_of(record), build(record), NOW)


def test_a_record_stored_under_another_groups_key_is_rejected() -> None:
    record = make_record()
    other = group_id_for(pid(CREATOR), b"o" * 16)
    with pytest.raises(InvalidMessage, match="stored under"):
        decode_value(group_key(other), record.seal(CREATOR), NOW)


def test_keys_outside_our_namespaces_are_rejected() -> None:
    with pytest.raises(InvalidMessage, match="no record type"):
        decode_value("/mycelium/other/x", make_record().seal(CREATOR), NOW)


def test_select_prefers_the_newest_then_the_highest_version_and_the_last_on_ties() -> None:
    old = make_record()
    newer = old.successor(NOW + 5, 60)
    key = key_of(old)
    assert select_newest(key, [old.seal(CREATOR), newer.seal(CREATOR)], NOW + 5) == 1
    assert select_newest(key, [newer.seal(CREATOR), old.seal(CREATOR)], NOW + 5) == 0
    same = old.seal(CREATOR)
    assert select_newest(key, [same, same], NOW) == 1
    bumped = replace(old, version=old.version + 1)
    assert select_newest(key, [bumped.seal(CREATOR), old.seal(CREATOR)], NOW) == 0


def test_select_never_picks_an_invalid_value_over_a_valid_one() -> None:
    record = make_record()
    assert select_newest(key_of(record), [record.seal(CREATOR), os.urandom(50)], NOW) == 0
    expired_but_newer = replace(record, updated_at=NOW + 1, expires_at=NOW + 2)
    assert (
        select_newest(key_of(record), [record.seal(CREATOR), expired_but_newer.seal(CREATOR)], NOW + 3) == 0
    )


def test_successor_is_always_newer_even_when_the_clock_lags() -> None:
    record = make_record()
    later = record.successor(NOW - 100, 60)
    assert (later.updated_at, later.version) > (record.updated_at, record.version)


def test_index_merge_keeps_live_entries_drops_expired_ones_and_refreshes() -> None:
    a, b, c = (group_id_for(pid(CREATOR), bytes([i]) * 16) for i in range(3))
    current = GroupIndex("t", (IndexEntry(a, NOW + 10), IndexEntry(b, NOW - 1)), NOW - 5, NOW + 100)
    merged = merge_index(current, "t", [IndexEntry(c, NOW + 50), IndexEntry(a, NOW + 5)], NOW, 60)
    assert {e.group_id: e.expires_at for e in merged.entries} == {a: NOW + 10, c: NOW + 50}
    assert merged.updated_at > current.updated_at
    assert decode_value(task_key("t"), merged.seal(OUTSIDER), NOW).live_group_ids(NOW) == sorted([a, c])


def test_an_index_under_another_tasks_key_is_rejected() -> None:
    index = GroupIndex("t", (), NOW, NOW + 60)
    with pytest.raises(InvalidMessage, match="stored under"):
        decode_value(task_key("u"), index.seal(OUTSIDER), NOW)


def test_envelopes_of_one_kind_cannot_be_replayed_as_another() -> None:
    data = seal(CREATOR, Kind.MEMBER_HEARTBEAT, pb.MemberHeartbeat(group_id="x"))
    envelope = pb.Envelope()
    envelope.ParseFromString(data)
    envelope.kind = Kind.UPDATE_ANNOUNCE
    with pytest.raises(InvalidMessage, match="bad signature"):
        open_envelope(envelope.SerializeToString(), Kind.UPDATE_ANNOUNCE, 10_000)


def test_invites_admit_only_whom_they_name_while_signed_by_a_member() -> None:
    group = make_record().group_id
    members = frozenset({pid(CREATOR), pid(MEMBER)})
    for_outsider = make_invite(MEMBER, group, pid(OUTSIDER), NOW + 60, b"x" * 8)
    assert invite_problem(for_outsider, group, pid(OUTSIDER), members, NOW) is None
    assert invite_problem(for_outsider, group, pid(CREATOR), members, NOW) == "invite is for another peer"
    assert invite_problem(for_outsider, group, pid(OUTSIDER), members, NOW + 61) == "invite expired"
    assert (
        invite_problem(for_outsider, "0" * 32, pid(OUTSIDER), members, NOW) == "invite is for another group"
    )
    self_signed = make_invite(OUTSIDER, group, None, NOW + 60, b"y" * 8)
    assert (
        invite_problem(self_signed, group, pid(OUTSIDER), members, NOW)
        == "invite not signed by a current member"
    )
    assert "undecodable" in (invite_problem(b"\xff" * 20, group, pid(OUTSIDER), members, NOW) or "")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_decoding_arbitrary_bytes_raises_only_invalid_message(data: bytes) -> None:
    for key in (key_of(make_record()), task_key("digits-mlp")):
        with pytest.raises(InvalidMessage):
            decode_value(key, data, NOW)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=400), st.binary(min_size=1, max_size=8))
def test_flipping_bytes_of_a_signed_record_never_yields_an_accepted_forgery(
    position: int, noise: bytes
) -> None:
    record = make_record()
    data = bytearray(record.seal(CREATOR))
    index = position % len(data)
    for offset, byte in enumerate(noise):
        if index + offset < len(data):
            data[index + offset] ^= byte or 1
    try:
        decoded = decode_group_record(bytes(data), NOW, record.group_id)
    except InvalidMessage:
        return
    assert decoded == record  # only a change in an ignored byte (e.g. unknown field) may pass
