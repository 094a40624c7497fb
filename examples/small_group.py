"""Four peers learn digits together; prints the group's accuracy after every round.

    python examples/small_group.py [--nodes 4] [--rounds 10] [--partition dirichlet:0.5]

What it shows, with nothing but the `mycelium node` command: the first peer creates a group, the
others bootstrap from it, find the group in the DHT and join it, and every member ends each round
with the same model (same hash). Ctrl-C stops every peer.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def start_peer(
    workdir: Path, index: int, args: argparse.Namespace, extra: list[str]
) -> subprocess.Popen[str]:
    command = [
        sys.executable, "-m", "mycelium", "node",
        "--listen", "/ip4/127.0.0.1/tcp/0",
        "--data-dir", str(workdir / f"peer-{index}"),
        "--events", "-",
        "--shard", f"{index}/{args.nodes}",
        "--partition", args.partition,
        "--rounds", str(args.rounds),
        "--min-members", str(args.nodes),
        *extra,
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def next_event(peer: subprocess.Popen[str], name: str) -> dict:
    for line in peer.stdout:  # type: ignore[union-attr]
        event = json.loads(line)
        if event["event"] == name:
            return event
    raise SystemExit(f"a peer stopped before its {name!r} event")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--partition", default="dirichlet:0.5")
    args = parser.parse_args()
    peers: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryDirectory(prefix="mycelium-example-") as workdir:
        try:
            peers.append(start_peer(Path(workdir), 0, args, ["--group", "new"]))
            bootstrap = next_event(peers[0], "listening")["addrs"][0]
            group = next_event(peers[0], "joined")["group"]
            print(f"peer 0 created group {group[:8]}; it listens on {bootstrap}")
            for index in range(1, args.nodes):
                peers.append(start_peer(Path(workdir), index, args, ["--bootstrap", bootstrap]))
            started = time.monotonic()
            print("round  accuracy per peer                 same model on every peer")
            for number in range(args.rounds):
                rounds = [next_event(peer, "round") for peer in peers]
                accuracies = " ".join(f"{r['accuracy']:.3f}" for r in rounds)
                same = len({r["model_hash"] for r in rounds}) == 1
                print(f"{number + 1:>5}  {accuracies:<34} {'yes' if same else 'no'}")
            print(f"finished {args.rounds} rounds in {time.monotonic() - started:.0f} s")
        finally:
            for peer in peers:
                peer.send_signal(signal.SIGTERM)
            for peer in peers:
                peer.wait(timeout=10)


if __name__ == "__main__":
    main()
