"""Group records and task indexes: our own types and the rules every node applies to them. Pure.

`net/messages.py` turns wire bytes into these types (signature, sizes, counts) and `net/registry.py`
plugs the rules into the DHT; members apply the same rules to records heard on the group topic.

Rules for one version on its own (`check_group_record`, every node, every value):
- the group id is bound to its creator: group_id == group_id_for(creator, nonce);
- the version is signed by its `leader`, a member it lists (the envelope author is checked at the
  edge); version 1 is led by the creator and names no predecessor, later versions name one;
- not expired, not dated beyond CLOCK_SKEW ahead, expiring at most MAX_TTL ahead; members unique
  and within the capacity, the capacity within MAX_MEMBERS.

Authority: one author per change. A later version is valid against a version a node holds
(`standing`) when its leader is a member of the held version and either led that version too, or
took over from it: a takeover drops the held version's leader and every member ranked before the
new leader in peer order, and adds nobody. A version right after the held one must also name the
held one's digest as its predecessor. So an outsider, whatever it lists, can never write a version
that a holder of the real record accepts; members add their own check on top (a takeover must not
drop members they still hear: `membership.py`).

A node that holds no version of a group (a DHT node asked to store it for the first time, a reader
with no copy) accepts any version valid on its own, and among several picks with `best_record`:
drop every candidate that another candidate validly succeeds, then keep the one whose leader the
most candidates list (the real leader is listed by every honest copy, old or new; a forger only by
its own copies), the first on a tie. That first-on-tie keeps what a DHT node already holds when
py-libp2p asks it to compare [stored, offered] and keeps our own write when it compares [ours, old].
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

from mycelium.errors import InvalidMessage
from mycelium.policy.peers import PeerId

NAMESPACE = "mycelium"
GROUP_PREFIX = f"/{NAMESPACE}/group/"
TASK_PREFIX = f"/{NAMESPACE}/task/"

MAX_INDEX_ENTRIES = 256
MAX_MEMBERS = 64
MAX_ADDRS_PER_MEMBER = 4
MAX_TEXT = 128
MAX_TTL = 3600.0
CLOCK_SKEW = 60.0

GROUP_ID_HEX = 32
_TASK_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_GROUP_ID_RE = re.compile(rf"^[0-9a-f]{{{GROUP_ID_HEX}}}$")


class JoinPolicy(Enum):
    OPEN = "open"
    INVITE = "invite"


@dataclass(frozen=True)
class Metrics:
    accuracy: float = 0.0
    loss: float = 0.0
    samples: int = 0
    rounds_per_minute: float = 0.0


@dataclass(frozen=True)
class Member:
    peer_id: PeerId
    joined_at: float
    last_seen: float
    addrs: tuple[str, ...] = ()


@dataclass(frozen=True)
class GroupRecord:
    group_id: str
    task: str
    name: str
    model_fingerprint: str
    policy: JoinPolicy
    capacity: int
    round: int
    members: tuple[Member, ...]
    metrics: Metrics
    version: int
    updated_at: float
    expires_at: float
    creator: PeerId
    nonce: bytes
    leader: PeerId
    model_hash: bytes = b""
    previous: bytes = b""  # digest of the version this one replaces
    # sha256 of the signed payload, and the signed envelope itself (to forward it), once the version
    # is sealed or decoded (b"" before)
    digest: bytes = field(default=b"", compare=False)
    signed: bytes = field(default=b"", compare=False, repr=False)

    @property
    def member_ids(self) -> frozenset[PeerId]:
        return frozenset(member.peer_id for member in self.members)

    @property
    def has_room(self) -> bool:
        return len(self.members) < self.capacity

    def member(self, peer: PeerId) -> Member | None:
        return next((m for m in self.members if m.peer_id == peer), None)

    def successor(self, now: float, ttl: float, leader: PeerId, **changes: object) -> GroupRecord:
        """The next version, led by `leader`, dated `now` (never earlier than this one)."""
        updated_at = max(now, self.updated_at + 0.001)
        return replace(
            self,
            version=self.version + 1,
            updated_at=updated_at,
            expires_at=updated_at + ttl,
            leader=leader,
            previous=self.digest,
            digest=b"",
            signed=b"",
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

    def live_group_ids(self, now: float) -> list[str]:
        return [entry.group_id for entry in self.entries if entry.expires_at > now]


def group_id_for(creator: PeerId, nonce: bytes) -> str:
    return hashlib.sha256(creator.raw + nonce).hexdigest()[:GROUP_ID_HEX]


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


def check_text(value: str, what: str) -> str:
    if len(value) > MAX_TEXT:
        raise InvalidMessage(f"{what} longer than {MAX_TEXT} characters")
    return value


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


# --- one version on its own ---------------------------------------------------------------------


def check_dates(updated_at: float, expires_at: float, now: float, what: str) -> None:
    if expires_at <= now:
        raise InvalidMessage(f"{what} expired {now - expires_at:.0f} s ago")
    if updated_at > now + CLOCK_SKEW:
        raise InvalidMessage(f"{what} is dated {updated_at - now:.0f} s in the future")
    if expires_at > now + MAX_TTL + CLOCK_SKEW:
        raise InvalidMessage(f"{what} expires too far ahead ({expires_at - now:.0f} s)")


def check_group_record(record: GroupRecord, now: float) -> GroupRecord:
    """Raise InvalidMessage naming the first rule a version breaks on its own; else return it."""
    if not is_group_id(record.group_id):
        raise InvalidMessage(f"malformed group id {record.group_id[:40]!r}")
    check_task_name(record.task)
    if not 8 <= len(record.nonce) <= 32:
        raise InvalidMessage("group nonce must be 8-32 bytes")
    if group_id_for(record.creator, record.nonce) != record.group_id:
        raise InvalidMessage("group id is not bound to its creator")
    if not 1 <= record.capacity <= MAX_MEMBERS:
        raise InvalidMessage(f"capacity {record.capacity} outside 1..{MAX_MEMBERS}")
    if len(record.members) > record.capacity:
        raise InvalidMessage(f"{len(record.members)} members exceed the capacity of {record.capacity}")
    if len(record.member_ids) != len(record.members):
        raise InvalidMessage("a member is listed twice")
    if record.leader not in record.member_ids:
        raise InvalidMessage(f"its leader {record.leader.short} is not a member it lists")
    if record.version < 1:
        raise InvalidMessage("version must be 1 or more")
    if record.version == 1 and record.leader != record.creator:
        raise InvalidMessage("version 1 must be signed by the group's creator")
    if record.version == 1 and record.previous:
        raise InvalidMessage("version 1 has no predecessor")
    if record.version > 1 and not record.previous:
        raise InvalidMessage(f"version {record.version} names no predecessor")
    check_dates(record.updated_at, record.expires_at, now, "group record")
    return record


def check_group_index(index: GroupIndex, now: float) -> GroupIndex:
    check_task_name(index.task)
    if len(index.entries) > MAX_INDEX_ENTRIES:
        raise InvalidMessage(f"index holds more than {MAX_INDEX_ENTRIES} entries")
    for entry in index.entries:
        if not is_group_id(entry.group_id):
            raise InvalidMessage(f"malformed group id {entry.group_id[:40]!r} in index")
    check_dates(index.updated_at, index.expires_at, now, "group index")
    return index


# --- one version against another ----------------------------------------------------------------


class Standing(Enum):
    """What a version is worth to a node that holds another version of the same group."""

    SAME = "same"  # the version it holds
    SUCCESSOR = "successor"  # a later version whose leader the held version entitles
    STALE = "stale"  # not later than the held version
    UNENTITLED = "unentitled"  # later, but written by someone the held version does not entitle
    OTHER_GROUP = "other group"


def is_takeover(held: GroupRecord, new: GroupRecord) -> bool:
    """`new`'s leader took over from `held`'s: it drops that leader and every member ranked before
    itself, and adds nobody."""
    dropped = held.member_ids - new.member_ids
    ahead = {peer for peer in held.member_ids if peer < new.leader} | {held.leader}
    return ahead <= dropped and new.member_ids <= held.member_ids


def entitles(held: GroupRecord, new: GroupRecord) -> bool:
    """Whether the leader of `new` may write a version after `held` (see the module's rules)."""
    if new.leader not in held.member_ids:
        return False
    if new.version == held.version + 1 and new.previous != held.digest:
        return False  # a sibling of a version we do not hold: another branch
    return new.leader == held.leader or is_takeover(held, new)


def standing(held: GroupRecord, new: GroupRecord) -> Standing:
    if new.group_id != held.group_id:
        return Standing.OTHER_GROUP
    if new.digest and new.digest == held.digest:
        return Standing.SAME
    if new.version <= held.version:
        return Standing.STALE
    return Standing.SUCCESSOR if entitles(held, new) else Standing.UNENTITLED


def best_record(candidates: Sequence[GroupRecord]) -> int:
    """Index of the version to believe among valid versions of one group, with no history (see the
    module's rules). `candidates` must not be empty; duplicates count as support."""
    if not candidates:
        raise ValueError("no candidates")
    heads = [
        index
        for index, held in enumerate(candidates)
        if not any(standing(held, other) is Standing.SUCCESSOR for other in candidates)
    ]

    def endorsement(index: int) -> int:
        leader = candidates[index].leader
        return sum(1 for candidate in candidates if leader in candidate.member_ids)

    return max(heads, key=lambda index: (endorsement(index), -index))


def believe(held: GroupRecord | None, offered: GroupRecord, now: float) -> bool:
    """Whether a node holding `held` (None: nothing, or nothing unexpired) takes `offered` instead."""
    if held is None or held.expires_at <= now:
        return True
    return standing(held, offered) is Standing.SUCCESSOR
