"""When does a group divide in two? Pure: update vectors in, a decision out.

Idea (clustered FL, Sattler et al. "CFL", 2020): members whose data needs different models send
updates that point in different directions. Each round the leader bipartitions the members by the
cosine similarity of their updates (complete linkage, the CFL choice) and measures the separation:
mean similarity within the halves minus across them.

Label skew (dirichlet) also makes updates differ, and one round's separation does not tell it from
a real difference in the data (measured on digits: 0.1-0.39 for dirichlet:0.5 vs 0.22-0.27 for a
group mixing four rotations). What does tell them apart is stability: with label skew the best
bipartition changes from round to round (the same one rarely held 3 rounds in a row), with rotated
data it is the same every round. So a group splits only after the same bipartition, separated by at
least `min_separation`, came out of `patience` consecutive eligible rounds, with both halves at
least `min_half` members.

Strong label skew can be stable too (members with nearly disjoint classes: separation 0.4-0.6
for 30 rounds in a 4-member dirichlet:0.5 group). Splitting those would only hurt the model every
member needs, so the halves must also have alike label mixes: the total variation distance
between the halves' class histograms (members announce their per-class counts) must stay under
`max_label_shift`. Measured on digits: 0.35-0.87 between the halves of dirichlet groups, 0.10-0.19
between the halves of rotated groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

Member = TypeVar("Member")


@dataclass(frozen=True)
class SplitRules:
    min_separation: float = 0.2
    patience: int = 5
    min_half: int = 2
    max_label_shift: float = 0.3


@dataclass(frozen=True)
class SplitState(Generic[Member]):
    halves: frozenset[frozenset[Member]] | None = None
    streak: int = 0


@dataclass(frozen=True)
class SplitDecision(Generic[Member]):
    state: SplitState[Member]
    halves: tuple[frozenset[Member], frozenset[Member]] | None  # set when the group should split now
    separation: float


def cosine_similarity(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1)
    norms[norms == 0] = 1.0
    unit = vectors / norms[:, None]
    return np.clip(unit @ unit.T, -1.0, 1.0)


def bipartition(similarity: np.ndarray) -> tuple[frozenset[int], frozenset[int]]:
    """Two clusters by complete-linkage agglomeration on 1 - similarity; ties go to the lower index."""
    distance = 1.0 - similarity
    clusters = [[i] for i in range(len(similarity))]
    while len(clusters) > 2:
        best = None
        for a in range(len(clusters)):
            for b in range(a + 1, len(clusters)):
                linkage = max(distance[i, j] for i in clusters[a] for j in clusters[b])
                if best is None or linkage < best[0]:
                    best = (linkage, a, b)
        assert best is not None
        _, a, b = best
        clusters[a] += clusters.pop(b)
    return frozenset(clusters[0]), frozenset(clusters[1])


def separation(similarity: np.ndarray, first: frozenset[int], second: frozenset[int]) -> float:
    within = [similarity[i, j] for half in (first, second) for i in half for j in half if i < j]
    across = [similarity[i, j] for i in first for j in second]
    if not within or not across:
        return 0.0
    return float(np.mean(within) - np.mean(across))


def label_shift(label_counts: np.ndarray, first: frozenset[int], second: frozenset[int]) -> float:
    """Total variation distance between the two halves' class histograms (0 = same mix, 1 = disjoint)."""
    histograms = []
    for half in (first, second):
        counts = label_counts[sorted(half)].sum(axis=0).astype(np.float64)
        if counts.sum() <= 0:
            return 1.0
        histograms.append(counts / counts.sum())
    return float(0.5 * np.abs(histograms[0] - histograms[1]).sum())


def split_step(
    state: SplitState[Member],
    members: Sequence[Member],
    updates: np.ndarray,
    label_counts: np.ndarray,
    rules: SplitRules,
) -> SplitDecision[Member]:
    """Feed one eligible round: every member's update from the same base and its class counts,
    rows in `members` order."""
    if len(members) < 2 * rules.min_half:
        return SplitDecision(SplitState(), None, 0.0)
    similarity = cosine_similarity(updates.astype(np.float64))
    first, second = bipartition(similarity)
    gap = separation(similarity, first, second)
    halves = (frozenset(members[i] for i in first), frozenset(members[i] for i in second))
    if gap < rules.min_separation or min(len(first), len(second)) < rules.min_half:
        return SplitDecision(SplitState(), None, gap)
    if label_shift(label_counts, first, second) > rules.max_label_shift:
        return SplitDecision(SplitState(), None, gap)
    key = frozenset(halves)
    streak = state.streak + 1 if state.halves == key else 1
    if streak < rules.patience:
        return SplitDecision(SplitState(key, streak), None, gap)
    return SplitDecision(SplitState(), halves, gap)
