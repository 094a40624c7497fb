"""The edge between wire bytes and our own types: every protobuf message is decoded here, once.

Decoding checks what the wire can get wrong (signature and kind via `signing.open_envelope`, sizes,
counts, lengths of ids and hashes) and then the rules of `policy/records.py`; what comes out is a
frozen value of `policy/messages.py` or `policy/records.py`, and nothing past this module sees `pb.*`.
Encoding is the mirror image, plus our own sequence numbers (see policy/freshness.py).
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import replace

from libp2p.crypto.keys import KeyPair

from mycelium.errors import InvalidMessage
from mycelium.net.signing import Kind, Signed, open_envelope, seal
from mycelium.policy.messages import (
    Announce,
    Goodbye,
    GroupMessage,
    Heartbeat,
    JoinAnswer,
    JoinRequest,
    JoinStatus,
    MergeOffer,
    SplitNotice,
    Stamp,
)
from mycelium.policy.peers import MAX_PEER_ID_BYTES, PeerId
from mycelium.policy.records import (
    GROUP_PREFIX,
    MAX_ADDRS_PER_MEMBER,
    MAX_MEMBERS,
    TASK_PREFIX,
    GroupIndex,
    GroupRecord,
    IndexEntry,
    JoinPolicy,
    Member,
    Metrics,
    check_group_index,
    check_group_record,
    check_text,
)
from mycelium.policy.relaying import MAX_LISTED
from mycelium.proto import mycelium_pb2 as pb

MAX_GROUP_RECORD_BYTES = 32 * 1024
MAX_INDEX_BYTES = 64 * 1024
MAX_HASH_BYTES = 64
MAX_CLASSES = 1000
MAX_REASON = 200

GROUP_KINDS = frozenset(
    {
        Kind.MEMBER_HEARTBEAT,
        Kind.UPDATE_ANNOUNCE,
        Kind.GROUP_RECORD,
        Kind.MEMBER_LEFT,
        Kind.GROUP_SPLIT,
        Kind.MERGE_OFFER,
    }
)

_POLICY_TO_PB = {JoinPolicy.OPEN: pb.JOIN_POLICY_OPEN, JoinPolicy.INVITE: pb.JOIN_POLICY_INVITE}
_POLICY_FROM_PB = {value: key for key, value in _POLICY_TO_PB.items()}
_STATUS_TO_PB = {
    JoinStatus.ADMITTED: pb.JoinResponse.ADMITTED,
    JoinStatus.REFUSED: pb.JoinResponse.REFUSED,
    JoinStatus.REDIRECT: pb.JoinResponse.REDIRECT,
    JoinStatus.FULL: pb.JoinResponse.FULL,
    JoinStatus.NOT_MEMBER: pb.JoinResponse.NOT_MEMBER,
}
_STATUS_FROM_PB = {value: key for key, value in _STATUS_TO_PB.items()}


class SequenceNumbers:
    """Our own sequence numbers: nanoseconds of the wall clock, strictly increasing, so that they keep
    growing across restarts without being stored."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        self._last = max(self._last + 1, time.time_ns())
        return self._last


# --- small checks ------------------------------------------------------------------------------


def peer(raw: bytes, what: str) -> PeerId:
    if not 2 <= len(raw) <= MAX_PEER_ID_BYTES:
        raise InvalidMessage(f"{what} is not a peer id")
    return PeerId(raw)


def _hash(raw: bytes, what: str) -> bytes:
    if len(raw) > MAX_HASH_BYTES:
        raise InvalidMessage(f"{what} longer than {MAX_HASH_BYTES} bytes")
    return raw


def _addrs(values: object, what: str = "addresses") -> tuple[str, ...]:
    addrs = tuple(values)  # type: ignore[call-overload]
    if len(addrs) > MAX_ADDRS_PER_MEMBER:
        raise InvalidMessage(f"more than {MAX_ADDRS_PER_MEMBER} {what}")
    return tuple(check_text(addr, "address") for addr in addrs)


def _finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise InvalidMessage(f"{what} is not a finite number")
    return value


def _stamp(signed: Signed, seq: int, sent_at: float) -> Stamp:
    return Stamp(signed.author, seq, _finite(sent_at, "sent_at"))


def record_digest(payload: bytes) -> bytes:
    return hashlib.sha256(payload).digest()


# --- group records and task indexes ------------------------------------------------------------


def _metrics_to_pb(metrics: Metrics) -> pb.Metrics:
    return pb.Metrics(
        accuracy=metrics.accuracy,
        loss=metrics.loss,
        samples=metrics.samples,
        rounds_per_minute=metrics.rounds_per_minute,
    )


def _metrics_from_pb(message: pb.Metrics) -> Metrics:
    return Metrics(
        accuracy=message.accuracy,
        loss=message.loss,
        samples=message.samples,
        rounds_per_minute=message.rounds_per_minute,
    )


def record_to_pb(record: GroupRecord) -> pb.GroupRecord:
    return pb.GroupRecord(
        group_id=record.group_id,
        task=record.task,
        name=record.name,
        model_fingerprint=record.model_fingerprint,
        policy=_POLICY_TO_PB[record.policy],
        capacity=record.capacity,
        round=record.round,
        members=[
            pb.Member(
                peer_id=m.peer_id.raw, joined_at=m.joined_at, last_seen=m.last_seen, addrs=list(m.addrs)
            )
            for m in record.members
        ],
        metrics=_metrics_to_pb(record.metrics),
        version=record.version,
        updated_at=record.updated_at,
        expires_at=record.expires_at,
        creator=record.creator.raw,
        nonce=record.nonce,
        model_hash=record.model_hash,
        previous=record.previous,
        leader=record.leader.raw,
    )


def seal_record(key_pair: KeyPair, record: GroupRecord) -> GroupRecord:
    """Sign a version we lead: the same version, with its digest and signed form."""
    message = record_to_pb(record)
    signed = seal(key_pair, Kind.GROUP_RECORD, message)
    digest = record_digest(message.SerializeToString(deterministic=True))
    return replace(record, digest=digest, signed=signed)


def record_from_signed(signed: Signed, now: float) -> GroupRecord:
    message = signed.decode(pb.GroupRecord)
    if len(message.members) > MAX_MEMBERS:
        raise InvalidMessage(f"more than {MAX_MEMBERS} members")
    if message.policy not in _POLICY_FROM_PB:
        raise InvalidMessage(f"unknown join policy {message.policy}")
    leader = peer(message.leader, "leader")
    if leader != signed.author:
        raise InvalidMessage(f"signed by {signed.author.short}, not by its leader {leader.short}")
    members = tuple(
        Member(
            peer_id=peer(entry.peer_id, "member"),
            joined_at=entry.joined_at,
            last_seen=entry.last_seen,
            addrs=_addrs(entry.addrs, "addresses for one member"),
        )
        for entry in message.members
    )
    record = GroupRecord(
        group_id=message.group_id,
        task=message.task,
        name=check_text(message.name, "group name"),
        model_fingerprint=check_text(message.model_fingerprint, "model fingerprint"),
        policy=_POLICY_FROM_PB[message.policy],
        capacity=message.capacity,
        round=message.round,
        members=members,
        metrics=_metrics_from_pb(message.metrics),
        version=message.version,
        updated_at=message.updated_at,
        expires_at=message.expires_at,
        creator=peer(message.creator, "creator"),
        nonce=message.nonce,
        leader=leader,
        model_hash=_hash(message.model_hash, "model hash"),
        previous=_hash(message.previous, "previous digest"),
        digest=record_digest(signed.payload),
        signed=signed.raw,
    )
    return check_group_record(record, now)


def decode_group_record(data: bytes, now: float, group_id: str | None = None) -> GroupRecord:
    """Validate signed group-record bytes; `group_id` is the one the DHT key names, if any."""
    record = record_from_signed(open_envelope(data, Kind.GROUP_RECORD, MAX_GROUP_RECORD_BYTES), now)
    if group_id is not None and record.group_id != group_id:
        raise InvalidMessage(f"record for group {record.group_id} stored under {group_id}")
    return record


def index_to_pb(index: GroupIndex) -> pb.GroupIndex:
    return pb.GroupIndex(
        task=index.task,
        entries=[pb.IndexEntry(group_id=e.group_id, expires_at=e.expires_at) for e in index.entries],
        updated_at=index.updated_at,
        expires_at=index.expires_at,
    )


def seal_index(key_pair: KeyPair, index: GroupIndex) -> bytes:
    return seal(key_pair, Kind.GROUP_INDEX, index_to_pb(index))


def decode_group_index(data: bytes, now: float, task: str | None = None) -> GroupIndex:
    message = open_envelope(data, Kind.GROUP_INDEX, MAX_INDEX_BYTES).decode(pb.GroupIndex)
    index = check_group_index(
        GroupIndex(
            task=message.task,
            entries=tuple(IndexEntry(e.group_id, e.expires_at) for e in message.entries),
            updated_at=message.updated_at,
            expires_at=message.expires_at,
        ),
        now,
    )
    if task is not None and index.task != task:
        raise InvalidMessage(f"index for task {index.task} stored under {task}")
    return index


def decode_value(key: str, value: bytes, now: float) -> GroupRecord | GroupIndex:
    """Validate a DHT value under one of our keys; raise InvalidMessage when it must be rejected."""
    if key.startswith(GROUP_PREFIX):
        return decode_group_record(value, now, key[len(GROUP_PREFIX) :])
    if key.startswith(TASK_PREFIX):
        return decode_group_index(value, now, key[len(TASK_PREFIX) :])
    raise InvalidMessage(f"no record type lives under {key[:80]!r}")


# --- group-topic messages ----------------------------------------------------------------------


def decode_group_message(signed: Signed, now: float) -> GroupMessage | GroupRecord:
    """A group-topic message as our own type (records as `GroupRecord`)."""
    kind = signed.kind
    if kind == Kind.GROUP_RECORD:
        return record_from_signed(signed, now)
    if kind == Kind.MEMBER_HEARTBEAT:
        beat = signed.decode(pb.MemberHeartbeat)
        return Heartbeat(
            stamp=_stamp(signed, beat.seq, beat.sent_at),
            group_id=beat.group_id,
            round=beat.round,
            model_hash=_hash(beat.model_hash, "model hash"),
            accuracy=beat.metrics.accuracy,
            addrs=_addrs(beat.addrs),
            record_version=beat.record_version,
            record_digest=_hash(beat.record_digest, "record digest"),
            bytes_in=beat.bytes_in,
            bytes_out=beat.bytes_out,
            heard=_heard_directly(beat),
        )
    if kind == Kind.UPDATE_ANNOUNCE:
        announce = signed.decode(pb.UpdateAnnounce)
        if len(announce.label_counts) > MAX_CLASSES:
            raise InvalidMessage(f"more than {MAX_CLASSES} classes")
        return Announce(
            stamp=_stamp(signed, announce.seq, announce.sent_at),
            group_id=announce.group_id,
            round=announce.round,
            samples=announce.samples,
            accuracy=announce.metrics.accuracy,
            train_loss=announce.metrics.loss,
            content_hash=_hash(announce.content_hash, "content hash"),
            size=announce.size,
            codec=announce.codec,
            inline_blob=announce.inline_blob,
            model_fingerprint=check_text(announce.model_fingerprint, "model fingerprint"),
            base_hash=_hash(announce.base_hash, "base hash"),
            label_counts=tuple(announce.label_counts),
            manifest_hash=_hash(announce.manifest_hash, "manifest hash"),
        )
    if kind == Kind.MEMBER_LEFT:
        left = signed.decode(pb.MemberLeft)
        return Goodbye(_stamp(signed, left.seq, left.sent_at), left.group_id, left.reason[:MAX_REASON])
    if kind == Kind.GROUP_SPLIT:
        split = signed.decode(pb.GroupSplit)
        if len(split.stay) + len(split.leave) > MAX_MEMBERS:
            raise InvalidMessage(f"a split of more than {MAX_MEMBERS} members")
        return SplitNotice(
            stamp=_stamp(signed, split.seq, split.sent_at),
            group_id=split.group_id,
            round=split.round,
            stay=tuple(peer(raw, "member") for raw in split.stay),
            leave=tuple(peer(raw, "member") for raw in split.leave),
            new_group_id=split.new_group_id,
            new_creator=peer(split.new_creator, "creator"),
            nonce=_hash(split.nonce, "nonce"),
            separation=_finite(split.separation, "separation"),
        )
    if kind == Kind.MERGE_OFFER:
        offer = signed.decode(pb.MergeOffer)
        part = decode_group_record(offer.part_record, now)
        return MergeOffer(
            stamp=_stamp(signed, offer.seq, offer.sent_at),
            group_id=offer.group_id,
            part=part,
            other_digest=_hash(offer.other_digest, "digest"),
            own_score=_finite(offer.own_score, "score"),
            other_score=_finite(offer.other_score, "score"),
            live_members=min(offer.live_members, MAX_MEMBERS),
        )
    raise InvalidMessage(f"{Kind.Name(kind)} does not travel on a group topic")


def _heard_directly(beat: pb.MemberHeartbeat) -> frozenset[PeerId] | None:
    if not beat.HasField("heard"):
        return None
    if len(beat.heard.authors) > MAX_LISTED:
        raise InvalidMessage(f"more than {MAX_LISTED} authors heard directly")
    return frozenset(peer(raw, "author heard directly") for raw in beat.heard.authors)


def heartbeat_to_pb(beat: Heartbeat) -> pb.MemberHeartbeat:
    heard = (
        None if beat.heard is None else pb.HeardDirectly(authors=sorted(author.raw for author in beat.heard))
    )
    return pb.MemberHeartbeat(
        group_id=beat.group_id,
        round=beat.round,
        sent_at=beat.stamp.sent_at,
        seq=beat.stamp.seq,
        metrics=pb.Metrics(accuracy=beat.accuracy),
        model_hash=beat.model_hash,
        addrs=list(beat.addrs),
        record_version=beat.record_version,
        record_digest=beat.record_digest,
        bytes_in=beat.bytes_in,
        bytes_out=beat.bytes_out,
        heard=heard,
    )


def announce_to_pb(announce: Announce) -> pb.UpdateAnnounce:
    return pb.UpdateAnnounce(
        group_id=announce.group_id,
        round=announce.round,
        samples=announce.samples,
        metrics=pb.Metrics(accuracy=announce.accuracy, loss=announce.train_loss, samples=announce.samples),
        content_hash=announce.content_hash,
        size=announce.size,
        codec=announce.codec,  # type: ignore[arg-type]
        inline_blob=announce.inline_blob,
        model_fingerprint=announce.model_fingerprint,
        base_hash=announce.base_hash,
        sent_at=announce.stamp.sent_at,
        seq=announce.stamp.seq,
        label_counts=list(announce.label_counts),
        manifest_hash=announce.manifest_hash,
    )


def goodbye_to_pb(goodbye: Goodbye) -> pb.MemberLeft:
    return pb.MemberLeft(
        group_id=goodbye.group_id, sent_at=goodbye.stamp.sent_at, seq=goodbye.stamp.seq, reason=goodbye.reason
    )


def split_to_pb(notice: SplitNotice) -> pb.GroupSplit:
    return pb.GroupSplit(
        group_id=notice.group_id,
        round=notice.round,
        stay=[p.raw for p in notice.stay],
        leave=[p.raw for p in notice.leave],
        new_group_id=notice.new_group_id,
        new_creator=notice.new_creator.raw,
        nonce=notice.nonce,
        separation=notice.separation,
        sent_at=notice.stamp.sent_at,
        seq=notice.stamp.seq,
    )


def offer_to_pb(offer: MergeOffer) -> pb.MergeOffer:
    return pb.MergeOffer(
        group_id=offer.group_id,
        seq=offer.stamp.seq,
        sent_at=offer.stamp.sent_at,
        part_record=offer.part.signed,
        other_digest=offer.other_digest,
        own_score=offer.own_score,
        other_score=offer.other_score,
        live_members=offer.live_members,
    )


KIND_OF = {
    Heartbeat: (Kind.MEMBER_HEARTBEAT, heartbeat_to_pb),
    Announce: (Kind.UPDATE_ANNOUNCE, announce_to_pb),
    Goodbye: (Kind.MEMBER_LEFT, goodbye_to_pb),
    SplitNotice: (Kind.GROUP_SPLIT, split_to_pb),
    MergeOffer: (Kind.MERGE_OFFER, offer_to_pb),
}


def seal_group_message(key_pair: KeyPair, message: GroupMessage) -> bytes:
    kind, to_pb = KIND_OF[type(message)]
    return seal(key_pair, kind, to_pb(message))  # type: ignore[operator]


# --- joins -------------------------------------------------------------------------------------


def join_request_to_pb(request: JoinRequest) -> pb.JoinRequest:
    return pb.JoinRequest(
        group_id=request.group_id,
        model_fingerprint=request.model_fingerprint,
        invite=request.invite,
        addrs=list(request.addrs),
        sent_at=request.sent_at,
    )


def join_request_from_signed(signed: Signed) -> JoinRequest:
    message = signed.decode(pb.JoinRequest)
    return JoinRequest(
        author=signed.author,
        group_id=message.group_id,
        model_fingerprint=check_text(message.model_fingerprint, "model fingerprint"),
        invite=message.invite,
        addrs=_addrs(message.addrs),
        sent_at=_finite(message.sent_at, "sent_at"),
    )


def join_answer_to_pb(answer: JoinAnswer) -> pb.JoinResponse:
    return pb.JoinResponse(
        status=_STATUS_TO_PB[answer.status],
        reason=answer.reason,
        leader=answer.leader.raw if answer.leader else b"",
        leader_addrs=list(answer.leader_addrs),
        record=answer.record_raw,
    )


def join_answer_from_signed(signed: Signed) -> JoinAnswer:
    message = signed.decode(pb.JoinResponse)
    if message.status not in _STATUS_FROM_PB:
        raise InvalidMessage(f"unknown join status {message.status}")
    status = _STATUS_FROM_PB[message.status]
    return JoinAnswer(
        status=status,
        reason=message.reason[:MAX_REASON],
        leader=peer(message.leader, "leader") if status is JoinStatus.REDIRECT else None,
        leader_addrs=_addrs(message.leader_addrs),
        record_raw=message.record,
    )
