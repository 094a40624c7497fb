"""A member that claims to be a million rounds ahead with a garbage model, against a clean run.

    python benchmarks/catchup_liar.py [--members 5] [--rounds 15] [--repeats 2]

Each repeat runs the same group twice, one run after the other: `--members` honest learners
(digits, dirichlet:0.5, shards i/N) plus, in the attacked run, one more member started with
`--attack lie-round` (its heartbeats claim round + 10^6 and name a garbage model it serves). The
clean run has the same honest learners and an honest member in the liar's place, so both runs
train on the same data. Reports the honest members' mean final accuracy in both runs, how many
honest members ever adopted a model of round >= 10^6 (must be 0), and the difference in points.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from nodes import Node
from rich.console import Console
from rich.table import Table

ROUND_INTERVAL = "1"


def run_group(root: Path, members: int, rounds: int, liar: bool) -> tuple[list[float], int]:
    """Final accuracies of the honest members, and how many adopted a lie."""
    total = members + 1
    common = ["--rounds", str(rounds), "--min-members", str(total), "--round-interval", ROUND_INTERVAL]
    boot = Node(root, "boot", ["--group", "none"])
    nodes: list[Node] = []
    try:
        addr = boot.wait_for("listening", 60)["addrs"][0]
        first = Node(root, "m0", ["--group", "new", "--shard", f"0/{total}", "--bootstrap", addr, *common])
        nodes.append(first)
        group = first.wait_for("joined", 120)["group"]
        for i in range(1, members):
            nodes.append(
                Node(
                    root, f"m{i}", ["--group", group, "--shard", f"{i}/{total}", "--bootstrap", addr, *common]
                )
            )
        extra = ["--attack", "lie-round"] if liar else []
        if liar:
            os.environ["MYCELIUM_ALLOW_ATTACKS"] = "1"
        try:
            last = Node(
                root,
                "last",
                ["--group", group, "--shard", f"{members}/{total}", "--bootstrap", addr, *common, *extra],
            )
        finally:
            os.environ.pop("MYCELIUM_ALLOW_ATTACKS", None)
        for node in [*nodes, last]:
            node.process.wait(timeout=600)
        honest = nodes if liar else [*nodes, last]
        finals = [[e for e in n.events() if e["event"] == "round"][-1]["accuracy"] for n in honest]
        fooled = sum(
            1 for n in honest if any(e["event"] == "caught_up" and e["to_round"] >= 10**6 for e in n.events())
        )
        return finals, fooled
    finally:
        for node in [boot, *nodes]:
            if node.process.poll() is None:
                node.process.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=5, help="honest members (the liar comes on top)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mycelium-liar-"))
    table = Table(title=f"catch-up liar: {args.members} honest members + 1, {args.rounds} rounds")
    for column in (
        "repeat",
        "clean: honest mean",
        "with liar: honest mean",
        "difference (pt)",
        "adopted a lie",
    ):
        table.add_column(column, justify="right")
    differences = []
    for repeat in range(args.repeats):
        started = time.monotonic()
        clean, _ = run_group(root / f"clean-{repeat}", args.members, args.rounds, liar=False)
        attacked, fooled = run_group(root / f"liar-{repeat}", args.members, args.rounds, liar=True)
        # the clean run's honest members include the one in the liar's place: compare the same nodes
        clean_same = clean[: args.members]
        difference = 100 * (statistics.mean(attacked) - statistics.mean(clean_same))
        differences.append(abs(difference))
        table.add_row(
            str(repeat + 1),
            f"{statistics.mean(clean_same):.4f}",
            f"{statistics.mean(attacked):.4f}",
            f"{difference:+.2f}",
            str(fooled),
        )
        print(f"repeat {repeat + 1} done in {time.monotonic() - started:.0f} s", flush=True)
    Console(width=140).print(table)
    return 0 if max(differences) <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
