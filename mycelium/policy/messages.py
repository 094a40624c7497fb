"""What members tell each other, as our own frozen types. Pure.

`net/messages.py` decodes signed wire messages into these (after the signature, size and count
checks) and encodes them again, so nothing past the network edge sees protobuf. Every group-topic
message carries a `Stamp`: its author (the envelope signer), a per-author sequence number and the
author's clock when it was sent (see freshness.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from mycelium.policy.peers import PeerId
from mycelium.policy.records import GroupRecord


@dataclass(frozen=True)
class Stamp:
    author: PeerId
    seq: int
    sent_at: float


@dataclass(frozen=True)
class Heartbeat:
    stamp: Stamp
    group_id: str
    round: int
    model_hash: bytes
    accuracy: float
    addrs: tuple[str, ...]
    record_version: int  # the record version the author holds ...
    record_digest: bytes  # ... and its digest
    bytes_in: int = 0  # payload bytes the author has moved since it started (what observers show)
    bytes_out: int = 0
    heard: frozenset[PeerId] | None = None  # authors it hears directly (no relays of theirs); None: unsaid


@dataclass(frozen=True)
class Announce:
    """A member finished training for `round`: its update's hash, size and what it came from."""

    stamp: Stamp
    group_id: str
    round: int
    samples: int
    accuracy: float
    train_loss: float
    content_hash: bytes
    size: int
    codec: int
    inline_blob: bytes
    model_fingerprint: str
    base_hash: bytes
    label_counts: tuple[int, ...]
    manifest_hash: bytes = b""  # of the update's chunk manifest (policy/chunks.py); b"": none sent


@dataclass(frozen=True)
class Goodbye:
    stamp: Stamp
    group_id: str
    reason: str


@dataclass(frozen=True)
class SplitNotice:
    stamp: Stamp
    group_id: str
    round: int
    stay: tuple[PeerId, ...]
    leave: tuple[PeerId, ...]
    new_group_id: str
    new_creator: PeerId
    nonce: bytes
    separation: float


@dataclass(frozen=True)
class MergeOffer:
    """From the leader of one of two diverged parts of a group: how both parts' models score on its data."""

    stamp: Stamp
    group_id: str
    part: GroupRecord  # the author's part, led by the author
    other_digest: bytes
    own_score: float
    other_score: float
    live_members: int


GroupMessage = Heartbeat | Announce | Goodbye | SplitNotice | MergeOffer


@dataclass(frozen=True)
class JoinRequest:
    author: PeerId
    group_id: str
    model_fingerprint: str
    invite: bytes
    addrs: tuple[str, ...]
    sent_at: float


class JoinStatus(Enum):
    ADMITTED = "admitted"
    REFUSED = "refused"
    REDIRECT = "redirect"
    FULL = "full"
    NOT_MEMBER = "not a member"


@dataclass(frozen=True)
class JoinAnswer:
    status: JoinStatus
    reason: str = ""
    leader: PeerId | None = None  # REDIRECT: ask this member
    leader_addrs: tuple[str, ...] = ()
    record_raw: bytes = b""  # ADMITTED: the leader's signed version that lists the newcomer
