"""Poisoned peers in one process: each aggregation rule against each attack, and what trust sees.

    python benchmarks/poison_simulation.py [--rounds 20] [--attackers 2] [--seeds 0 1]

(a few minutes of one core.) Simulates one group of 10 nodes on digits, dirichlet:0.5, with the
nodes' own code: `node_data`, `Learner`, the digits settings, the attack classes of
mycelium/node/attacks.py, the rules of mycelium/learn/aggregate.py, and trust's measurement and
reputation (mycelium/node/trust.py, mycelium/policy/trust.py). Every round every node trains from
its own model, as members do. Each rule runs alone (it aggregates all ten updates), and the
default rule also as the node runs it: every honest node scores the others on its own validation
data and leaves out whom its reputation book distrusts. The attackers are the last `--attackers`
shards.

Prints honest nodes' mean accuracy on the common test split after `--rounds` rounds per rule and
attack (mean over `--seeds`), and, for the default rule, the range of reputations honest nodes
hold of honest peers and of attackers after 10 rounds and at the end, and how many attackers are
below the floor everywhere. The network version, with real nodes, is benchmarks/poisoned_peers.py.
"""

from __future__ import annotations

import argparse
import statistics
import time

from rich.console import Console
from rich.table import Table

from mycelium.config import DEFAULT_TRAINING
from mycelium.learn.aggregate import AGGREGATORS, DEFAULT_AGGREGATOR
from mycelium.learn.data import node_data, parse_partition
from mycelium.learn.train import Learner, limit_compute_threads
from mycelium.node.attacks import ATTACKS, build_attack
from mycelium.node.trust import Scored, measure
from mycelium.policy.peers import PeerId
from mycelium.policy.trust import Reputation, TrustRules, round_score

NODES = 10
ATTACK_NAMES = ("none", "sign-flip", "noise", "label-flip", "inflate-samples")


def simulate(
    rule_name: str, attack_name: str, attackers: int, rounds: int, seed: int, with_trust: bool
) -> dict:
    """One group's run; each node keeps its own model, as members do. With `with_trust`, every
    honest node scores the others each round and leaves out whom its book distrusts (as the node
    does); without, the rule alone. Attackers aggregate everything with the rule."""
    partition = parse_partition("dirichlet:0.5")
    settings = DEFAULT_TRAINING["digits"]
    learners = [
        Learner("mlp", node_data("digits", partition, i, NODES, seed), seed=seed * 1000 + i)
        for i in range(NODES)
    ]
    bad = set(range(NODES - attackers, NODES)) if attack_name != "none" else set()
    attacks = {i: build_attack(attack_name, learners[i].shapes, seed=i) for i in bad}
    for i, attack in attacks.items():
        learners[i].data = attack.data(learners[i].data)
    ids = [PeerId(bytes([0, i + 1])) for i in range(NODES)]
    rule = AGGREGATORS[rule_name]
    books = {i: Reputation(TrustRules()) for i in range(NODES) if i not in bad}
    snapshots: dict[int, dict[str, list[float]]] = {}
    models = [learners[0].initial_weights() for _ in range(NODES)]
    for number in range(rounds):
        contributions = []
        for i, learner in enumerate(learners):
            learner.load(models[i])
            samples = learner.train(settings, number).samples
            weights = learner.weights()
            if i in attacks:
                weights, samples = attacks[i].update(models[i], weights), attacks[i].samples(samples)
            contributions.append((ids[i], weights, samples))
        for i in range(NODES):
            kept = contributions
            if with_trust and i in books:
                book, learner = books[i], learners[i]

                def loss_of(weights, learner=learner) -> float:  # noqa: ANN001
                    return learner.evaluate(learner.data.validation, weights).loss

                scored = [Scored(author, weights, samples) for author, weights, samples in contributions]
                for author, evidence in measure(loss_of, models[i], scored, ids[i], book.rules).items():
                    book.record(author, round_score(evidence, book.rules))
                kept = [c for c in contributions if c[0] == ids[i] or book.trusted(c[0])]
            models[i] = rule(models[i], [(w, n) for _, w, n in kept])
        if with_trust and number + 1 in (10, rounds):
            snapshots[number + 1] = {
                "honest": [
                    b.of(ids[j]) for i, b in books.items() for j in range(NODES) if j != i and j not in bad
                ],
                "attackers": [b.of(ids[j]) for b in books.values() for j in bad],
                "below": [sum(not b.trusted(ids[j]) for b in books.values()) for j in bad],
            }
    honest = [i for i in range(NODES) if i not in bad]
    accuracy = statistics.mean(
        learners[i].evaluate(learners[i].data.common_test, models[i]).accuracy for i in honest
    )
    return {"accuracy": accuracy, "snapshots": snapshots}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--attackers", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--rules", nargs="+", default=list(AGGREGATORS))
    args = parser.parse_args()
    limit_compute_threads(1)
    assert set(ATTACK_NAMES[1:]) <= set(ATTACKS)
    started = time.monotonic()
    variants = [(rule, False) for rule in args.rules] + [(DEFAULT_AGGREGATOR, True)]
    labels = [
        rule + (" + reputation (the default)" if with_trust else " alone") for rule, with_trust in variants
    ]
    accuracy: dict[tuple[str, str], float] = {}
    trust: dict[str, list[dict]] = {}
    for attack in ATTACK_NAMES:
        for (rule, with_trust), label in zip(variants, labels, strict=True):
            results = [
                simulate(rule, attack, args.attackers, args.rounds, seed, with_trust) for seed in args.seeds
            ]
            accuracy[(label, attack)] = statistics.mean(r["accuracy"] for r in results)
            if with_trust:
                trust[attack] = [r["snapshots"] for r in results]
            print(f"{attack:16s} {label:40s} {accuracy[(label, attack)]:.4f}", flush=True)
    console = Console(width=160)
    title = f"honest mean accuracy after {args.rounds} rounds, {args.attackers} attackers of {NODES}"
    table = Table(title=title + f", seeds {' '.join(map(str, args.seeds))}")
    table.add_column("rule")
    for attack in ATTACK_NAMES:
        table.add_column(attack if attack != "none" else "clean", justify="right")
    for label in labels:
        table.add_row(label, *(f"{accuracy[(label, a)]:.4f}" for a in ATTACK_NAMES))
    console.print(table)
    floor = TrustRules().floor
    table = Table(title=f"reputations held by honest nodes (floor {floor})")
    for column in (
        "attack",
        "after round",
        "honest peers: min / median",
        "attackers: median / max",
        "attackers below the floor at every honest node",
    ):
        table.add_column(column, justify="right")
    for attack, runs in trust.items():
        for at in sorted(runs[0]):
            honest = [v for r in runs for v in r[at]["honest"]]
            bad = [v for r in runs for v in r[at]["attackers"]]
            everywhere = sum(b == NODES - args.attackers for r in runs for b in r[at]["below"])
            total = sum(len(r[at]["below"]) for r in runs)
            table.add_row(
                attack,
                str(at),
                f"{min(honest):.2f} / {statistics.median(honest):.2f}",
                f"{statistics.median(bad):.2f} / {max(bad):.2f}" if bad else "-",
                f"{everywhere} of {total}" if total else "-",
            )
    console.print(table)
    print(f"{time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
