"""What the split rule sees: update statistics of simulated FedAvg groups, one kind of data or mixed.

    python benchmarks/split_statistics.py

(about 10 minutes of one core; `--replicates 4` for a quick look). Simulates FedAvg groups in this
process with the nodes' own learning code and settings (`node_data`, `Learner`, the digits MLP,
`DEFAULT_TRAINING["digits"]`, FedAvg weighted by samples, one torch thread): groups of 4, 5, 7, 8
and 10 members, 40 rounds from the common initial model, `--replicates` groups per case and size.
Member j is node `shard` of N (`node_data("digits", partition, shard, N, seed)`), N as a mesh would
use: 8, 10 or 20 (drawn in turn), 40 for the stress case. Cases, a split being false in the first
four and wanted in the others:

- iid, dirichlet:0.5: one kind of data (label skew is not a kind);
- one rotation: rotated:2, N=20, members of one rotation only (iid data, turned);
- iid, N=40: stress, ~22 training samples a node (so small that every shard is label-skewed);
- rotated:2 mixed, rotated:4 mixed: members drawn from different rotations, always with some
  division into two halves of at least two members that keeps every rotation whole;
- rot4 half: the halves of a 10-member rotated:4 group (N=20) split by complete linkage after 6
  rounds, each going on from the FedAvg of its members' updates of that round (the second split of
  a mesh); "mixed" when it still holds rotations that can be divided, else "other".

Every round each member trains from the group model; the leader's inputs (update vectors, label
counts) are kept as their Gram matrix, from which the script computes the pieces of
mycelium/policy/split.py and candidate discriminators, prints their distributions (min, median,
max over all rounds and replicates), and in which round the rule in split.py, and the rule before
it (bipartition separation >= 0.2, stable 5 rounds, both halves >= 2, label shift <= 0.3), first
split each group; "from r11" feeds the rule only rounds 11 on (a group that formed mixed around a
model already trained).

`--save FILE` keeps the simulated Gram matrices, `--load FILE` reports on them without training.
"""

from __future__ import annotations

import argparse
import itertools
import pickle
import time
from dataclasses import dataclass, field

import numpy as np

from mycelium.config import DEFAULT_TRAINING
from mycelium.learn import Weights
from mycelium.learn.aggregate import FedAvg
from mycelium.learn.data import node_data, parse_partition
from mycelium.learn.train import Learner, limit_compute_threads, update_vector
from mycelium.policy.split import (
    SplitRules,
    SplitState,
    bipartition,
    cosine_similarity,
    label_shift,
    linkage_cuts,
    separation,
    split_step,
    structure,
)

SIZES = (4, 5, 7, 8, 10)
ROUNDS = 40
LATE_START = 10
# case: (partition, meshes N drawn in turn, whether a split is wanted)
CASES: dict[str, tuple[str, tuple[int, ...], bool]] = {
    "iid": ("iid", (8, 10, 20), False),
    "dirichlet:0.5": ("dirichlet:0.5", (8, 10, 20), False),
    "one rotation": ("rotated:2", (20,), False),
    "iid, N=40": ("iid", (40,), False),
    "rotated:2 mixed": ("rotated:2", (8, 10, 20), True),
    "rotated:4 mixed": ("rotated:4", (8, 10, 20), True),
}
HALF_CASES = ("rot4 half, mixed", "rot4 half, other")
HALF_PARENT, HALF_NODES, HALF_WARM = 10, 20, 6
PREVIOUS = {"min_separation": 0.2, "patience": 5, "min_half": 2, "max_label_shift": 0.3}


@dataclass
class Run:
    case: str
    size: int
    nodes: int
    seed: int
    shards: list[int]
    kinds: list[int]  # rotation of each member
    labels: np.ndarray  # (members, classes) training samples per class
    samples: np.ndarray  # (members,)
    grams: list[np.ndarray] = field(default_factory=list)  # per round: update_i . update_j

    @property
    def wanted(self) -> bool:
        return self.case in HALF_CASES[:1] or (self.case in CASES and CASES[self.case][2])


def divisible_by_kind(kinds: list[int]) -> bool:
    """Some bipartition keeps every kind whole, with at least two members on each side."""
    present = sorted(set(kinds))
    for r in range(1, len(present)):
        for side in itertools.combinations(present, r):
            first = sum(k in side for k in kinds)
            if first >= 2 and len(kinds) - first >= 2:
                return True
    return False


def members_for(case: str, size: int, replicate: int) -> tuple[str, int, int, list[int]]:
    """(partition, N, seed, shards) of one simulated group."""
    partition, meshes, wanted = CASES[case]
    rng = np.random.default_rng([size, replicate, list(CASES).index(case)])
    usable = [n for n in meshes if n >= size]
    nodes, seed = usable[replicate % len(usable)], replicate
    rotation_of = parse_partition(partition).rotation_of
    if case == "one rotation":
        pool = [i for i in range(nodes) if rotation_of(i) == replicate % 2]
        return partition, nodes, seed, sorted(rng.choice(pool, size, replace=False).tolist())
    while True:
        shards = sorted(rng.choice(nodes, size, replace=False).tolist())
        if not wanted or divisible_by_kind([rotation_of(s) for s in shards]):
            return partition, nodes, seed, shards


class Group:
    """Learners of one simulated group (Learner seeds as nodes use them: seed * 1000 + shard)."""

    def __init__(self, partition: str, nodes: int, seed: int, shards: list[int]) -> None:
        split = parse_partition(partition)
        self.nodes, self.seed, self.shards = nodes, seed, shards
        self.learners = [
            Learner("mlp", node_data("digits", split, s, nodes, seed), seed=seed * 1000 + s) for s in shards
        ]
        self.kinds = [split.rotation_of(s) for s in shards]

    def round(self, model: Weights, number: int) -> tuple[list[tuple[Weights, int]], np.ndarray]:
        """Every member trains from `model`: (weights and samples, update vectors)."""
        trained = []
        for learner in self.learners:
            learner.load(model)
            learner.train(DEFAULT_TRAINING["digits"], number)
            trained.append((learner.weights(), len(learner.data.train)))
        return trained, np.stack([update_vector(weights, model) for weights, _ in trained])

    def run(self, case: str, model: Weights, first_round: int, rounds: int) -> Run:
        run = Run(
            case,
            len(self.shards),
            self.nodes,
            self.seed,
            self.shards,
            self.kinds,
            np.stack([learner.label_counts() for learner in self.learners]),
            np.array([len(learner.data.train) for learner in self.learners]),
        )
        for number in range(first_round, first_round + rounds):
            trained, updates = self.round(model, number)
            run.grams.append(updates @ updates.T)
            model = FedAvg()(model, trained)
        return run


def simulate(case: str, size: int, replicate: int, rounds: int) -> Run:
    partition, nodes, seed, shards = members_for(case, size, replicate)
    group = Group(partition, nodes, seed, shards)
    return group.run(case, group.learners[0].initial_weights(), 0, rounds)


def simulate_halves(replicate: int, rounds: int) -> list[Run]:
    """Both halves of a 10-member rotated:4 group split after HALF_WARM rounds."""
    rng = np.random.default_rng([replicate, 99])
    shards = sorted(rng.choice(HALF_NODES, HALF_PARENT, replace=False).tolist())
    parent = Group("rotated:4", HALF_NODES, replicate, shards)
    model = parent.learners[0].initial_weights()
    for number in range(HALF_WARM):
        trained, updates = parent.round(model, number)
        model = FedAvg()(model, trained)
    runs = []
    for half in bipartition(cosine_similarity(updates)):
        members = sorted(half)
        kinds = [parent.kinds[i] for i in members]
        group = Group("rotated:4", HALF_NODES, replicate, [shards[i] for i in members])
        case = HALF_CASES[0] if divisible_by_kind(kinds) else HALF_CASES[1]
        runs.append(group.run(case, FedAvg()(model, [trained[i] for i in members]), HALF_WARM, rounds))
    return runs


# --- statistics of one round, from its Gram matrix ------------------------------------------------


def cosine_of(gram: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.maximum(np.diag(gram), 1e-300))
    return np.clip(gram / np.outer(norms, norms), -1.0, 1.0)


def round_statistics(gram: np.ndarray, run: Run) -> dict[str, float]:
    similarity = cosine_of(gram)
    cuts = linkage_cuts(similarity)
    first, second = cuts[2]
    norms = np.sqrt(np.maximum(np.diag(gram), 0.0))

    def mean_of(half: frozenset[int] | None) -> np.ndarray:
        """FedAvg weights of a half's (or the group's) updates."""
        weights = np.zeros(len(gram))
        index = sorted(half) if half is not None else list(range(len(gram)))
        weights[index] = run.samples[index] / run.samples[index].sum()
        return weights

    whole, wa, wb = mean_of(None), mean_of(first), mean_of(second)
    within = [similarity[i, j] for h in (first, second) for i in h for j in h if i < j]
    cut_separation, cut_within, _ = structure(similarity, cuts, SplitRules().finest_cut)
    return {
        "sep": separation(similarity, first, second),
        "within": float(np.mean(within)) if within else float("nan"),
        "across": float(np.mean([similarity[i, j] for i in first for j in second])),
        "shift": label_shift(run.labels, first, second),
        # CFL's criterion: || mean update || / mean || update ||, small when members pull apart
        "cohesion": float(np.sqrt(max(whole @ gram @ whole, 0.0)) / (whole @ norms)),
        # cosine between the two halves' mean updates
        "half_cos": float(wa @ gram @ wb / np.sqrt(max((wa @ gram @ wa) * (wb @ gram @ wb), 1e-300))),
        "cut_sep": cut_separation,
        "cut_within": cut_within,
    }


# --- the rules ------------------------------------------------------------------------------------


def factor(gram: np.ndarray) -> np.ndarray:
    """Vectors with exactly this Gram matrix (all split_step needs: only inner products matter)."""
    values, vectors = np.linalg.eigh(gram)
    return vectors * np.sqrt(np.maximum(values, 0.0))


def previous_rule(state: SplitState[int], gram: np.ndarray, run: Run) -> tuple[SplitState[int], bool]:
    similarity = cosine_of(gram)
    first, second = bipartition(similarity)
    if min(len(first), len(second)) < PREVIOUS["min_half"]:
        return SplitState(), False
    if separation(similarity, first, second) < PREVIOUS["min_separation"]:
        return SplitState(), False
    if label_shift(run.labels, first, second) > PREVIOUS["max_label_shift"]:
        return SplitState(), False
    key = frozenset((first, second))
    streak = state.streak + 1 if state.halves == key else 1
    if streak < PREVIOUS["patience"]:
        return SplitState(halves=key, streak=streak), False
    return SplitState(), True


def first_split(run: Run, rule: str, start: int = 0) -> int | None:
    """Round (1-based, counted from `start`) of the first split the rule calls for."""
    state: SplitState[int] = SplitState()
    for number, gram in enumerate(run.grams[start:], start=1):
        if rule == "previous":
            state, split = previous_rule(state, gram, run)
        else:
            decision = split_step(state, list(range(run.size)), factor(gram), run.labels, SplitRules())
            state, split = decision.state, decision.halves is not None
        if split:
            return number
    return None


# --- report ---------------------------------------------------------------------------------------

SHOWN = ("sep", "within", "across", "shift", "cohesion", "half_cos", "cut_sep", "cut_within")


def spread(values: list[float]) -> str:
    v = np.array(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return f"{v.min():5.2f} {np.median(v):5.2f} {v.max():5.2f}" if len(v) else " " * 17


def splits(group: list[Run], rule: str, start: int = 0) -> str:
    rounds = [r for r in (first_split(run, rule, start) for run in group) if r is not None]
    if not rounds:
        return f"0/{len(group)}"
    return f"{len(rounds)}/{len(group)} r{min(rounds)}-{max(rounds)} med {int(np.median(rounds))}"


def report(runs: list[Run]) -> None:
    print("each statistic: min median max over all rounds of all replicates")
    print("sep/within/across/shift: of the bipartition; cut_*: best cut into 2..4 clusters (split.py)")
    print(f"{'case':18} {'n':>2} {'reps':>4} " + " ".join(f"{name:^17}" for name in SHOWN))
    order = list(CASES) + list(HALF_CASES)
    keys = sorted({(run.case, run.size) for run in runs}, key=lambda k: (order.index(k[0]), k[1]))
    keys = [k for k in keys if k[1] >= 4]
    for case, size in keys:
        group = [r for r in runs if (r.case, r.size) == (case, size)]
        stats = [round_statistics(g, r) for r in group for g in r.grams]
        cells = " ".join(f"{spread([s[name] for s in stats]):17}" for name in SHOWN)
        print(f"{case:18} {size:>2} {len(group):>4} {cells}")
    print()
    print("first split: groups split / groups, first rounds (range, median)")
    print(f"{'case':18} {'n':>2}  {'previous rule':24} {'split.py':24} {'split.py from r11':24}")
    for case, size in keys:
        group = [r for r in runs if (r.case, r.size) == (case, size)]
        previous, current = splits(group, "previous"), splits(group, "current")
        late = splits(group, "current", LATE_START)
        print(f"{case:18} {size:>2}  {previous:24} {current:24} {late:24}")
    for label, want in (("false (a split is wrong)", False), ("wanted", True)):
        group = [r for r in runs if r.wanted == want and r.case != "iid, N=40" and r.size >= 4]
        print(
            f"{label}, all rows but N=40: previous {splits(group, 'previous')}; split.py "
            f"{splits(group, 'current')}; from r11 {splits(group, 'current', LATE_START)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--replicates", type=int, default=16)
    parser.add_argument("--save", default="")
    parser.add_argument("--load", default="")
    args = parser.parse_args()
    limit_compute_threads(1)
    if args.load:
        with open(args.load, "rb") as f:
            runs = [Run(**fields) for fields in pickle.load(f)]
    else:
        runs, began = [], time.monotonic()
        for case in CASES:
            for size in SIZES:
                runs += [simulate(case, size, replicate, args.rounds) for replicate in range(args.replicates)]
            print(f"simulated {case} ({time.monotonic() - began:.0f} s)", flush=True)
        for replicate in range(args.replicates):
            runs += simulate_halves(replicate, args.rounds)
        print(f"simulated rot4 halves ({time.monotonic() - began:.0f} s)", flush=True)
        if args.save:
            with open(args.save, "wb") as f:
                pickle.dump([vars(run) for run in runs], f)  # plain dicts: loadable from any module
    report(runs)


if __name__ == "__main__":
    main()
