"""Footprint and scale: what a peer costs in memory, and how a big mesh starts and runs.

    python benchmarks/footprint.py idle                      # one learning node, one DHT-only node
    python benchmarks/footprint.py mesh --nodes 30 --rounds 3 [--peers-per-process K]

`idle` starts a learning node (digits MLP) alone with --hold and a DHT-only node (--group none),
and reads each one's RSS and PSS (/proc/PID/smaps_rollup) once it waits. `mesh` runs `mycelium
mesh`, samples RSS and PSS of every process it started every 2 s (the peak of the sum, and per
peer at the release), then reads every peer's events: launch → every peer closed round 0, s/round
after that, accuracy, whether every peer finished and whether the groups filled to capacity.
Prints a table; exit code 0 when every peer finished.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from nodes import Node
from rich.console import Console
from rich.table import Table

SAMPLE = 2.0


def memory_mib(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of one process in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0]) / 1024
    return fields["Rss"], fields["Pss"]


def children_of(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(child) for child in text]
    return found


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            kids = children_of(current)
        except OSError:
            continue
        out += kids
        todo += kids
    return out


def idle(root: Path) -> list[tuple[str, str]]:
    rows = []
    for name, args, wait in (
        ("learning node (digits MLP, idle at --hold)", ["--hold"], "holding"),
        ("DHT-only node (--group none)", ["--group", "none"], "listening"),
    ):
        started = time.monotonic()
        node = Node(root, name.split()[0], args)
        try:
            node.wait_for(wait, timeout=120)
            seconds = time.monotonic() - started
            time.sleep(2.0)
            rss, pss = memory_mib(node.process.pid)
        finally:
            node.process.terminate()
            node.process.wait(10)
        rows.append((name, f"RSS {rss:.0f} MiB, PSS {pss:.0f} MiB, '{wait}' after {seconds:.1f} s"))
    return rows


def read_events(out: Path) -> dict[int, list[dict[str, Any]]]:
    events = {}
    for node_dir in sorted((out / "nodes").glob("node-*")):
        lines = (node_dir / "events.jsonl").read_text().splitlines()
        events[int(node_dir.name.split("-")[1])] = [json.loads(line) for line in lines if line.endswith("}")]
    return events


def mesh(out: Path, nodes: int, rounds: int, per_process: int, extra: list[str]) -> list[tuple[str, str]]:
    command = [
        sys.executable, "-m", "mycelium", "mesh", "--no-live", "--out", str(out),
        "--nodes", str(nodes), "--rounds", str(rounds), "--peers-per-process", str(per_process), *extra,
    ]  # fmt: skip
    print("$", " ".join(["mycelium", *command[3:]]), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    peak_rss = peak_pss = 0.0
    at_release: tuple[float, float, int] | None = None
    with (out / "mesh.log").open("w") as log:
        launcher = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        while launcher.poll() is None:
            pids = descendants(launcher.pid)
            sizes = []
            for pid in pids:
                try:
                    sizes.append(memory_mib(pid))
                except OSError:
                    continue
            rss, pss = sum(s[0] for s in sizes), sum(s[1] for s in sizes)
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            if at_release is None and "released" in (out / "mesh.log").read_text():
                at_release = (rss, pss, len(sizes))
            time.sleep(SAMPLE)
    seconds = time.monotonic() - started
    events = read_events(out)
    summary = json.loads((out / "summary.json").read_text())
    launched = min(e["time"] for es in events.values() for e in es if e["event"] == "listening")
    rounds_of = {i: [e for e in es if e["event"] == "round"] for i, es in events.items()}
    finished = sum(any(e["event"] == "finished" for e in es) for es in events.values())
    failed = sorted(n["index"] for n in summary["nodes"] if n["exit_code"] not in (0, None))
    first_round = max(r[0]["time"] for r in rounds_of.values() if r) - launched
    last_round = max(r[-1]["time"] for r in rounds_of.values() if r) - launched
    per_round = (last_round - first_round) / max(1, rounds - 1)
    finals = [r[-1] for r in rounds_of.values() if r]
    accuracies = [f["accuracy"] for f in finals]
    capacity = 10
    sizes = sorted((len(m) for m in _groups(finals).values()), reverse=True)
    full = sum(size >= capacity for size in sizes)
    rows = [
        ("peers that finished", f"{finished}/{nodes}"),
        ("processes that exited non-zero (by first peer)", ", ".join(map(str, failed)) or "none"),
        ("OS processes", str(1 + -(-(nodes - 1) // per_process))),
        ("launch → every peer closed round 0", f"{first_round:.0f} s"),
        ("s/round after round 0 (last peer)", f"{per_round:.1f} s"),
        ("whole run", f"{seconds:.0f} s"),
        ("final groups", f"{len(sizes)}: {_sizes(sizes)}; {full} full of {nodes // capacity} possible"),
        ("accuracy mean / min", f"{statistics.mean(accuracies):.4f} / {min(accuracies):.4f}"),
        ("peak memory of all processes", f"RSS {peak_rss:.0f} MiB, PSS {peak_pss:.0f} MiB"),
    ]
    if at_release is not None:
        rss, pss, count = at_release
        per_peer = f"RSS {rss / nodes:.0f} MiB, PSS {pss / nodes:.0f} MiB ({count} processes)"
        rows.append(("at the release, per peer", per_peer))
    return rows


def _sizes(sizes: list[int]) -> str:
    """`[10, 10, 1]` as "2 of 10, 1 of 1"."""
    counts = {size: sizes.count(size) for size in sorted(set(sizes), reverse=True)}
    return ", ".join(f"{count} of {size}" for size, count in counts.items())


def _groups(finals: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for final in finals:
        groups.setdefault(final["group"], []).append(final)
    return groups


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("idle", "mesh"))
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peers-per-process", type=int, default=1)
    parser.add_argument("--mesh-arg", action="append", default=[], help="extra `mycelium mesh` argument")
    parser.add_argument("--out", default="", help="keep the run here (default: a temp dir)")
    args = parser.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="mycelium-footprint-"))
    if args.what == "idle":
        rows, title = idle(root), "one node alone"
    else:
        out = root / f"mesh-{args.nodes}-k{args.peers_per_process}"
        rows = mesh(out, args.nodes, args.rounds, args.peers_per_process, args.mesh_arg)
        title = f"mesh --nodes {args.nodes} --rounds {args.rounds}"
        title += f" --peers-per-process {args.peers_per_process}"
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value")
    for row in rows:
        table.add_row(*row)
    Console(width=160).print(table)
    print(f"kept in {root}")
    return 0 if args.what == "idle" or rows[0][1].split("/")[0] == str(args.nodes) else 1


if __name__ == "__main__":
    sys.exit(main())
