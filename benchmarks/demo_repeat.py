"""The README's first command, several times in a row, on a quiet machine and beside a CPU hog.

    python benchmarks/demo_repeat.py [--runs 5] [--load both|quiet|busy] [--nodes 10] [--rounds 20]

Each run is `mycelium mesh --nodes N --rounds R` exactly as the README has it. "busy" runs it beside
one extra process that spins a core for the whole run. For every run it reads each node's events and
checks the group protocol's promises: every node ends within 1 point of the best node's accuracy,
all nodes end in one group (one kind of data, room for all), and no node trained alone while a
group it could join was alive (a round with `members == 1` while another group had two or more live
members within 10 s). It also counts `stalled` events and rounds longer than the ceiling. Prints a
table; exit code 0 when every run kept every promise.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from meshrun import MeshRun, run_mesh
from rich.console import Console
from rich.table import Table

SPREAD_LIMIT = 0.01
CEILING = 120.0
ALONE_WINDOW = 10.0


def alone_while_a_group_lived(run: MeshRun) -> int:
    rounds = [e for events in run.events.values() for e in events if e["event"] == "round"]
    crowded = [(e["time"], e["group"]) for e in rounds if e["members"] >= 2]
    count = 0
    for event in rounds:
        if event["members"] != 1:
            continue
        if any(abs(t - event["time"]) <= ALONE_WINDOW and g != event["group"] for t, g in crowded):
            count += 1
    return count


def check(run: MeshRun) -> dict:
    finals = {i: [e for e in events if e["event"] == "round"][-1] for i, events in run.events.items()}
    accuracies = [e["accuracy"] for e in finals.values()]
    groups = {e["group"] for e in finals.values()}
    stalled = sum(1 for events in run.events.values() for e in events if e["event"] == "stalled")
    slow = sum(
        1 for events in run.events.values() for e in events if e["event"] == "round" and e["wall_s"] > CEILING
    )
    spread = max(accuracies) - min(accuracies)
    alone = alone_while_a_group_lived(run)
    return {
        "seconds": run.seconds,
        "min": min(accuracies),
        "max": max(accuracies),
        "spread": spread,
        "groups": len(groups),
        "alone": alone,
        "stalled": stalled,
        "slow": slow,
        "ok": spread <= SPREAD_LIMIT and len(groups) == 1 and alone == 0 and stalled == 0 and slow == 0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--load", choices=("both", "quiet", "busy"), default="both")
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--out", default="", help="keep every run's output here (default: a temp dir)")
    args = parser.parse_args()
    loads = ["quiet", "busy"] if args.load == "both" else [args.load]
    root = Path(args.out or tempfile.mkdtemp(prefix="mycelium-demo-"))
    table = Table(
        title=f"mycelium mesh --nodes {args.nodes} --rounds {args.rounds}, {args.runs} runs per load"
    )
    for column in (
        "load",
        "run",
        "seconds",
        "min acc",
        "max acc",
        "spread (pt)",
        "groups",
        "alone",
        "stalled",
        "ok",
    ):
        table.add_column(column, justify="right")
    all_ok = True
    for load in loads:
        for index in range(args.runs):
            hog = None
            if load == "busy":
                hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                run = run_mesh(
                    root / f"{load}-{index}", "--nodes", str(args.nodes), "--rounds", str(args.rounds)
                )
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()
            result = check(run)
            all_ok &= result["ok"]
            table.add_row(
                load,
                str(index + 1),
                f"{result['seconds']:.0f}",
                f"{result['min']:.4f}",
                f"{result['max']:.4f}",
                f"{100 * result['spread']:.1f}",
                str(result["groups"]),
                str(result["alone"]),
                str(result["stalled"]),
                "yes" if result["ok"] else "NO",
            )
            print(f"{load} run {index + 1}: {result}", flush=True)
    Console(width=150).print(table)
    print(f"runs kept in {root}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
