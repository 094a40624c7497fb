"""CPU a mesh uses at rest: start a mesh, let every peer close round 0, then sample its processes.

    python benchmarks/idle_cpu.py --nodes 30 --peers-per-process 10 --repeats 2
    python benchmarks/idle_cpu.py --repeats 2 --other-code /tmp/old   # alternate with other code

The mesh runs `mycelium mesh --rounds 2 --round-interval 300`, so after round 0 its peers only
keep their groups up (heartbeats, gossip, DHT upkeep) for five minutes. Ten seconds after the last
peer's round 0, the table shows the mesh processes' user + system CPU over 30 s, in % of one core.
`--other-code DIR` takes turns with the `mycelium` package under DIR (for example `git archive
<commit> mycelium | tar -x -C DIR`): `python -m mycelium` started there imports that copy.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
SETTLE_S = 10.0
SAMPLE_S = 30.0
START_LIMIT_S = 400.0


def _rounds_closed(out: Path) -> int:
    count = 0
    for events in out.glob("nodes/*/events.jsonl"):
        with events.open() as lines:
            count += sum('"event":"round"' in line for line in lines)
    return count


def _cpu_seconds(pids: list[str]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def measure(code: Path, nodes: int, per_process: int, out: Path) -> tuple[float | None, float | None]:
    """(seconds until every peer closed round 0, % of a core at rest); None where it never got there."""
    command = [sys.executable, "-m", "mycelium", "mesh", "--nodes", str(nodes), "--rounds", "2", "--no-live"]
    command += ["--peers-per-process", str(per_process), "--round-interval", "300", "--out", str(out)]
    mesh = subprocess.Popen(
        command, cwd=code, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        began = time.monotonic()
        while _rounds_closed(out) < nodes:
            if time.monotonic() - began > START_LIMIT_S or mesh.poll() is not None:
                return None, None
            time.sleep(1)
        ready_s = time.monotonic() - began
        time.sleep(SETTLE_S)
        pids = subprocess.run(["pgrep", "-s", str(mesh.pid)], capture_output=True, text=True).stdout.split()
        before = _cpu_seconds(pids)
        time.sleep(SAMPLE_S)
        return ready_s, 100 * (_cpu_seconds(pids) - before) / SAMPLE_S
    finally:
        os.killpg(mesh.pid, signal.SIGTERM)
        mesh.wait(60)


def _shown(value: float | None) -> str:
    return "never" if value is None else f"{value:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--peers-per-process", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--other-code", type=Path, help="a directory holding another `mycelium` package")
    args = parser.parse_args()
    codes = [("this code", ROOT)] + ([("other code", args.other_code.resolve())] if args.other_code else [])
    table = Table(title=f"{args.nodes} peers, {args.peers_per_process} a process, at rest")
    for column in ("run", "code", "every peer closed round 0 s", "CPU at rest, % of a core"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory(prefix="idle-cpu-") as scratch:
        for run in range(1, args.repeats + 1):
            for name, code in codes:
                out = Path(scratch) / f"{run}-{name}"
                ready_s, cpu = measure(code, args.nodes, args.peers_per_process, out)
                shown = (_shown(ready_s), _shown(cpu))
                table.add_row(str(run), name, *shown)
                Console().print(f"run {run}, {name}: {shown[0]} s, {shown[1]} %")
    Console().print(table)


if __name__ == "__main__":
    main()
