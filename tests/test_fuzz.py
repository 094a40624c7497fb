"""Hostile bytes against every decoder: records, indexes, envelopes, group messages, joins, invites,
model blobs and stream frames. A decoder may refuse (InvalidMessage, or TransferError for a frame
cut short); anything else is a crash.

The default run feeds FUZZ_INPUTS (2,000) inputs per decoder, and a quarter of that per path to a
running node (tests/test_hostile_peers.py: its gossip validator, join and transfer handlers); the
full run is

    MYCELIUM_FUZZ_INPUTS=12500 python -m pytest tests/test_fuzz.py tests/test_hostile_peers.py -s

(8 decoders × 12,500 = 100,000 inputs, and 3 × 3,125 through the running node.)

Inputs are valid seed messages, mutated: byte flips, insertions, deletions, truncations and splices
of the serialized payload, and protobuf-aware changes (a random field set to an extreme value: huge
and negative numbers, NaN and infinities, empty and 40 KiB strings and bytes, 300-element repeats).
Mutated payloads are signed with the attacker's own key, as a hostile peer would sign them, so they
get past the signature check and reach the decoders behind it; a share is left unsigned or
corrupted to exercise the envelope itself. Seeds are fixed: a failure reproduces.
"""

from __future__ import annotations

import math
import os
import random
import resource
import time
from collections import Counter, OrderedDict
from collections.abc import Callable

import numpy as np
import pytest
import trio
from google.protobuf.descriptor import FieldDescriptor
from libp2p.crypto.ed25519 import create_new_key_pair

from mycelium.errors import InvalidMessage, TransferError
from mycelium.learn import codec as tensor_codec
from mycelium.net.framing import FrameReader, frame
from mycelium.net.messages import (
    decode_group_index,
    decode_group_message,
    decode_group_record,
    decode_value,
    join_answer_from_signed,
    join_request_from_signed,
    seal_record,
)
from mycelium.net.signing import Kind, open_envelope, peer_id_of, seal
from mycelium.policy.records import GroupRecord, JoinPolicy, Member, Metrics, group_id_for, group_key
from mycelium.proto import mycelium_pb2 as pb

FUZZ_INPUTS = int(os.environ.get("MYCELIUM_FUZZ_INPUTS", "2000"))
NOW = 1_800_000_000.0
ATTACKER = create_new_key_pair(b"\x07" * 32)
MAX_BYTES = 64 * 1024
SHAPES = {"layer.weight": (4, 3), "layer.bias": (4,)}
FINGERPRINT = "mlp-test"
EXTREME_INTS = [0, 1, -1, 2**31 - 1, -(2**31), 2**32 - 1, 2**63 - 1, -(2**63), 2**64 - 1]
EXTREME_FLOATS = [0.0, -0.0, 1e308, -1e308, math.inf, -math.inf, math.nan, 5e-324]


def _record() -> GroupRecord:
    me = peer_id_of(ATTACKER)
    nonce = b"\x01" * 16
    return seal_record(
        ATTACKER,
        GroupRecord(
            group_id=group_id_for(me, nonce),
            task="digits-mlp",
            name="fuzz",
            model_fingerprint=FINGERPRINT,
            policy=JoinPolicy.OPEN,
            capacity=10,
            round=3,
            members=(Member(me, NOW - 10, NOW, ("/ip4/127.0.0.1/tcp/4001",)),),
            metrics=Metrics(accuracy=0.5, loss=1.0, samples=100, rounds_per_minute=10.0),
            version=1,
            updated_at=NOW,
            expires_at=NOW + 60,
            creator=me,
            nonce=nonce,
            leader=me,
        ),
    )


RECORD = _record()
SEEDS: dict[int, bytes] = {
    Kind.GROUP_RECORD: pb.Envelope.FromString(RECORD.signed).payload,
    Kind.GROUP_INDEX: pb.GroupIndex(
        task="digits-mlp",
        entries=[pb.IndexEntry(group_id=RECORD.group_id, expires_at=NOW + 60)],
        updated_at=NOW,
        expires_at=NOW + 60,
    ).SerializeToString(),
    Kind.MEMBER_HEARTBEAT: pb.MemberHeartbeat(
        group_id=RECORD.group_id,
        round=3,
        sent_at=NOW,
        model_hash=b"h" * 32,
        addrs=["/ip4/1.2.3.4/tcp/1"],
        seq=5,
    ).SerializeToString(),
    Kind.UPDATE_ANNOUNCE: pb.UpdateAnnounce(
        group_id=RECORD.group_id,
        round=3,
        samples=100,
        content_hash=b"c" * 32,
        size=10,
        inline_blob=b"x" * 10,
        model_fingerprint=FINGERPRINT,
        base_hash=b"b" * 32,
        sent_at=NOW,
        label_counts=[1, 2, 3],
        seq=6,
    ).SerializeToString(),
    Kind.MEMBER_LEFT: pb.MemberLeft(
        group_id=RECORD.group_id, sent_at=NOW, reason="bye", seq=7
    ).SerializeToString(),
    Kind.GROUP_SPLIT: pb.GroupSplit(
        group_id=RECORD.group_id,
        round=3,
        stay=[RECORD.leader.raw],
        leave=[RECORD.leader.raw],
        new_group_id=RECORD.group_id,
        new_creator=RECORD.leader.raw,
        nonce=b"n" * 16,
        separation=0.5,
        sent_at=NOW,
        seq=8,
    ).SerializeToString(),
    Kind.MERGE_OFFER: pb.MergeOffer(
        group_id=RECORD.group_id,
        seq=9,
        sent_at=NOW,
        part_record=RECORD.signed,
        other_digest=b"d" * 32,
        own_score=0.5,
        other_score=0.4,
        live_members=3,
    ).SerializeToString(),
    Kind.JOIN_REQUEST: pb.JoinRequest(
        group_id=RECORD.group_id, model_fingerprint=FINGERPRINT, addrs=["/ip4/1.2.3.4/tcp/1"], sent_at=NOW
    ).SerializeToString(),
    Kind.JOIN_RESPONSE: pb.JoinResponse(
        status=pb.JoinResponse.REDIRECT, reason="ask", leader=RECORD.leader.raw, record=RECORD.signed
    ).SerializeToString(),
}
MESSAGE_TYPES = {
    Kind.GROUP_RECORD: pb.GroupRecord,
    Kind.GROUP_INDEX: pb.GroupIndex,
    Kind.MEMBER_HEARTBEAT: pb.MemberHeartbeat,
    Kind.UPDATE_ANNOUNCE: pb.UpdateAnnounce,
    Kind.MEMBER_LEFT: pb.MemberLeft,
    Kind.GROUP_SPLIT: pb.GroupSplit,
    Kind.MERGE_OFFER: pb.MergeOffer,
    Kind.JOIN_REQUEST: pb.JoinRequest,
    Kind.JOIN_RESPONSE: pb.JoinResponse,
}
MODEL_SEED = tensor_codec.encode(
    OrderedDict((name, np.ones(shape, dtype=np.float32)) for name, shape in SHAPES.items()),
    tensor_codec.get_codec("int8"),
    FINGERPRINT,
)


def _extreme(field: FieldDescriptor, rng: random.Random) -> object:
    kind = field.type
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return rng.choice(EXTREME_FLOATS)
    if kind == FieldDescriptor.TYPE_BOOL:
        return rng.random() < 0.5
    if kind == FieldDescriptor.TYPE_STRING:
        return rng.choice(["", "\x00", "é" * rng.randint(1, 50), "a" * 40_000, "/ip4/999.1.1.1/tcp/99999"])
    if kind == FieldDescriptor.TYPE_BYTES:
        return rng.choice([b"", b"\x00", rng.randbytes(rng.randint(1, 64)), b"\xff" * 40_000])
    if kind == FieldDescriptor.TYPE_ENUM:
        return rng.choice([v.number for v in field.enum_type.values] + [999])
    if kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return rng.choice([0, 1, 2**31, 2**32 - 1])
    if kind in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return rng.choice([0, 1, 2**63, 2**64 - 1])
    if kind in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32):
        return rng.choice([v for v in EXTREME_INTS if -(2**31) <= v < 2**31])
    return rng.choice([v for v in EXTREME_INTS if -(2**63) <= v < 2**63])


def mutate_fields(message_type: type, seed: bytes, rng: random.Random) -> bytes:
    message = message_type.FromString(seed)
    for _ in range(rng.randint(1, 3)):
        field = rng.choice(message.DESCRIPTOR.fields)
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            continue
        value = _extreme(field, rng)
        try:
            if field.label == FieldDescriptor.LABEL_REPEATED:
                getattr(message, field.name).extend([value] * rng.choice([1, 300]))
            else:
                setattr(message, field.name, value)
        except (TypeError, ValueError):
            continue  # a value this field's type cannot hold is the wire's job (byte mutations)
    return message.SerializeToString()


def mutate_bytes(seed: bytes, rng: random.Random) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        at = rng.randint(0, len(data))
        if choice < 0.3 and data:
            data[min(at, len(data) - 1)] ^= 1 << rng.randint(0, 7)
        elif choice < 0.5:
            data[at:at] = rng.randbytes(rng.randint(1, 16))
        elif choice < 0.7 and data:
            del data[at : at + rng.randint(1, 16)]
        elif choice < 0.8:
            del data[at:]
        elif choice < 0.9 and data:
            start = rng.randint(0, len(data) - 1)
            data[at:at] = data[start : start + rng.randint(1, 64)]
        else:
            data[at:at] = bytes([rng.randint(0, 255)]) * rng.randint(1, 10)
    return bytes(data)


def hostile(kind: int, rng: random.Random) -> bytes:
    """One hostile envelope of `kind`: mostly signed mutations, some corrupted envelopes."""
    seed = SEEDS[kind]
    payload = mutate_fields(MESSAGE_TYPES[kind], seed, rng) if rng.random() < 0.5 else mutate_bytes(seed, rng)
    envelope = seal(ATTACKER, kind, _Raw(payload))
    if rng.random() < 0.15:
        return mutate_bytes(envelope, rng)
    if rng.random() < 0.05:
        return rng.randbytes(rng.randint(0, 512))
    return envelope


class _Raw:
    """Bytes that `seal` treats as an already serialized message."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def SerializeToString(self, deterministic: bool = False) -> bytes:  # noqa: N802 - protobuf's name
        return self.payload


def _group_message(data: bytes) -> object:
    kinds = [Kind.GROUP_RECORD, Kind.MEMBER_HEARTBEAT, Kind.UPDATE_ANNOUNCE, Kind.MEMBER_LEFT]
    kinds += [Kind.GROUP_SPLIT, Kind.MERGE_OFFER]
    return decode_group_message(open_envelope(data, kinds, MAX_BYTES), NOW)


class _Bytes:
    """A byte source with a stream's `read(n)`: frames arrive in pieces of random sizes."""

    def __init__(self, data: bytes, rng: random.Random) -> None:
        self._data, self._rng = data, rng

    async def read(self, n: int) -> bytes:
        take = min(n, self._rng.randint(1, 64))
        piece, self._data = self._data[:take], self._data[take:]
        return piece


def _frames(data: bytes, rng: random.Random) -> object:
    async def read_all() -> list[bytes]:
        reader = FrameReader(_Bytes(data, rng))  # type: ignore[arg-type]
        return [await reader.read_frame(4096) for _ in range(3)]

    return trio.run(read_all)


def _frame_input(rng: random.Random) -> bytes:
    seed = frame(pb.TransferRequest(content_hash=b"c" * 32, offset=5).SerializeToString()) * 3
    return mutate_bytes(seed, rng) if rng.random() < 0.9 else rng.randbytes(rng.randint(0, 300))


# decoder name -> (make one input, decode it)
DECODERS: dict[str, tuple[Callable[[random.Random], bytes], Callable[[bytes, random.Random], object]]] = {
    "group record (DHT value)": (
        lambda rng: hostile(Kind.GROUP_RECORD, rng),
        lambda data, rng: decode_value(group_key(RECORD.group_id), data, NOW),
    ),
    "group record (member's copy)": (
        lambda rng: hostile(Kind.GROUP_RECORD, rng),
        lambda data, rng: decode_group_record(data, NOW, RECORD.group_id),
    ),
    "group index": (
        lambda rng: hostile(Kind.GROUP_INDEX, rng),
        lambda data, rng: decode_group_index(data, NOW, "digits-mlp"),
    ),
    "group-topic messages": (
        lambda rng: hostile(
            rng.choice(
                [
                    Kind.MEMBER_HEARTBEAT,
                    Kind.UPDATE_ANNOUNCE,
                    Kind.MEMBER_LEFT,
                    Kind.GROUP_SPLIT,
                    Kind.MERGE_OFFER,
                    Kind.GROUP_RECORD,
                ]
            ),
            rng,
        ),
        lambda data, rng: _group_message(data),
    ),
    "join request": (
        lambda rng: hostile(Kind.JOIN_REQUEST, rng),
        lambda data, rng: join_request_from_signed(open_envelope(data, Kind.JOIN_REQUEST, MAX_BYTES)),
    ),
    "join answer": (
        lambda rng: hostile(Kind.JOIN_RESPONSE, rng),
        lambda data, rng: join_answer_from_signed(open_envelope(data, Kind.JOIN_RESPONSE, MAX_BYTES)),
    ),
    "model blob": (
        lambda rng: (
            mutate_fields(pb.ModelBlob, MODEL_SEED, rng)
            if rng.random() < 0.3
            else mutate_bytes(MODEL_SEED, rng)
        ),
        lambda data, rng: tensor_codec.decode(data, FINGERPRINT, SHAPES),
    ),
    "transfer frames": (_frame_input, _frames),
}


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_hostile_inputs_are_refused_never_crash_and_use_bounded_memory(name: str) -> None:
    make, decode = DECODERS[name]
    rng = random.Random(f"{name}-{FUZZ_INPUTS}")
    outcomes: Counter[str] = Counter()
    crashes: list[str] = []
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    for _ in range(FUZZ_INPUTS):
        data = make(rng)
        try:
            decode(data, rng)
            outcomes["accepted"] += 1
        except (InvalidMessage, TransferError):
            outcomes["refused"] += 1
        except Exception as error:  # noqa: BLE001 - a crash is what this test looks for
            crashes.append(f"{type(error).__name__}: {error} on {data[:80]!r}")
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    seconds = time.monotonic() - started
    print(f"{name}: {FUZZ_INPUTS} inputs, {dict(outcomes)}, {seconds:.1f} s, +{grown_mib:.0f} MiB")
    assert not crashes, crashes[:5]
    assert outcomes["refused"] > 0  # the fuzzer reaches the checks
    assert grown_mib < 200
