"""When does a round close? Pure decisions, no clock and no I/O: callers pass the times in.

Theory of operation. A member trains, announces its update, then waits for the others. It closes
the round as soon as every member it expects has contributed (ALL_IN). Otherwise it waits at most an
adaptive time learned from how long the others took in recent rounds (`wait_limit`), and closes
then if a quorum of the live members is in (DEADLINE). Two facts end a wait even without a quorum:
the group has visibly moved on to a later round (MOVED_ON, as soon as the floor has passed: the
updates still missing are not coming), or the hard ceiling passed (CEILING). Members that stop
heartbeating leave the live set, so a dead member shrinks what is expected.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

Peer = TypeVar("Peer")


class Close(Enum):
    WAIT = "wait"
    ALL_IN = "all_in"
    DEADLINE = "deadline"
    MOVED_ON = "moved_on"
    CEILING = "ceiling"


@dataclass(frozen=True)
class RoundTiming:
    floor: float = 3.0  # never give up on the others sooner than this
    ceiling: float = 120.0  # never wait longer than this
    initial: float = 15.0  # the wait before any history exists
    factor: float = 2.0  # wait this many times the typical lateness of the last member
    history: int = 5  # rounds remembered
    quorum: float = 0.5  # fraction of live members needed to close at the deadline


def wait_limit(lateness: Sequence[float], timing: RoundTiming) -> float:
    """Seconds to wait after our own announcement, from the last rounds' lateness of the last member."""
    if not lateness:
        return min(max(timing.initial, timing.floor), timing.ceiling)
    typical = statistics.median(lateness[-timing.history :])
    return min(max(timing.factor * typical, timing.floor), timing.ceiling)


def quorum_size(live: int, fraction: float) -> int:
    return max(1, math.ceil(fraction * live))


def close_decision(
    expected: frozenset[Peer],
    contributed: frozenset[Peer],
    live: frozenset[Peer],
    waited: float,
    limit: float,
    timing: RoundTiming,
    group_moved_on: bool = False,
) -> Close:
    """Whether to close now.

    expected: live members that were in the group when this round began (ourselves included);
    contributed: members whose update we hold; live: members heard from recently;
    waited: seconds since our own announcement; limit: `wait_limit(...)`.
    """
    if expected <= contributed:
        return Close.ALL_IN
    if waited >= timing.ceiling:
        return Close.CEILING
    if waited < limit:
        # a majority already closed this round, so the updates still missing are not coming: past
        # the floor, waiting on (15 s for a member without history, one that just restarted) only
        # keeps us out of the round the group is in
        return Close.MOVED_ON if group_moved_on and waited >= timing.floor else Close.WAIT
    if len(contributed & live) >= quorum_size(len(live), timing.quorum):
        return Close.DEADLINE
    if group_moved_on:
        return Close.MOVED_ON
    return Close.WAIT
