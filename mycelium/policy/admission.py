"""Who leads a group, and whether it admits a newcomer. Pure.

Admission is deterministic and serial: only the leader admits (other members redirect to it), and
it decides one request at a time against its current member list. The leader is the member with the
smallest peer id among those the record lists and that are still heard from, so every member that
sees the same record and heartbeats agrees on it without a vote, and the group can never grow past
its capacity through concurrent admissions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from libp2p.peer.id import ID


class Verdict(Enum):
    ADMIT = "admitted"
    ALREADY_MEMBER = "already a member"
    REDIRECT = "ask the leader"
    FULL = "group is full"
    WRONG_MODEL = "model fingerprint differs"
    NEEDS_INVITE = "group is invite-only; an invite signed by a member is required"
    BAD_INVITE = "invite rejected"


def in_peer_order(peers: Iterable[ID]) -> list[ID]:
    """The order every member agrees on (by peer id bytes); its first is the leader."""
    return sorted(peers, key=lambda peer: peer.to_bytes())


def leader_of(members: Iterable[ID]) -> ID:
    return min(members, key=lambda peer: peer.to_bytes())


@dataclass(frozen=True)
class JoinCase:
    is_leader: bool
    already_member: bool
    fingerprint_matches: bool
    invite_only: bool
    invite_problem: str | None  # None when a valid invite was presented
    invite_presented: bool
    members: int
    capacity: int


def decide_join(case: JoinCase) -> Verdict:
    if not case.fingerprint_matches:
        return Verdict.WRONG_MODEL
    if case.already_member:
        return Verdict.ALREADY_MEMBER
    if not case.is_leader:
        return Verdict.REDIRECT
    if case.invite_only:
        if not case.invite_presented:
            return Verdict.NEEDS_INVITE
        if case.invite_problem is not None:
            return Verdict.BAD_INVITE
    if case.members >= case.capacity:
        return Verdict.FULL
    return Verdict.ADMIT
