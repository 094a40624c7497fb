"""How a group session ended, and what the node takes with it to the next one."""

from __future__ import annotations

from dataclasses import dataclass

from mycelium.learn import Weights
from mycelium.policy.lifecycle import Ending
from mycelium.policy.peers import PeerId
from mycelium.policy.records import GroupRecord, JoinPolicy


@dataclass(frozen=True)
class SplitPlan:
    """Our half of a split group: the new group, built the same way by every member of the half."""

    group_id: str
    creator: PeerId
    nonce: bytes
    members: tuple[PeerId, ...]
    addrs: dict[PeerId, tuple[str, ...]]
    round: int
    model: Weights
    policy: JoinPolicy
    capacity: int


@dataclass(frozen=True)
class Outcome:
    ending: Ending
    target: str = ""  # MIGRATE: the group to move to; SPLIT: our half's new group
    gain: float = 0.0
    split: SplitPlan | None = None
    record: GroupRecord | None = None  # EVICTED, MERGE, REJOIN: the version to rejoin through
