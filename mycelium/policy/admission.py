"""Whether a group admits a newcomer. Pure.

Admission is deterministic and serial: only the leader (the signer of the group's record) admits;
other members redirect to it. The leader decides one request at a time against the members it would
list, so concurrent joins can never push a group past its capacity.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Verdict(Enum):
    ADMIT = "admitted"
    ALREADY_MEMBER = "already a member"
    REDIRECT = "ask the leader"
    FULL = "group is full"
    WRONG_MODEL = "model fingerprint differs"
    NEEDS_INVITE = "group is invite-only; an invite signed by a member is required"
    BAD_INVITE = "invite rejected"
    DISTRUSTED = "removed from this group for harmful updates; not admitted again yet"


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
    distrusted: bool = False  # the leader removed it for harmful updates, lately


def decide_join(case: JoinCase) -> Verdict:
    if not case.fingerprint_matches:
        return Verdict.WRONG_MODEL
    if case.already_member:
        return Verdict.ALREADY_MEMBER
    if not case.is_leader:
        return Verdict.REDIRECT
    if case.distrusted:
        return Verdict.DISTRUSTED
    if case.invite_only:
        if not case.invite_presented:
            return Verdict.NEEDS_INVITE
        if case.invite_problem is not None:
            return Verdict.BAD_INVITE
    if case.members >= case.capacity:
        return Verdict.FULL
    return Verdict.ADMIT
