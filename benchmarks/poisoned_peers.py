"""Poisoned peers over the real network: real nodes, real attackers, the default rule against plain FedAvg.

    python benchmarks/poisoned_peers.py [--attacks sign-flip noise label-flip inflate-samples]
                                        [--attackers 2 3] [--rounds 20]

(about 80 s a run; the full set is 1 clean run + 2 per attack with 2 attackers + 1 per attack with
3: about 20 minutes.) One group of 10 `mycelium node` processes on loopback, digits, dirichlet:0.5,
node i holding shard i/10; the attackers are the last ones, started with `--attack NAME`
(MYCELIUM_ALLOW_ATTACKS=1; see mycelium/node/attacks.py). Everyone waits for all ten members
(`--min-members 10`) and runs `--rounds` rounds. Each attack runs twice: with the defaults
(guarded-fedavg and reputation) and with `--aggregator fedavg --no-trust`; the clean run has ten
honest nodes with the defaults.

For each run: the honest nodes' mean accuracy at their last round (common test split); for the
default runs also, per attacker, by which round no honest node averaged it any more (each had it
below the floor, its `distrusted` event, or the leader had removed it from the group), in which
round the leader removed it (`removed_member`), and whether any honest node was ever distrusted or
removed (false positives). `--read DIR` reports on the runs kept in DIR again. Prints a table;
exit code 0 when every default run ends within 2 points of the clean run and no honest node was
distrusted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from nodes import Node
from rich.console import Console
from rich.table import Table

NODES = 10
TARGET_PT = 2.0
ROUND_INTERVAL = "1"


@dataclass
class Outcome:
    honest_accuracy: float
    out_by: list[int | None]  # per attacker: the round by which no honest node averaged it any more
    removed_at: list[int | None]  # per attacker: the round the leader removed it
    honest_distrusted: int  # distrusted / removed events naming an honest node
    seconds: float


def run_group(root: Path, attack: str, attackers: int, rounds: int, defaults: bool) -> Outcome:
    common = ["--rounds", str(rounds), "--min-members", str(NODES), "--round-interval", ROUND_INTERVAL]
    common += ["--min-members-timeout", "120", "--partition", "dirichlet:0.5"]
    if not defaults:
        common += ["--aggregator", "fedavg", "--no-trust"]
    started = time.monotonic()
    boot = Node(root, "boot", ["--group", "none"])
    nodes: list[Node] = []
    bad = set(range(NODES - attackers, NODES)) if attack != "none" else set()
    try:
        addr = boot.wait_for("listening", 60)["addrs"][0]
        first = Node(root, "n0", ["--group", "new", "--shard", f"0/{NODES}", "--bootstrap", addr, *common])
        nodes.append(first)
        group = first.wait_for("joined", 120)["group"]
        os.environ["MYCELIUM_ALLOW_ATTACKS"] = "1"
        try:
            for i in range(1, NODES):
                extra = ["--attack", attack] if i in bad else []
                args = ["--group", group, "--shard", f"{i}/{NODES}", "--bootstrap", addr, *common, *extra]
                nodes.append(Node(root, f"n{i}", args))
        finally:
            os.environ.pop("MYCELIUM_ALLOW_ATTACKS", None)
        for node in nodes:
            node.process.wait(timeout=900)
        return read_outcome(root, bad, time.monotonic() - started)
    finally:
        for node in [boot, *nodes]:
            if node.process.poll() is None:
                node.process.kill()


def read_outcome(root: Path, bad: set[int], seconds: float = 0.0) -> Outcome:
    """What the nodes of one run (kept under `root`) logged."""
    events = {}
    for i in range(NODES):
        lines = (root / f"n{i}" / "events.jsonl").read_text().splitlines()
        events[i] = [json.loads(line) for line in lines if line.endswith("}")]
    ids = {i: next(e["peer_id"] for e in events[i] if e["event"] == "listening") for i in range(NODES)}
    honest = [i for i in range(NODES) if i not in bad]
    finals = [[e for e in events[i] if e["event"] == "round"][-1]["accuracy"] for i in honest]

    def first(at: int, name: str, peer: str) -> int | None:
        rounds = [e["round"] for e in events[at] if e["event"] == name and e["peer"] == peer]
        return min(rounds) if rounds else None

    out_by: list[int | None] = []
    removed_at: list[int | None] = []
    for j in sorted(bad):
        removals = [r for i in honest if (r := first(i, "removed_member", ids[j])) is not None]
        removed = min(removals) if removals else None
        # out of an honest node's average: it distrusts the attacker, or the attacker is out of the group
        per_node = [
            min((r for r in (first(i, "distrusted", ids[j]), removed) if r is not None), default=None)
            for i in honest
        ]
        out_by.append(None if None in per_node else max(r for r in per_node if r is not None))
        removed_at.append(removed)
    honest_ids = {ids[i] for i in honest}
    false = sum(
        1
        for i in honest
        for e in events[i]
        if e["event"] in ("distrusted", "removed_member") and e["peer"] in honest_ids
    )
    return Outcome(statistics.mean(finals), out_by, removed_at, false, seconds)


def rounds_text(values: list[int | None]) -> str:
    return ", ".join("never" if v is None else f"r{v}" for v in values) or "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--attacks", nargs="+", default=["sign-flip", "noise", "label-flip", "inflate-samples"]
    )
    parser.add_argument("--attackers", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--read", metavar="DIR", help="report on the runs kept in DIR instead of running")
    args = parser.parse_args()
    root = Path(args.read) if args.read else Path(tempfile.mkdtemp(prefix="mycelium-poison-"))

    def run(name: str, attack: str, attackers: int, defaults: bool) -> Outcome:
        bad = set(range(NODES - attackers, NODES)) if attack != "none" else set()
        if args.read:
            return read_outcome(root / name, bad)
        return run_group(root / name, attack, attackers, args.rounds, defaults)

    clean = run("clean", "none", 0, defaults=True)
    print(f"clean: {clean.honest_accuracy:.4f} ({clean.seconds:.0f} s)", flush=True)
    table = Table(
        title=f"{NODES} nodes, digits dirichlet:0.5, {args.rounds} rounds; clean {clean.honest_accuracy:.4f}"
    )
    for column in (
        "attack",
        "attackers",
        "honest mean, defaults",
        "vs clean (pt)",
        "honest mean, plain FedAvg",
        "out of every honest average by",
        "removed by the leader in",
        "honest nodes distrusted",
    ):
        table.add_column(column, justify="right")
    ok = clean.honest_distrusted == 0
    for attackers in args.attackers:
        for attack in args.attacks:
            guarded = run(f"{attack}-{attackers}", attack, attackers, defaults=True)
            plain = (
                run(f"{attack}-{attackers}-fedavg", attack, attackers, defaults=False)
                if attackers == args.attackers[0]
                else None
            )
            difference = 100 * (guarded.honest_accuracy - clean.honest_accuracy)
            ok = ok and difference >= -TARGET_PT and guarded.honest_distrusted == 0
            table.add_row(
                attack,
                str(attackers),
                f"{guarded.honest_accuracy:.4f}",
                f"{difference:+.2f}",
                f"{plain.honest_accuracy:.4f}" if plain else "-",
                rounds_text(guarded.out_by),
                rounds_text(guarded.removed_at),
                str(guarded.honest_distrusted),
            )
            plain_text = f", plain {plain.honest_accuracy:.4f}" if plain else ""
            print(f"{attack} x{attackers}: defaults {guarded.honest_accuracy:.4f}{plain_text}", flush=True)
    Console(width=200).print(table)
    print(f"clean run: honest nodes distrusted {clean.honest_distrusted}; runs kept in {root}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
