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
cooldown after its last move. Small groups of the same kind of data merge: a candidate that is not
clearly worse and strictly larger (or as large with a lower id) is worth a move too, which makes
equal groups converge on one of them instead of swapping members; it may cost at most
`merge_tolerance` of expected accuracy. A node alone in its group merges into any credible group of
two or more with room, however its own model scores: a model trained on one node's data looks best
on that node's data and worst everywhere else (members alone check every round, not every few,
and move at the first check: patience guards a group's model against noise, and one node's is
worth nothing to the others; seen at 30 peers, lone nodes kept training alone for two rounds).
Another node alone is no such group: between two groups of one the ordinary merge rule applies, so
a node never trades its model for a fresh one.

Which candidates get evaluated is chosen so that advertising cannot crowd out the rest (a Sybil can
found many groups that claim 0.99): half the slots by advertised accuracy, at most two per founder,
some by what we measured last time, the rest at random; a group whose model measured more than
twice the credibility slack below its claim is skipped for ten minutes.

Validation sets are small (14 images for a digits node of a 20-node mesh), so hard accuracy moves
in steps of 0.07 and two models can tie on it while one is far more certain. The gain that moves a
node is therefore the gain in expected accuracy (the mean probability a model gives the right
class), and every comparison with the own group also carries `edge`: the paired t-statistic of the
per-sample loss improvement on the same images (positive = the candidate is better). A move for a
gain needs `edge >= significance`; a merge needs `edge >= -merge_doubt` (not clearly worse) and a
loss of expected accuracy within `merge_tolerance` (the t-statistic alone lets a 0.11 loss through
when 14 images are all the evidence there is).
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np


@dataclass(frozen=True)
class Candidate:
    group_id: str
    members: int
    capacity: int
    advertised_accuracy: float
    measured_accuracy: float  # the candidate's model on our validation split
    admits_us: bool = True  # policy open, or we hold an invite
    edge: float = 0.0  # paired t-statistic of its loss improvement over our group's model
    expected_accuracy: float | None = None  # mean probability of the right class (None: use accuracy)
    creator: str = ""  # who founded it (one signer may found many groups)

    @property
    def soft_accuracy(self) -> float:
        return self.measured_accuracy if self.expected_accuracy is None else self.expected_accuracy

    @property
    def has_room(self) -> bool:
        return self.members < self.capacity


@dataclass(frozen=True)
class GroupRules:
    credibility_slack: float = 0.3
    threshold: float = 0.02
    patience: int = 2
    cooldown_rounds: int = 5
    significance: float = 1.5
    merge_doubt: float = 1.0
    merge_tolerance: float = 0.05  # a merge may cost at most this much expected accuracy
    evaluate_top: int = 8  # candidates pulled and evaluated per decision (rotated:4 makes 4+ groups)
    by_advertised: int = 4  # of those, chosen by what they advertise; the rest by history, then at random
    by_history: int = 2
    per_creator: int = 2  # candidates one founder may occupy
    disappointed_for: float = 600.0  # seconds a group that measured far below its claim is skipped


def is_credible(candidate: Candidate, rules: GroupRules) -> bool:
    return candidate.measured_accuracy >= candidate.advertised_accuracy - rules.credibility_slack


def worth_evaluating(
    candidates: Sequence[Candidate],
    rules: GroupRules,
    rng: random.Random,
    memory: Memory | None = None,
    now: float = 0.0,
) -> list[str]:
    """Group ids to pull and evaluate (only those we could join), so that advertising cannot crowd
    out the rest: at most `per_creator` per founder; `by_advertised` best advertised; `by_history`
    best measured when we last evaluated them; the remaining slots at random. Groups that measured
    far below what they advertise are skipped for a while (`Memory`)."""
    memory = memory or Memory()
    usable = [c for c in candidates if c.has_room and c.admits_us and not memory.skipped(c.group_id, now)]
    usable.sort(key=lambda c: (-c.advertised_accuracy, -c.members, c.group_id))
    per_creator: dict[str, int] = {}
    capped = []
    for candidate in usable:
        seen = per_creator.get(candidate.creator, 0)
        if not candidate.creator or seen < rules.per_creator:
            per_creator[candidate.creator] = seen + 1
            capped.append(candidate)
    chosen = [c.group_id for c in capped[: rules.by_advertised]]
    measured = [c for c in capped if c.group_id not in chosen and c.group_id in memory.measured]
    measured.sort(key=lambda c: (-memory.measured[c.group_id], c.group_id))
    chosen += [c.group_id for c in measured[: rules.by_history]]
    rest = [c.group_id for c in capped if c.group_id not in chosen]
    chosen += rng.sample(rest, min(len(rest), rules.evaluate_top - len(chosen)))
    return chosen[: rules.evaluate_top]


@dataclass
class Memory:
    """What a node learned from evaluating groups: the accuracy each measured last, and which
    measured far below what they advertise (more than twice the credibility slack: skipped until a
    time). Bounded: the oldest go first."""

    capacity: int = 256
    measured: OrderedDict[str, float] = field(default_factory=OrderedDict)
    skip_until: OrderedDict[str, float] = field(default_factory=OrderedDict)

    def skipped(self, group_id: str, now: float) -> bool:
        return self.skip_until.get(group_id, -math.inf) > now

    def learn(self, candidate: Candidate, rules: GroupRules, now: float) -> None:
        _put_bounded(self.measured, candidate.group_id, candidate.measured_accuracy, self.capacity)
        if candidate.measured_accuracy < candidate.advertised_accuracy - 2 * rules.credibility_slack:
            _put_bounded(self.skip_until, candidate.group_id, now + rules.disappointed_for, self.capacity)


def _put_bounded(table: OrderedDict[str, float], key: str, value: float, capacity: int) -> None:
    table.pop(key, None)
    table[key] = value
    while len(table) > capacity:
        table.popitem(last=False)


def _rank(candidate: Candidate) -> tuple[float, int, str]:
    return (-round(candidate.measured_accuracy, 3), -candidate.members, candidate.group_id)


def choose_group(candidates: Sequence[Candidate], rules: GroupRules) -> str | None:
    """The group to join, or None to create one."""
    eligible = [c for c in candidates if c.has_room and c.admits_us and is_credible(c, rules)]
    if not eligible:
        return None
    return min(eligible, key=_rank).group_id


MAX_CREATE_ATTEMPTS = 5


def create_now(attempt: int, crowded: bool, capacity: int, draw: float, connected: bool = True) -> bool:
    """Whether a node that found no group to join creates one now, or looks again after a pause.

    `attempt` counts the looks so far (0 = the first); `crowded`: a group we tried was full, so
    others are looking at the same moment; `draw`: uniform in [0, 1); `connected`: we have a peer
    at all (a network's first node has none, nobody to hear a group from, and creates at once).
    Alone, a node looks twice.
    In a crowd, every node creating at once makes a crowd of groups of one (seen: 20 of 30 peers
    that found the first group full, before this rule); so each creates with probability
    2**attempt / capacity, about one creator per `capacity` seekers, and the rest join what the
    creators founded within a pause. After `MAX_CREATE_ATTEMPTS` looks it creates anyway."""
    if attempt + 1 >= MAX_CREATE_ATTEMPTS:
        return True
    if not crowded:
        return attempt >= 1 or not connected
    return draw < 2**attempt / max(capacity, 1)


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


def paired_edge(own_losses: np.ndarray, candidate_losses: np.ndarray) -> float:
    """t-statistic of the mean per-sample loss improvement (own - candidate) on the same samples."""
    if len(own_losses) != len(candidate_losses) or len(own_losses) < 2:
        return 0.0
    difference = own_losses.astype(np.float64) - candidate_losses.astype(np.float64)
    spread = float(difference.std(ddof=1))
    if spread == 0.0:
        return 0.0 if float(difference.mean()) == 0.0 else math.copysign(math.inf, float(difference.mean()))
    return float(difference.mean()) / (spread / math.sqrt(len(difference)))


def _reason_to_move(own: Candidate, candidate: Candidate, rules: GroupRules) -> tuple[int, float] | None:
    """(kind, gain) when `candidate` is worth moving to: kind 1 = it serves us better, kind 0 = a merge
    into a bigger group that is not clearly worse for us; None otherwise."""
    gain = candidate.soft_accuracy - own.soft_accuracy
    if gain >= rules.threshold and candidate.edge >= rules.significance:
        return (1, gain)
    bigger = (candidate.members, own.group_id) > (own.members, candidate.group_id)
    if bigger and own.members <= 1 < candidate.members:
        return (0, gain)  # a node alone joins any credible group: its own model only knows its own data
    if bigger and candidate.edge >= -rules.merge_doubt and gain >= -rules.merge_tolerance:
        return (0, gain)
    return None


def migration_step(
    state: MigrationState,
    round_number: int,
    own: Candidate,
    candidates: Sequence[Candidate],
    rules: GroupRules,
) -> MigrationDecision:
    """One periodic check: update the streak and say whether to move (and where)."""
    options = []
    for candidate in candidates:
        if candidate.group_id == own.group_id or not candidate.has_room or not candidate.admits_us:
            continue
        if not is_credible(candidate, rules):
            continue
        reason = _reason_to_move(own, candidate, rules)
        if reason is not None:
            options.append((reason, candidate))
    if not options:
        return MigrationDecision(replace(state, target=None, streak=0), None, 0.0)
    # better groups first (biggest gain), then merges (biggest group); ids break ties
    (_, gain), best = min(
        options, key=lambda o: (-o[0][0], -o[0][1] if o[0][0] else -o[1].members, o[1].group_id)
    )
    streak = state.streak + 1 if state.target == best.group_id else 1
    state = replace(state, target=best.group_id, streak=streak)
    cooling = round_number - state.last_move_round < rules.cooldown_rounds
    patience = 1 if own.members <= 1 < best.members else rules.patience  # alone: nothing to wait for
    if streak < patience or cooling:
        return MigrationDecision(state, None, gain)
    moved = MigrationState(target=None, streak=0, last_move_round=round_number)
    return MigrationDecision(moved, best.group_id, gain)
