"""A bigger local mesh: does every node finish, and how long do start-up and rounds take?

    python benchmarks/mesh_scale.py [--nodes 30] [--rounds 15]

Runs `mycelium mesh --nodes N --rounds R` (digits, dirichlet:0.5, every default) and reads every
node's events: whether each node finished its rounds, the seconds from launch until every node had
closed round 0 (start-up), the longest round (wall_s) against the 120 s ceiling, `stalled` events,
the groups nodes ended in and their accuracy. Prints a table; exit code 0 when every node finished
and no round passed the ceiling.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from meshrun import run_mesh
from rich.console import Console
from rich.table import Table

CEILING = 120.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", default="", help="keep the run here (default: a temp dir)")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="mycelium-scale-")) / f"mesh-{args.nodes}"
    run = run_mesh(out, "--nodes", str(args.nodes), "--rounds", str(args.rounds), allow_failure=True)
    launched = min(e["time"] for events in run.events.values() for e in events if e["event"] == "listening")
    rounds = {i: [e for e in events if e["event"] == "round"] for i, events in run.events.items()}
    finished = [i for i, events in run.events.items() if any(e["event"] == "finished" for e in events)]
    exit_codes = {n["index"]: n["exit_code"] for n in json.loads((out / "summary.json").read_text())["nodes"]}
    failed = sorted(i for i, code in exit_codes.items() if code != 0)
    first_round = max(r[0]["time"] for r in rounds.values() if r) - launched
    longest = max(e["wall_s"] for r in rounds.values() for e in r)
    stalled = sum(1 for events in run.events.values() for e in events if e["event"] == "stalled")
    finals = {i: r[-1] for i, r in rounds.items() if r}
    groups: dict[str, list[float]] = {}
    for final in finals.values():
        groups.setdefault(final["group"], []).append(final["accuracy"])
    table = Table(title=f"mycelium mesh --nodes {args.nodes} --rounds {args.rounds}")
    for column in ("figure", "value"):
        table.add_column(column)
    table.add_row("nodes that finished", f"{len(finished)}/{args.nodes}")
    table.add_row("nodes that exited non-zero", ", ".join(map(str, failed)) or "none")
    table.add_row("launch → every node closed round 0", f"{first_round:.0f} s")
    table.add_row("whole run", f"{run.seconds:.0f} s")
    table.add_row("longest round (wall_s)", f"{longest:.1f} s (ceiling {CEILING:.0f} s)")
    table.add_row("stalled events", str(stalled))
    table.add_row(
        "final groups (members: mean accuracy)",
        ", ".join(f"{len(a)}: {sum(a) / len(a):.4f}" for a in sorted(groups.values(), key=len, reverse=True)),
    )
    accuracies = [e["accuracy"] for e in finals.values()]
    table.add_row(
        "node accuracy min / mean / max",
        f"{min(accuracies):.4f} / {sum(accuracies) / len(accuracies):.4f} / {max(accuracies):.4f}",
    )
    Console(width=150).print(table)
    print(f"run kept in {out}")
    return 0 if len(finished) == args.nodes and not failed and longest <= CEILING else 1


if __name__ == "__main__":
    sys.exit(main())
