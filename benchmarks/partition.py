"""One group split by a network partition, then healed: does it become one group again, and how fast?

    sudo python benchmarks/partition.py [--nodes 8] [--split 4] [--leader-side a|b] [--cut 60]

Needs root and `ip` (iproute2): it creates two network namespaces joined by a veth pair, starts a
DHT-only bootstrap peer and `--nodes` learners of one group (the creator, i.e. the leader, in side
`--leader-side`; `--split` learners in side a, the rest in side b), waits until all are in one
group, then cuts the link for `--cut` seconds by dropping every packet silently (a pfifo qdisc of
length 0 on both ends: no error reaches the nodes, as with a real partition) and heals it. It reports
the rounds each side ran during the cut and the seconds from healing until every node holds the
same record version listing every learner. Exit code 0 when that took at most `--heal-within`
seconds. Everything it created (processes, namespaces, links) is removed on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mycelium.mesh.launcher import die_with_parent  # noqa: E402

SIDES = {"a": ("myc-part-a", "myc-va", "10.77.0.1"), "b": ("myc-part-b", "myc-vb", "10.77.0.2")}
FORM_TIMEOUT = 240.0


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def make_namespaces() -> None:
    remove_namespaces()
    for namespace, _, _ in SIDES.values():
        ip("netns", "add", namespace)
    ip("link", "add", SIDES["a"][1], "type", "veth", "peer", "name", SIDES["b"][1])
    for namespace, device, address in SIDES.values():
        ip("link", "set", device, "netns", namespace)
        ip("-n", namespace, "addr", "add", f"{address}/24", "dev", device)
        ip("-n", namespace, "link", "set", device, "up")
        ip("-n", namespace, "link", "set", "lo", "up")


def remove_namespaces() -> None:
    for namespace, _, _ in SIDES.values():
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


def cut(drop: bool) -> None:
    """Drop every packet on the link silently (drop=True), or stop dropping."""
    for namespace, device, _ in SIDES.values():
        verb = (
            ["add", "dev", device, "root", "pfifo", "limit", "0"] if drop else ["del", "dev", device, "root"]
        )
        ip("netns", "exec", namespace, "tc", "qdisc", *verb)


@dataclass
class Learner:
    name: str
    side: str
    process: subprocess.Popen[bytes]
    events: Path
    stderr: Path = field(default=Path())

    def read(self) -> list[dict]:
        if not self.events.exists():
            return []
        return [json.loads(line) for line in self.events.read_text().splitlines() if line.endswith("}")]

    def rounds(self) -> list[dict]:
        return [e for e in self.read() if e["event"] == "round"]


def start(workdir: Path, name: str, side: str, *args: str) -> Learner:
    namespace, _, address = SIDES[side]
    folder = workdir / name
    folder.mkdir(parents=True)
    events = folder / "events.jsonl"
    command = [
        "ip", "netns", "exec", namespace,
        sys.executable, "-m", "mycelium", "node",
        "--listen", f"/ip4/{address}/tcp/0",
        "--ip-diversity", "off",
        "--data-dir", str(folder / "data"),
        "--events", str(events),
        *args,
    ]  # fmt: skip
    stderr = folder / "stderr.log"
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=stderr.open("w"), preexec_fn=die_with_parent
    )
    return Learner(name, side, process, events, stderr)


def wait_for(learner: Learner, test, timeout: float) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in learner.read():
            if test(event):
                return event
        if learner.process.poll() is not None:
            raise SystemExit(f"{learner.name} exited: {learner.stderr.read_text()[-2000:]}")
        time.sleep(0.2)
    raise SystemExit(f"{learner.name}: timed out waiting ({learner.stderr.read_text()[-1000:]})")


def one_group(learners: list[Learner], since: float) -> tuple[bool, str]:
    """Whether every learner's latest round (after `since`) holds the same version listing all."""
    latest = []
    for learner in learners:
        rounds = [e for e in learner.rounds() if e["time"] > since]
        if not rounds:
            return False, f"{learner.name}: no round yet"
        latest.append(rounds[-1])
    versions = {(e["group"], e["record_digest"]) for e in latest}
    listed = {e["listed"] for e in latest}
    return len(versions) == 1 and listed == {
        len(learners)
    }, f"{len(versions)} versions, listed {sorted(listed)}"


def run(args: argparse.Namespace) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="mycelium-partition-"))
    learners: list[Learner] = []
    make_namespaces()
    try:
        boot = start(workdir, "boot", "a", "--group", "none")
        learners.append(boot)
        boot_addr = wait_for(boot, lambda e: e["event"] == "listening", 60)["addrs"][0]
        sides = ["a"] * args.split + ["b"] * (args.nodes - args.split)
        order = sorted(range(args.nodes), key=lambda i: sides[i] != args.leader_side)
        common = ["--bootstrap", boot_addr, "--round-interval", "1", "--partition", "iid"]
        creator_index = order[0]
        creator = start(
            workdir, f"n{creator_index}", sides[creator_index], "--group", "new",
            "--shard", f"{creator_index}/{args.nodes}", *common,
        )  # fmt: skip
        group = wait_for(creator, lambda e: e["event"] == "joined", 120)["group"]
        nodes = {creator_index: creator}
        for i in order[1:]:
            nodes[i] = start(
                workdir, f"n{i}", sides[i], "--group", group, "--shard", f"{i}/{args.nodes}", *common
            )
        members = [nodes[i] for i in range(args.nodes)]
        learners.extend(members)
        formed_from = time.time()
        for learner in members:
            wait_for(learner, lambda e: e["event"] == "round" and e.get("listed") == args.nodes, FORM_TIMEOUT)
        formed = time.time() - formed_from
        time.sleep(10)
        cut_at = time.time()
        cut(True)
        time.sleep(args.cut)
        cut(False)
        healed_at = time.time()
        during = {
            learner.name: len([e for e in learner.rounds() if cut_at < e["time"] < healed_at])
            for learner in members
        }
        whole_after = None
        status = ""
        while time.time() < healed_at + args.heal_within + 60:
            whole, status = one_group(members, healed_at)
            if whole:
                # every round after this point must agree too: take the first moment it held
                whole_after = time.time() - healed_at
                break
            time.sleep(0.5)
        if whole_after is not None:
            time.sleep(args.observe)  # and it stays one group: no split, no second part, nobody leaves
        stayed = one_group(members, time.time() - 5)[0]
        disturbed = [
            f"{learner.name}:{e['event']}"
            for learner in members
            for e in learner.read()
            if e["time"] > healed_at and e["event"] in ("split", "left", "rejoining", "joined", "stalled")
        ]
        events = {
            learner.name: [
                e for e in learner.read() if e["event"] not in ("round", "listening", "bootstrapped")
            ]
            for learner in members
        }
        return {
            "nodes": args.nodes,
            "split": f"{args.split}/{args.nodes - args.split}",
            "leader_side": args.leader_side,
            "cut_s": args.cut,
            "formed_s": round(formed, 1),
            "rounds_during_cut": during,
            "one_group_after_heal_s": None if whole_after is None else round(whole_after, 1),
            "observed_after_s": args.observe,
            "still_one_group": stayed,
            "after_heal": disturbed,
            "status": status,
            "events": events,
            "workdir": str(workdir),
        }
    finally:
        for learner in learners:
            if learner.process.poll() is None:
                learner.process.kill()
        remove_namespaces()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--split", type=int, default=4, help="learners in side a (default half)")
    parser.add_argument("--leader-side", choices=("a", "b"), default="a")
    parser.add_argument("--cut", type=float, default=60.0, help="seconds the link stays cut")
    parser.add_argument("--heal-within", type=float, default=60.0, help="the figure to reach")
    parser.add_argument("--observe", type=float, default=60.0, help="seconds it must stay one group after")
    parser.add_argument("--json", metavar="FILE", help="also write the result here")
    parser.add_argument("--keep", action="store_true", help="keep the nodes' events in a temp dir")
    args = parser.parse_args()
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tc") is None:
        print("partition.py needs root and iproute2 (ip, tc): it creates network namespaces", file=sys.stderr)
        return 2
    result = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    side = f"leader in side {result['leader_side']}"
    print(
        f"partition of {result['nodes']} learners, {result['split']} ({side}),"
        f" link cut for {result['cut_s']:.0f} s; group formed in {result['formed_s']} s"
    )
    print(
        "rounds during the cut: "
        + ", ".join(f"{k} {v}" for k, v in sorted(result["rounds_during_cut"].items()))
    )
    after = result["one_group_after_heal_s"]
    healed = f"never ({result['status']})" if after is None else f"{after} s"
    print(f"one group again after healing: {healed}")
    print(
        f"{result['observed_after_s']:.0f} s later still one group: {result['still_one_group']};"
        f" after healing: {', '.join(result['after_heal']) or 'no split, leave or rejoin'}"
    )
    for name, events in sorted(result["events"].items()):
        summary = [e["event"] + (f":{e.get('reason')}" if e.get("reason") else "") for e in events]
        print(f"  {name}: {' '.join(summary)[:300]}")
    ok = (
        after is not None
        and after <= args.heal_within
        and result["still_one_group"]
        and all(v > 0 for v in result["rounds_during_cut"].values())
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
