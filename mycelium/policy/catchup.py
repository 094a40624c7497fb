"""Which model a member behind its group may adopt. Pure.

A member adopts a group model only when the group vouches for it: the round and hash are in the
record it holds (the leader writes one after every round), or a majority of the live members, itself
included, report that same round and hash. One member claiming to be far ahead is nobody: it
neither moves anyone's model nor ends anyone's round early (`majority_ahead`).

Members that left out different peers' updates (their reputation books differ) hold different
models, so a majority can be ahead without agreeing on one. A member behind such a group (one that
restarted from its checkpoint, say) would otherwise train on alone at its own round for good. It
then takes the round a majority has reached (`majority_round`) and, of the models the members ahead
report (`diverged_targets`, the most reported first, at most MAX_CANDIDATES), the one that does
best on its own validation data; with none to be had, it keeps its own model. A liar can offer a
candidate but cannot make it win, and cannot move anyone's round without a majority.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from mycelium.policy.peers import PeerId, in_peer_order
from mycelium.policy.records import GroupRecord

Report = tuple[int, bytes]  # (round, model hash) a member says it holds
MAX_CANDIDATES = 3


@dataclass(frozen=True)
class CatchUp:
    round: int
    model_hash: bytes
    holders: tuple[PeerId, ...]
    vouched_by: str  # "record", "majority" or "majority round" (and "admission", node/session.py)


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
            return CatchUp(round_number, model_hash, _holders(me, reports, live, model_hash), "majority")
    return best


def _holders(
    me: PeerId, reports: Mapping[PeerId, Report], live: frozenset[PeerId], model_hash: bytes
) -> tuple[PeerId, ...]:
    """The live members (not us) that report holding `model_hash`, in peer order."""
    return tuple(p for p in in_peer_order(live) if p != me and reports.get(p, (0, b""))[1] == model_hash)


def majority_ahead(
    me: PeerId, reports: Mapping[PeerId, Report], live: frozenset[PeerId], round_number: int
) -> bool:
    """A majority of the live members (us included) is past `round_number`."""
    ahead = sum(1 for peer in live if peer != me and reports.get(peer, (-1, b""))[0] > round_number)
    return 2 * ahead > len(live)


def majority_round(me: PeerId, reports: Mapping[PeerId, Report], live: frozenset[PeerId]) -> int | None:
    """The latest round that a majority of the live members (us included, counted as not there)
    report having reached; None when no majority reports one."""
    rounds = sorted((reports[p][0] for p in live if p != me and p in reports), reverse=True)
    needed = len(live) // 2 + 1
    return rounds[needed - 1] if len(rounds) >= needed else None


def diverged_targets(
    me: PeerId, reports: Mapping[PeerId, Report], live: frozenset[PeerId], my_round: int
) -> tuple[CatchUp, ...]:
    """The models of the members at or past the majority's round, when that round is ahead of
    `my_round`: the most reported first (ties in hash order); each taken at the majority's round."""
    target_round = majority_round(me, reports, live)
    if target_round is None or target_round <= my_round:
        return ()
    counted = Counter(
        model_hash
        for peer, (round_number, model_hash) in reports.items()
        if peer in live and peer != me and round_number >= target_round and model_hash
    )
    ranked = sorted(counted, key=lambda model_hash: (-counted[model_hash], model_hash))
    return tuple(
        CatchUp(target_round, model_hash, _holders(me, reports, live, model_hash), "majority round")
        for model_hash in ranked[:MAX_CANDIDATES]
    )
