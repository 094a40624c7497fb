"""What a node thinks of each peer's updates: a score per round, a decaying reputation. Pure.

Every round a member scores each other contributor's update on evidence it holds itself (see
node/trust.py for how it is measured):

- agreement: the update's cosine similarity to the coordinate-wise median of the round's updates;
- size: the logarithm of its norm over the round's median norm;
- harm: how much the member's own validation loss rises when the update, as sent, is in the
  average rather than left out, relative to that loss (or to `loss_floor` nats when the loss is
  lower: late in training a loss of 0.1 on 20 images doubles by chance);
- claim: the claimed sample count against the bound every member applies (aggregate.SAMPLE_CAP
  times the round's median claim): a peer that claims ten times the bound scores a tenth.

Agreement and size are judged against the round's other updates, as robust z-scores (distance from
the round's median in median absolute deviations, never less than `min_spread`): honest updates
agree less late in training and in non-IID groups, and differ in size with the SGD steps their
data allows, but they stay within a few deviations of each other. Only the harmful side counts:
being larger than most, or agreeing less than most while pointing away from the group (a negative
similarity). An honest member with different data (another rotation of the images) agrees little
but still positively: that is for the split rule (split.py) to divide, not for trust to punish. An
update `z_ok` deviations out still scores 1; `z_ok + z_span` out scores 0. Harm counts from the
first loss rise: `harm_scale` scores 0.

score = min(against, 1 - excess(z_size), 1 - harm / harm_scale) × min(1, bound / claim), in
[0, 1], where against = 1 - excess(z_agreement) for a negative similarity, else 1.

Reputation is an exponential average of the scores (`decay` per round), starting at `initial`,
always in [0, 1]. A peer below `floor` is left out of the member's average. A leader removes a
member that has stayed below the floor `evict_after` rounds in a row. The book keeps at most
`capacity` peers (the least recently scored go first) and is saved beside the checkpoint.

Reputation stays a node's own and decides only who is in its average, never a weight inside the
rule: every member must reach the bit-identical model from the same set of updates (aggregate.py),
and members that left out the same peers have the same set again. Within the average, each
contribution counts by its capped sample count and at most as far as a typical one reaches.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from mycelium.policy.peers import PeerId


@dataclass(frozen=True)
class TrustRules:
    initial: float = 0.5
    decay: float = 0.6  # weight of the old reputation in each update
    floor: float = 0.3
    z_ok: float = 3.0
    z_span: float = 3.0
    min_agreement_spread: float = 0.05  # cosine similarity
    min_size_spread: float = 0.2  # log of the norm ratio (honest members of one group differ by up to ~2x)
    harm_scale: float = 0.5  # a relative rise of our loss this large scores 0 ...
    loss_floor: float = 0.5  # ... relative to our loss, or to this many nats when it is lower
    evict_after: int = 3  # rounds in a row below the floor before the leader removes a member
    capacity: int = 512


@dataclass(frozen=True)
class Evidence:
    """What one member measured of one peer's update in one round."""

    agreement: float  # cosine similarity to the round's median update
    agreement_z: float  # deviations below the round's median agreement (negative: above it)
    size_z: float  # deviations above the round's median log norm
    harm: float  # relative rise of our validation loss with the update in the average
    claimed: int
    bound: float  # the sample bound of the round


def deviations(values: Sequence[float], min_spread: float) -> list[float]:
    """Robust z-scores: (value - median) / max(median absolute deviation, min_spread)."""
    ordered = sorted(values)
    middle = _median(ordered)
    spread = max(_median(sorted(abs(v - middle) for v in values)), min_spread)
    return [(v - middle) / spread for v in values]


def _median(ordered: Sequence[float]) -> float:
    n = len(ordered)
    return (ordered[(n - 1) // 2] + ordered[n // 2]) / 2


def round_score(evidence: Evidence, rules: TrustRules) -> float:
    measured = (evidence.agreement, evidence.agreement_z, evidence.size_z, evidence.harm, evidence.bound)
    if not all(math.isfinite(value) for value in measured):
        return 0.0  # what we cannot measure earns no trust

    def excess(z: float) -> float:
        return max(z - rules.z_ok, 0.0) / rules.z_span

    harmless = 1.0 - max(evidence.harm, 0.0) / rules.harm_scale
    claim = min(1.0, evidence.bound / evidence.claimed) if evidence.claimed > 0 else 1.0
    against = 1.0 - excess(evidence.agreement_z) if evidence.agreement < 0 else 1.0
    score = min(against, 1.0 - excess(evidence.size_z), harmless) * claim
    return min(1.0, max(0.0, score))


def explain(evidence: Evidence, rules: TrustRules) -> str:
    """Which evidence scored lowest, in words (for events)."""
    reasons = []
    if evidence.agreement < 0 and evidence.agreement_z > rules.z_ok:
        reasons.append(f"points away from the group ({evidence.agreement_z:.1f} deviations)")
    if evidence.size_z > rules.z_ok:
        reasons.append(f"update too large ({evidence.size_z:.1f} deviations)")
    if evidence.harm > 0.1 * rules.harm_scale:
        reasons.append(f"raises our validation loss by {100 * evidence.harm:.0f} %")
    if evidence.claimed > evidence.bound:
        reasons.append(f"claims {evidence.claimed} samples, bound {evidence.bound:.0f}")
    return "; ".join(reasons) or "low scores over several rounds"


@dataclass
class Standing:
    reputation: float
    rounds_below: int = 0  # consecutive scored rounds below the floor


@dataclass
class Reputation:
    rules: TrustRules = field(default_factory=TrustRules)
    book: OrderedDict[PeerId, Standing] = field(default_factory=OrderedDict)

    def of(self, peer: PeerId) -> float:
        standing = self.book.get(peer)
        return standing.reputation if standing is not None else self.rules.initial

    def trusted(self, peer: PeerId) -> bool:
        return self.of(peer) >= self.rules.floor

    def should_evict(self, peer: PeerId) -> bool:
        standing = self.book.get(peer)
        return standing is not None and standing.rounds_below >= self.rules.evict_after

    def record(self, peer: PeerId, score: float) -> float:
        """Fold one round's score into `peer`'s reputation; its new reputation."""
        rules = self.rules
        standing = self.book.pop(peer, None) or Standing(rules.initial)
        score = min(1.0, max(0.0, score))
        standing.reputation = rules.decay * standing.reputation + (1 - rules.decay) * score
        standing.rounds_below = standing.rounds_below + 1 if standing.reputation < rules.floor else 0
        self.book[peer] = standing
        while len(self.book) > rules.capacity:
            self.book.popitem(last=False)
        return standing.reputation

    def to_json(self) -> dict[str, list[float]]:
        return {str(peer): [s.reputation, s.rounds_below] for peer, s in self.book.items()}

    @classmethod
    def from_json(cls, data: object, rules: TrustRules) -> Reputation:
        """A book from `to_json`'s output; entries that do not parse are dropped, never trusted more."""
        reputation = cls(rules)
        if not isinstance(data, dict):
            return reputation
        for text, value in list(data.items())[-rules.capacity :]:
            try:
                peer = PeerId.from_text(text)
                level, below = float(value[0]), int(value[1])
            except (ValueError, TypeError, IndexError, KeyError):
                continue
            if math.isfinite(level):
                reputation.book[peer] = Standing(min(1.0, max(0.0, level)), max(0, below))
        return reputation
