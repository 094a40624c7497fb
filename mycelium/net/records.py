"""Group records and task indexes: our own types, their wire form and the rules every node enforces.

Pure: no I/O. `registry.py` plugs these rules into the DHT; the gossip layer reuses them for the
signed records members publish on topics.

Rules (checked by `decode_group_record` / `decode_group_index`, on every node, for every value):
- the value is a signed Envelope of the right kind, no larger than the limit, of a known schema;
- the key names the record inside (group id / task);
- a group id is bound to its creator: group_id == group_id_for(creator, nonce);
- a group record is signed by its creator or by one of the members it lists;
- it is not expired, not dated in the future beyond CLOCK_SKEW, and its expiry is at most
  MAX_TTL ahead; its members fit its capacity and the capacity fits MAX_MEMBERS.
Selection: among valid values the newest `updated_at` wins, then the highest `version`; on a full
tie the LAST one wins, so that re-putting an identical value refreshes it on remote peers.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID

from mycelium.errors import InvalidMessage
from mycelium.net.signing import Kind, Signed, open_envelope, seal
from mycelium.proto import mycelium_pb2 as pb

NAMESPACE = "mycelium"
GROUP_PREFIX = f"/{NAMESPACE}/group/"
TASK_PREFIX = f"/{NAMESPACE}/task/"

MAX_GROUP_RECORD_BYTES = 32 * 1024
MAX_INDEX_BYTES = 64 * 1024
MAX_INDEX_ENTRIES = 256
MAX_MEMBERS = 64
MAX_ADDRS_PER_MEMBER = 4
MAX_TEXT = 128
MAX_TTL = 3600.0
CLOCK_SKEW = 60.0

GROUP_ID_HEX = 32
_TASK_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_GROUP_ID_RE = re.compile(rf"^[0-9a-f]{{{GROUP_ID_HEX}}}$")


class Policy(Enum):
    OPEN = "open"
    INVITE = "invite"


_POLICY_TO_PB = {Policy.OPEN: pb.JOIN_POLICY_OPEN, Policy.INVITE: pb.JOIN_POLICY_INVITE}
_POLICY_FROM_PB = {value: key for key, value in _POLICY_TO_PB.items()}


@dataclass(frozen=True)
class Metrics:
    accuracy: float = 0.0
    loss: float = 0.0
    samples: int = 0
    rounds_per_minute: float = 0.0

    def to_proto(self) -> pb.Metrics:
        return pb.Metrics(
            accuracy=self.accuracy,
            loss=self.loss,
            samples=self.samples,
            rounds_per_minute=self.rounds_per_minute,
        )

    @classmethod
    def from_proto(cls, message: pb.Metrics) -> Metrics:
        return cls(
            accuracy=message.accuracy,
            loss=message.loss,
            samples=message.samples,
            rounds_per_minute=message.rounds_per_minute,
        )


@dataclass(frozen=True)
class Member:
    peer_id: ID
    joined_at: float
    last_seen: float
    addrs: tuple[str, ...] = ()


@dataclass(frozen=True)
class GroupRecord:
    group_id: str
    task: str
    name: str
    model_fingerprint: str
    policy: Policy
    capacity: int
    round: int
    members: tuple[Member, ...]
    metrics: Metrics
    version: int
    updated_at: float
    expires_at: float
    creator: ID
    nonce: bytes
    model_hash: bytes = b""
    signer: ID | None = field(default=None, compare=False)

    @property
    def member_ids(self) -> frozenset[ID]:
        return frozenset(member.peer_id for member in self.members)

    @property
    def has_room(self) -> bool:
        return len(self.members) < self.capacity

    def to_proto(self) -> pb.GroupRecord:
        return pb.GroupRecord(
            group_id=self.group_id,
            task=self.task,
            name=self.name,
            model_fingerprint=self.model_fingerprint,
            policy=_POLICY_TO_PB[self.policy],
            capacity=self.capacity,
            round=self.round,
            members=[
                pb.Member(
                    peer_id=m.peer_id.to_bytes(),
                    joined_at=m.joined_at,
                    last_seen=m.last_seen,
                    addrs=list(m.addrs),
                )
                for m in self.members
            ],
            metrics=self.metrics.to_proto(),
            version=self.version,
            updated_at=self.updated_at,
            expires_at=self.expires_at,
            creator=self.creator.to_bytes(),
            nonce=self.nonce,
            model_hash=self.model_hash,
        )

    def seal(self, key_pair: KeyPair) -> bytes:
        return seal(key_pair, Kind.GROUP_RECORD, self.to_proto())

    def successor(self, now: float, ttl: float, **changes: object) -> GroupRecord:
        """The next version of this record, dated `now` (never earlier than this one)."""
        updated_at = max(now, self.updated_at + 0.001)
        return replace(
            self,
            version=self.version + 1,
            updated_at=updated_at,
            expires_at=updated_at + ttl,
            signer=None,
            **changes,  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class IndexEntry:
    group_id: str
    expires_at: float


@dataclass(frozen=True)
class GroupIndex:
    task: str
    entries: tuple[IndexEntry, ...]
    updated_at: float
    expires_at: float
    signer: ID | None = field(default=None, compare=False)

    def to_proto(self) -> pb.GroupIndex:
        return pb.GroupIndex(
            task=self.task,
            entries=[pb.IndexEntry(group_id=e.group_id, expires_at=e.expires_at) for e in self.entries],
            updated_at=self.updated_at,
            expires_at=self.expires_at,
        )

    def seal(self, key_pair: KeyPair) -> bytes:
        return seal(key_pair, Kind.GROUP_INDEX, self.to_proto())

    def live_group_ids(self, now: float) -> list[str]:
        return [entry.group_id for entry in self.entries if entry.expires_at > now]


def group_id_for(creator: ID, nonce: bytes) -> str:
    return hashlib.sha256(creator.to_bytes() + nonce).hexdigest()[:GROUP_ID_HEX]


def group_key(group_id: str) -> str:
    return GROUP_PREFIX + group_id


def task_key(task: str) -> str:
    return TASK_PREFIX + task


def check_task_name(task: str) -> str:
    if not _TASK_RE.match(task):
        raise InvalidMessage(
            f"task name {task!r} must be 1-64 characters of letters, digits, '.', '_' or '-'"
        )
    return task


def is_group_id(text: str) -> bool:
    return bool(_GROUP_ID_RE.match(text))


def merge_index(
    current: GroupIndex | None, task: str, add: Sequence[IndexEntry], now: float, ttl: float
) -> GroupIndex:
    """Entries of `current` still alive, updated by `add`, newest expiry kept, bounded in count."""
    expiry: dict[str, float] = {}
    for entry in current.entries if current else ():
        if entry.expires_at > now:
            expiry[entry.group_id] = entry.expires_at
    for entry in add:
        expiry[entry.group_id] = max(entry.expires_at, expiry.get(entry.group_id, 0.0))
    newest = sorted(expiry.items(), key=lambda item: (-item[1], item[0]))[:MAX_INDEX_ENTRIES]
    updated_at = max(now, current.updated_at + 0.001) if current else now
    return GroupIndex(
        task=task,
        entries=tuple(IndexEntry(group_id, expires_at) for group_id, expires_at in sorted(newest)),
        updated_at=updated_at,
        expires_at=updated_at + ttl,
    )


# --- decoding and validation -------------------------------------------------------------------


def _check_dates(updated_at: float, expires_at: float, now: float, what: str) -> None:
    if expires_at <= now:
        raise InvalidMessage(f"{what} expired {now - expires_at:.0f} s ago")
    if updated_at > now + CLOCK_SKEW:
        raise InvalidMessage(f"{what} is dated {updated_at - now:.0f} s in the future")
    if expires_at > now + MAX_TTL + CLOCK_SKEW:
        raise InvalidMessage(f"{what} expires too far ahead ({expires_at - now:.0f} s)")


def _text(value: str, what: str) -> str:
    if len(value) > MAX_TEXT:
        raise InvalidMessage(f"{what} longer than {MAX_TEXT} characters")
    return value


def _peer_id(raw: bytes, what: str) -> ID:
    if not raw or len(raw) > 64:
        raise InvalidMessage(f"{what} is not a peer id")
    return ID(raw)


def record_from_signed(signed: Signed, now: float) -> GroupRecord:
    message = signed.decode(pb.GroupRecord)
    if not is_group_id(message.group_id):
        raise InvalidMessage(f"malformed group id {message.group_id[:40]!r}")
    check_task_name(message.task)
    creator = _peer_id(message.creator, "creator")
    if not 8 <= len(message.nonce) <= 32:
        raise InvalidMessage("group nonce must be 8-32 bytes")
    if group_id_for(creator, message.nonce) != message.group_id:
        raise InvalidMessage("group id is not bound to its creator")
    if not 1 <= message.capacity <= MAX_MEMBERS:
        raise InvalidMessage(f"capacity {message.capacity} outside 1..{MAX_MEMBERS}")
    if len(message.members) > message.capacity:
        raise InvalidMessage(f"{len(message.members)} members exceed the capacity of {message.capacity}")
    if message.policy not in _POLICY_FROM_PB:
        raise InvalidMessage(f"unknown join policy {message.policy}")
    members = []
    for entry in message.members:
        if len(entry.addrs) > MAX_ADDRS_PER_MEMBER:
            raise InvalidMessage("too many addresses for one member")
        members.append(
            Member(
                peer_id=_peer_id(entry.peer_id, "member"),
                joined_at=entry.joined_at,
                last_seen=entry.last_seen,
                addrs=tuple(_text(addr, "address") for addr in entry.addrs),
            )
        )
    if len({m.peer_id for m in members}) != len(members):
        raise InvalidMessage("a member is listed twice")
    if signed.author != creator and signed.author not in {m.peer_id for m in members}:
        raise InvalidMessage(f"{signed.author} is neither the creator nor a member of the group")
    _check_dates(message.updated_at, message.expires_at, now, "group record")
    if len(message.model_hash) > 64:
        raise InvalidMessage("model hash too long")
    return GroupRecord(
        group_id=message.group_id,
        task=message.task,
        name=_text(message.name, "group name"),
        model_fingerprint=_text(message.model_fingerprint, "model fingerprint"),
        policy=_POLICY_FROM_PB[message.policy],
        capacity=message.capacity,
        round=message.round,
        members=tuple(members),
        metrics=Metrics.from_proto(message.metrics),
        version=message.version,
        updated_at=message.updated_at,
        expires_at=message.expires_at,
        creator=creator,
        nonce=message.nonce,
        model_hash=message.model_hash,
        signer=signed.author,
    )


def decode_group_record(data: bytes, now: float, group_id: str | None = None) -> GroupRecord:
    """Validate signed group-record bytes; `group_id` is the one the DHT key names, if any."""
    record = record_from_signed(open_envelope(data, Kind.GROUP_RECORD, MAX_GROUP_RECORD_BYTES), now)
    if group_id is not None and record.group_id != group_id:
        raise InvalidMessage(f"record for group {record.group_id} stored under {group_id}")
    return record


def decode_group_index(data: bytes, now: float, task: str | None = None) -> GroupIndex:
    signed = open_envelope(data, Kind.GROUP_INDEX, MAX_INDEX_BYTES)
    message = signed.decode(pb.GroupIndex)
    check_task_name(message.task)
    if task is not None and message.task != task:
        raise InvalidMessage(f"index for task {message.task} stored under {task}")
    if len(message.entries) > MAX_INDEX_ENTRIES:
        raise InvalidMessage(f"index holds more than {MAX_INDEX_ENTRIES} entries")
    for entry in message.entries:
        if not is_group_id(entry.group_id):
            raise InvalidMessage(f"malformed group id {entry.group_id[:40]!r} in index")
    _check_dates(message.updated_at, message.expires_at, now, "group index")
    return GroupIndex(
        task=message.task,
        entries=tuple(IndexEntry(e.group_id, e.expires_at) for e in message.entries),
        updated_at=message.updated_at,
        expires_at=message.expires_at,
        signer=signed.author,
    )


def decode_value(key: str, value: bytes, now: float) -> GroupRecord | GroupIndex:
    """Validate a DHT value under one of our keys; raise InvalidMessage when it must be rejected."""
    if key.startswith(GROUP_PREFIX):
        return decode_group_record(value, now, key[len(GROUP_PREFIX) :])
    if key.startswith(TASK_PREFIX):
        return decode_group_index(value, now, key[len(TASK_PREFIX) :])
    raise InvalidMessage(f"no record type lives under {key[:80]!r}")


def select_newest(key: str, values: Sequence[bytes], now: float) -> int:
    """Index of the best value: newest updated_at, then highest version; last wins ties.

    Invalid values rank below every valid one (they are normally rejected before this is asked).
    """
    best_index, best_rank = 0, (0, 0.0, 0)
    for index, value in enumerate(values):
        try:
            decoded = decode_value(key, value, now)
        except InvalidMessage:
            continue
        version = decoded.version if isinstance(decoded, GroupRecord) else 0
        rank = (1, decoded.updated_at, version)
        if rank >= best_rank:
            best_index, best_rank = index, rank
    return best_index


# --- invites -----------------------------------------------------------------------------------

MAX_INVITE_BYTES = 1024


def make_invite(
    key_pair: KeyPair, group_id: str, invitee: ID | None, expires_at: float, nonce: bytes
) -> bytes:
    invite = pb.Invite(
        group_id=group_id,
        invitee=invitee.to_bytes() if invitee else b"",
        expires_at=expires_at,
        nonce=nonce,
    )
    return seal(key_pair, Kind.INVITE, invite)


def invite_problem(
    data: bytes, group_id: str, requester: ID, issuers: frozenset[ID], now: float
) -> str | None:
    """Why this invite does not admit `requester` to `group_id`, or None when it does.

    `issuers` are the peers allowed to sign invites: the group's current members.
    """
    try:
        signed = open_envelope(data, Kind.INVITE, MAX_INVITE_BYTES)
        invite = signed.decode(pb.Invite)
    except InvalidMessage as error:
        return str(error)
    if invite.group_id != group_id:
        return "invite is for another group"
    if invite.expires_at <= now:
        return "invite expired"
    if invite.invitee and invite.invitee != requester.to_bytes():
        return "invite is for another peer"
    if signed.author not in issuers:
        return "invite not signed by a current member"
    return None
