"""Groups that find each other: rotated data, 20 nodes, `--group auto` and nothing else.

    python benchmarks/clustering.py --dataset digits
    python benchmarks/clustering.py --dataset mnist

Runs `mycelium mesh --nodes 20 --rounds 40 --partition rotated:4` (node i's images are turned by
90°·(i mod 4)) and scores, from what the nodes logged: purity (share of nodes whose final group holds
only their own rotation), mean node test accuracy, when the grouping stopped changing, migrations
and splits per node. Next to it, in the same run and on the same shards with the same training
settings, two references simulated in this process: an oracle that runs FedAvg per true rotation,
and one global FedAvg over all 20 nodes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from meshrun import MeshRun, run_mesh
from rich.console import Console
from rich.table import Table

from mycelium.config import DEFAULT_TRAINING
from mycelium.learn.aggregate import FedAvg
from mycelium.learn.data import node_data, parse_partition
from mycelium.learn.train import Learner, limit_compute_threads

NODES = 20
KINDS = 4


def simulated_fedavg(dataset: str, groups: list[list[int]], rounds: int) -> dict[int, float]:
    """Each node's test accuracy after `rounds` rounds of FedAvg within its group."""
    partition = parse_partition(f"rotated:{KINDS}")
    settings = DEFAULT_TRAINING[dataset]
    learners = {
        i: Learner("mlp", node_data(dataset, partition, i, NODES, seed=0), seed=0) for g in groups for i in g
    }
    for number in range(rounds):
        for group in groups:
            start = learners[group[0]].weights()
            updates = []
            for index in group:
                learners[index].load(start)
                learners[index].train(settings, number)
                updates.append((learners[index].weights(), len(learners[index].data.train)))
            merged = FedAvg()(start, updates)
            for index in group:
                learners[index].load(merged)
    return {i: learner.evaluate(learner.data.common_test).accuracy for i, learner in learners.items()}


def stable_since(run: MeshRun) -> tuple[int, float]:
    """Rounds a node had completed (and seconds after the first round closed) when any node last
    changed groups. Counted per node: a group's own round numbers jump when a node joins it."""
    rounds = {i: [e for e in events if e["event"] == "round"] for i, events in run.events.items()}
    first = min(r[0]["time"] for r in rounds.values() if r)
    last_round, last_time = 0, first
    for node_rounds in rounds.values():
        for done, (before, after) in enumerate(zip(node_rounds, node_rounds[1:], strict=False), start=1):
            if after["group"] != before["group"] and after["time"] > last_time:
                last_round, last_time = done, after["time"]
    return last_round, last_time - first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=("digits", "mnist"), default="digits")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--keep", metavar="DIR", help="keep the mesh run's output here")
    parser.add_argument("--mesh-arg", action="append", default=[], help="extra `mycelium mesh` argument")
    args = parser.parse_args()
    limit_compute_threads(2)
    with tempfile.TemporaryDirectory(prefix="mycelium-clustering-") as tmp:
        out = Path(args.keep or tmp) / f"rotated-{args.dataset}"
        run = run_mesh(
            out,
            *("--nodes", str(NODES), "--rounds", str(args.rounds), "--dataset", args.dataset),
            *("--partition", f"rotated:{KINDS}", *args.mesh_arg),
        )
        summary = json.loads((out / "summary.json").read_text())
    started = time.monotonic()
    oracle = simulated_fedavg(args.dataset, [list(range(k, NODES, KINDS)) for k in range(KINDS)], args.rounds)
    global_fedavg = simulated_fedavg(args.dataset, [list(range(NODES))], args.rounds)
    simulated = time.monotonic() - started

    accuracies = [node["accuracy"] for node in summary["nodes"] if node["accuracy"] is not None]
    stable_round, stable_seconds = stable_since(run)
    splits = sum(1 for events in run.events.values() for e in events if e["event"] == "split")
    table = Table(title=f"rotated {args.dataset}, {NODES} nodes, rotated:{KINDS}, {args.rounds} rounds")
    for column in ("", "value"):
        table.add_column(column, justify="right" if column else "left")
    rows = [
        ("purity (nodes in a group of their rotation only)", f"{summary['purity']:.2f}"),
        ("final groups (node indices)", "  ".join(",".join(map(str, m)) for m in summary["groups"].values())),
        ("mean node test accuracy, mycelium", f"{np.mean(accuracies):.4f} ({len(accuracies)} nodes)"),
        ("oracle: FedAvg per true rotation", f"{np.mean(list(oracle.values())):.4f}"),
        ("one global FedAvg over all nodes", f"{np.mean(list(global_fedavg.values())):.4f}"),
        ("grouping unchanged since", f"{stable_round} rounds, {stable_seconds:.0f} s after the first round"),
        ("migrations per node", f"{summary['migrations'] / NODES:.2f}"),
        ("split events logged (all nodes)", str(splits)),
        ("mesh wall time", f"{run.seconds:.0f} s"),
        ("reference simulation time", f"{simulated:.0f} s"),
    ]
    for row in rows:
        table.add_row(*row)
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
