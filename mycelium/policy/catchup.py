"""Which model a member behind its group may adopt. Pure.

A member adopts a group model only when the group vouches for it: the round and hash are in the
record it holds (the leader writes one after every round), or a majority of the live members, itself
included, report that same round and hash. One member claiming to be far ahead is nobody: it
neither moves anyone's model nor ends anyone's round early (`majority_ahead`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from mycelium.policy.peers import PeerId, in_peer_order
from mycelium.policy.records import GroupRecord

Report = tuple[int, bytes]  # (round, model hash) a member says it holds


@dataclass(frozen=True)
class CatchUp:
    round: int
    model_hash: bytes
    holders: tuple[PeerId, ...]
    vouched_by: str  # "record" or "majority"


def catch_up_target(
    me: PeerId, record: GroupRecord, reports: Mapping[PeerId, Report], live: frozenset[PeerId], my_round: int
) -> CatchUp | None:
    """The model to adopt when the group is ahead of `my_round` (`reports` of live members only)."""
    best: CatchUp | None = None
    if record.round > my_round and record.model_hash:
        holders = [record.leader] + [p for p in in_peer_order(live) if p not in (record.leader, me)]
        best = CatchUp(record.round, record.model_hash, tuple(holders), "record")
    counted = Counter(
        report
        for peer, report in reports.items()
        if peer in live and peer != me and report[0] > my_round and report[1]
    )
    for (round_number, model_hash), count in sorted(counted.items(), reverse=True):
        if 2 * count > len(live) and (best is None or round_number > best.round):
            holders = tuple(
                p for p in in_peer_order(live) if p != me and reports.get(p, (0, b""))[1] == model_hash
            )
            return CatchUp(round_number, model_hash, holders, "majority")
    return best


def majority_ahead(
    me: PeerId, reports: Mapping[PeerId, Report], live: frozenset[PeerId], round_number: int
) -> bool:
    """A majority of the live members (us included) is past `round_number`."""
    ahead = sum(1 for peer in live if peer != me and reports.get(peer, (-1, b""))[0] > round_number)
    return 2 * ahead > len(live)
