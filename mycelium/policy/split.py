"""When does a group divide in two? Pure: update vectors in, a decision out.

Idea (clustered FL, Sattler et al. "CFL", 2020): members whose data needs different models send
updates that point in different directions. Each round the leader clusters the members by the
cosine similarity of their updates (complete linkage, the CFL choice) and divides them along the
top of that tree, the bipartition, once it is sure the structure is real.

Being apart is not enough. Late in training, when the group model fits every member's data, what
is left of each update is the member's own shard; complete linkage always finds a division of that,
and the division holds round after round because shards do not change. Measured on digits
(benchmarks/split_statistics.py: FedAvg groups of 4-10 members, 40 rounds, the nodes' training):
in 160 groups of one kind of data (iid, N = 8-20; one rotation of rotated:2, N = 20), over rounds
26-40, members of one half agree at -0.13..0.30 (mean similarity within the halves, median 0.10)
while the halves lie up to 0.67 apart (separation: within minus the mean similarity across). The
rule before this one (separation >= 0.2, stable 5 rounds) split 16 of them, in rounds 5-39.
Early on, one kind of data agrees but does not lie apart: in rounds 1-10 its best cuts (below)
agree at 0.64-0.70 and lie 0.08-0.13 apart (medians; at most 0.33). Different kinds do both: the
halves of rotated:2 groups agree at 0.72 and lie 0.64 apart (medians; 10th percentiles 0.51 and
0.42). So a cut must have both: mean similarity within its clusters of at least `min_within` and
a separation of at least `min_separation`.

A group of more than two kinds divides into halves that each still mix kinds; their pairs average
same-kind (0.35-0.75) and cross-kind (~0) similarities, a median of 0.20 for ten members of four
rotations, which is what noise looks like. The kinds themselves show at a finer cut of the same
tree, so the rule reads the most separated cut into 2..`finest_cut` clusters (at most half as many
clusters as members: finer cuts of a small group are pairs picked from noise), and still divides
along the bipartition; the halves divide again later. With 0.4 within and 0.3 apart none of 240
groups of one kind of data or with label skew split; the closest any came over 5 rounds was 0.34
within at 0.3 apart, and 0.24 apart at 0.4 within. Mixed groups split: all 80 of rotated:2 (by round
10), 46 of 48 rotated:4 groups of 7-10 members (median round 5), 19 of 20 halves of a split
rotated:4 group that still mix rotations; but only 12 of 32 rotated:4 groups of 4-5 members, where
3-4 rotations share 4-5 members so that both halves mix rotations (the rule before split 25;
migration has to sort those nodes out).

A group splits only after `patience` consecutive eligible rounds met all that with the same
bipartition or the same best cut, with both halves at least `min_half` members. The best cut
counts too because in a group of three or four kinds the pair of kinds that the top of the tree
joins can flip from round to round while the kinds stay put. A 10-member group of four rotations
that formed in a 20-node rotated:4 mesh never split there with the bipartition alone (purity 0.00
at round 40); simulated with the same members, its best cut was its rotations in all 15 rounds
while its bipartition changed 9 times.

Label skew (dirichlet) also makes updates differ, and members with nearly disjoint classes agree
inside and lie apart for many rounds: without the test below, 10 of 80 dirichlet:0.5 groups split.
Splitting those would only hurt the model every member needs, so the halves must also have alike
label mixes: the total variation distance between the halves' class histograms (members announce
their per-class counts) must stay under `max_label_shift`. Measured: 0.22-0.82 between the halves
of dirichlet:0.5 groups, 0.04-0.30 between those of rotated groups. Shards so small that sampling
alone skews them pass it: with ~22 training images a node (iid, N = 40) 15 of 80 groups split (the
rule before: 40).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

Member = TypeVar("Member")


@dataclass(frozen=True)
class SplitRules:
    min_separation: float = 0.3  # of the best cut of the linkage tree
    min_within: float = 0.4  # mean similarity inside that cut's clusters
    finest_cut: int = 4  # cuts into 2..finest_cut clusters are examined (at most members // 2)
    patience: int = 5
    min_half: int = 2
    max_label_shift: float = 0.3


@dataclass(frozen=True)
class SplitState(Generic[Member]):
    halves: frozenset[frozenset[Member]] | None = None  # the bipartition of the last eligible round
    clusters: frozenset[frozenset[Member]] | None = None  # ... and its best cut
    streak: int = 0


@dataclass(frozen=True)
class SplitDecision(Generic[Member]):
    state: SplitState[Member]
    halves: tuple[frozenset[Member], frozenset[Member]] | None  # set when the group should split now
    separation: float  # of the best cut (what `min_separation` is compared with)
    within: float = 0.0  # of the same cut (what `min_within` is compared with)


def cosine_similarity(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1)
    norms[norms == 0] = 1.0
    unit = vectors / norms[:, None]
    return np.clip(unit @ unit.T, -1.0, 1.0)


def linkage_cuts(similarity: np.ndarray) -> dict[int, tuple[frozenset[int], ...]]:
    """The complete-linkage tree on 1 - similarity, cut into k clusters for every k from n down to 1;
    ties go to the lower index."""
    distance = 1.0 - similarity
    clusters = [[i] for i in range(len(similarity))]
    cuts = {len(clusters): tuple(frozenset(c) for c in clusters)}
    while len(clusters) > 1:
        best = None
        for a in range(len(clusters)):
            for b in range(a + 1, len(clusters)):
                linkage = max(distance[i, j] for i in clusters[a] for j in clusters[b])
                if best is None or linkage < best[0]:
                    best = (linkage, a, b)
        assert best is not None
        _, a, b = best
        clusters[a] += clusters.pop(b)
        cuts[len(clusters)] = tuple(frozenset(c) for c in clusters)
    return cuts


def bipartition(similarity: np.ndarray) -> tuple[frozenset[int], frozenset[int]]:
    """Two clusters by complete-linkage agglomeration on 1 - similarity; ties go to the lower index."""
    first, second = linkage_cuts(similarity)[2]
    return first, second


def cut_statistics(similarity: np.ndarray, clusters: Sequence[frozenset[int]]) -> tuple[float, float]:
    """(separation, within) of a partition: mean similarity of pairs in one cluster minus that of pairs
    in different clusters, and the former alone. (0, 0) without pairs of either kind."""
    label = np.empty(len(similarity), dtype=np.int64)
    for number, cluster in enumerate(clusters):
        label[sorted(cluster)] = number
    rows, cols = np.triu_indices(len(similarity), 1)
    same = label[rows] == label[cols]
    pairs = similarity[rows, cols]
    if not same.any() or same.all():
        return 0.0, 0.0
    within = float(pairs[same].mean())
    return within - float(pairs[~same].mean()), within


def separation(similarity: np.ndarray, first: frozenset[int], second: frozenset[int]) -> float:
    """Mean similarity within the halves minus across them."""
    return cut_statistics(similarity, (first, second))[0]


def structure(
    similarity: np.ndarray, cuts: dict[int, tuple[frozenset[int], ...]], finest_cut: int
) -> tuple[float, float, int]:
    """(separation, within, k) of the most separated of the `cuts` into k = 2..finest_cut clusters (at
    most n // 2 of them: two members a cluster on average)."""
    finest = max(2, min(finest_cut, len(similarity) // 2))
    return max((*cut_statistics(similarity, cuts[k]), k) for k in range(2, finest + 1))


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
    cuts = linkage_cuts(similarity)
    first, second = cuts[2]
    gap, within, k = structure(similarity, cuts, rules.finest_cut)
    halves = (frozenset(members[i] for i in first), frozenset(members[i] for i in second))
    if gap < rules.min_separation or within < rules.min_within:
        return SplitDecision(SplitState(), None, gap, within)
    if min(len(first), len(second)) < rules.min_half:
        return SplitDecision(SplitState(), None, gap, within)
    if label_shift(label_counts, first, second) > rules.max_label_shift:
        return SplitDecision(SplitState(), None, gap, within)
    # Stable must be the bipartition or the structure (the best cut's clusters): in a group of three
    # or four kinds which pair of kinds the top of the tree joins can flip from round to round while
    # the kinds themselves stay put (measured: a 10-member rotated:4 group's best cut was its four
    # rotations in all 15 rounds, its bipartition changed 9 times, and the group never split); the
    # split follows this round's top cut, which always keeps the best cut's clusters whole.
    halves_key = frozenset(halves)
    clusters_key = frozenset(frozenset(members[i] for i in cluster) for cluster in cuts[k])
    same = state.halves == halves_key or state.clusters == clusters_key
    streak = state.streak + 1 if same else 1
    if streak < rules.patience:
        return SplitDecision(SplitState(halves_key, clusters_key, streak), None, gap, within)
    return SplitDecision(SplitState(), halves, gap, within)
