"""Which group to join, and when to move to another. Pure.

Advertised metrics are hints: they decide which candidates are worth pulling and evaluating, never
where a node goes. A candidate is *credible* when its model, evaluated on our own validation data,
scores at least its advertised accuracy minus a slack. That one test rejects both a group that lies
about its accuracy and a group whose model is good for its members but does not fit our data (the
rotated-data case), so a node only joins groups whose model serves it about as well as it serves
them. Among credible candidates with room the best measured accuracy wins; bigger, then lower id,
breaks ties. With none, the node creates a group.

Migration compares the node's own group with credible candidates every few rounds. It moves when a
candidate beats its group by at least `threshold` on `patience` consecutive checks, outside a
cooldown after its last move. Small groups of the same kind of data merge: a candidate that is at
least as good (within `merge_tolerance`) and strictly larger, or as large with a lower id, counts
as a gain too, which makes equal groups converge on one of them instead of swapping members.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Candidate:
    group_id: str
    members: int
    capacity: int
    advertised_accuracy: float
    measured_accuracy: float  # the candidate's model on our validation split
    admits_us: bool = True  # policy open, or we hold an invite

    @property
    def has_room(self) -> bool:
        return self.members < self.capacity


@dataclass(frozen=True)
class GroupRules:
    credibility_slack: float = 0.3
    threshold: float = 0.02
    patience: int = 2
    cooldown_rounds: int = 5
    merge_tolerance: float = 0.01
    evaluate_top: int = 4  # candidates pulled and evaluated per decision


def is_credible(candidate: Candidate, rules: GroupRules) -> bool:
    return candidate.measured_accuracy >= candidate.advertised_accuracy - rules.credibility_slack


def worth_evaluating(candidates: Sequence[Candidate], rules: GroupRules) -> list[str]:
    """Group ids to pull and evaluate, best advertised first (only those we could join)."""
    usable = [c for c in candidates if c.has_room and c.admits_us]
    usable.sort(key=lambda c: (-c.advertised_accuracy, -c.members, c.group_id))
    return [c.group_id for c in usable[: rules.evaluate_top]]


def _rank(candidate: Candidate) -> tuple[float, int, str]:
    return (-round(candidate.measured_accuracy, 3), -candidate.members, candidate.group_id)


def choose_group(candidates: Sequence[Candidate], rules: GroupRules) -> str | None:
    """The group to join, or None to create one."""
    eligible = [c for c in candidates if c.has_room and c.admits_us and is_credible(c, rules)]
    if not eligible:
        return None
    return min(eligible, key=_rank).group_id


@dataclass(frozen=True)
class MigrationState:
    target: str | None = None
    streak: int = 0
    last_move_round: int = -(10**9)


@dataclass(frozen=True)
class MigrationDecision:
    state: MigrationState
    move_to: str | None
    gain: float


def _gain(own: Candidate, candidate: Candidate, rules: GroupRules) -> float:
    gain = candidate.measured_accuracy - own.measured_accuracy
    bigger = (candidate.members, own.group_id) > (own.members, candidate.group_id)
    if gain >= -rules.merge_tolerance and bigger and gain < rules.threshold:
        return rules.threshold  # merging into an equally good, bigger group is worth a move
    return gain


def migration_step(
    state: MigrationState,
    round_number: int,
    own: Candidate,
    candidates: Sequence[Candidate],
    rules: GroupRules,
) -> MigrationDecision:
    """One periodic check: update the streak and say whether to move (and where)."""
    eligible = [
        c
        for c in candidates
        if c.group_id != own.group_id and c.has_room and c.admits_us and is_credible(c, rules)
    ]
    best, best_gain = None, 0.0
    for candidate in sorted(eligible, key=_rank):
        gain = _gain(own, candidate, rules)
        if gain > best_gain:
            best, best_gain = candidate, gain
    if best is None or best_gain < rules.threshold:
        return MigrationDecision(replace(state, target=None, streak=0), None, best_gain)
    streak = state.streak + 1 if state.target == best.group_id else 1
    state = replace(state, target=best.group_id, streak=streak)
    cooling = round_number - state.last_move_round < rules.cooldown_rounds
    if streak < rules.patience or cooling:
        return MigrationDecision(state, None, best_gain)
    moved = MigrationState(target=None, streak=0, last_move_round=round_number)
    return MigrationDecision(moved, best.group_id, best_gain)
