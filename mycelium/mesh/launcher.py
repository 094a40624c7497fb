"""`mycelium mesh`: N node processes on loopback, one live view, a summary at the end.

Node 0 is the bootstrap peer (and a learner); every later node bootstraps from up to three random
nodes that are already listening. With `--peers-per-process` K > 1 the rest start in waves of at
least one group's capacity (whole processes, node 0 counted in the first): a wave starts once every
earlier node holds a group, so that each wave finds the groups the earlier ones formed instead of
all asking the first group's leader at once; its processes have loaded meanwhile. Node i holds
shard i (with `rotated:K` its data is rotated by 90°·(i mod K)).
Children die with the launcher (PR_SET_PDEATHSIG) and are stopped on Ctrl-C, so none outlives it.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from mycelium.errors import ConfigError
from mycelium.mesh.report import group_colours, print_summary, summary_json, write_report, write_summary
from mycelium.mesh.state import MeshState
from mycelium.ui.tables import print_line

POLL = 0.25
STOP_GRACE = 6.0
ROUND_INTERVAL_PER_NODE = 0.2  # seconds
MAX_PROCESSES = 64
MAX_PEERS = 512
PR_SET_PDEATHSIG = 1
BOOTSTRAP_PEERS = 3  # listening nodes each new node may bootstrap through (one busy one is not enough)


def add_mesh_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=int, default=10, help="peers to start (default 10)")
    parser.add_argument(
        "--peers-per-process",
        type=int,
        default=1,
        metavar="K",
        help="run K peers in each OS process (default 1: one process per peer). Each peer keeps its "
        "own identity, data dir, event log, host, DHT and gossip and reaches the others over loopback "
        "TCP; a process loads torch and the data set once for its K peers, so 100 peers fit one "
        "machine. Node 0 always runs alone; --kill-at needs K = 1",
    )
    parser.add_argument("--rounds", type=int, default=20, help="rounds each node runs (default 20)")
    parser.add_argument("--dataset", choices=("digits", "mnist"), default="digits", help="default digits")
    parser.add_argument(
        "--partition",
        default="dirichlet:0.5",
        help="iid | dirichlet:ALPHA | rotated:K (default dirichlet:0.5)",
    )
    parser.add_argument("--seed", type=int, default=0, help="partition seed (default 0)")
    parser.add_argument("--model", choices=("mlp", "cnn"), default="mlp", help="default mlp")
    parser.add_argument(
        "--capacity", type=int, default=10, help="capacity of the groups nodes create (default 10)"
    )
    parser.add_argument(
        "--out",
        default="./mycelium-run",
        metavar="DIR",
        help="summary.json, report.png and every node's events (default ./mycelium-run)",
    )
    parser.add_argument(
        "--kill-at",
        action="append",
        default=[],
        metavar="ROUND:COUNT",
        help="SIGKILL COUNT random nodes (never node 0) when a node reaches ROUND; repeatable",
    )
    parser.add_argument(
        "--join-at",
        action="append",
        default=[],
        metavar="ROUND:COUNT",
        help="start COUNT extra nodes when a node reaches ROUND; repeatable",
    )
    parser.add_argument(
        "--round-interval",
        type=float,
        metavar="SECONDS",
        help="every node starts rounds at most this often (default 0.2 s per node: the nodes share "
        "this machine's CPU, and paced rounds leave room for heartbeats, evaluations and moves)",
    )
    parser.add_argument(
        "--node-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for every node, e.g. --node-arg=--codec=int8; repeatable",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        metavar="SECONDS",
        help="stop everything after this long (default 1800)",
    )
    parser.add_argument(
        "--no-live", action="store_true", help="plain progress lines instead of the live view"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print summary.json on stdout at the end and nothing else there (the rest goes to stderr)",
    )
    parser.add_argument(
        "--web",
        metavar="[HOST:]PORT",
        help="also run `mycelium watch` on the mesh and serve its explorer page here "
        "(PORT alone means 127.0.0.1:PORT; 0 picks a free port)",
    )


def _churn(items: list[str], flag: str) -> list[tuple[int, int]]:
    plan = []
    for item in items:
        round_text, _, count_text = item.partition(":")
        try:
            plan.append((int(round_text), int(count_text)))
        except ValueError:
            raise ConfigError(f"{flag} {item!r} must look like ROUND:COUNT, e.g. 10:2") from None
    return sorted(plan)


def process_count(nodes: int, per_process: int) -> int:
    """OS processes for `nodes` peers: node 0 alone (the first bootstrap peer), the rest K a process."""
    return 1 + len(batches(nodes, per_process))


def batches(nodes: int, per_process: int) -> list[range]:
    """Indices 1..`nodes - 1`, one process each run: runs of `per_process` counted from node 0, so
    that the first (node 0 runs alone) is one short and, with K = capacity, node 0 and the first
    process fill one group, the next process the next group."""
    runs = (range(max(start, 1), min(start + per_process, nodes)) for start in range(0, nodes, per_process))
    return [run for run in runs if run]


def waves(processes: list[range], size: int) -> list[list[range]]:
    """The processes in start order, grouped so that each wave brings at least `size` peers, node 0
    counted in the first; the last wave may bring fewer."""
    grouped: list[list[range]] = [[]]
    count = 1  # node 0
    for indices in processes:
        if count >= size:
            grouped.append([])
            count = 0
        grouped[-1].append(indices)
        count += len(indices)
    return [wave for wave in grouped if wave]


@dataclass
class Child:
    """One peer; peers of one process share `process` (and its stderr log)."""

    index: int
    process: subprocess.Popen[bytes]
    events: Path
    stderr: Path
    offset: int = 0
    killed: bool = False
    reported: bool = False
    addr: str = ""


def die_with_parent() -> None:
    """preexec_fn for children that must not outlive this process (Linux)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _check_sizes(args: argparse.Namespace) -> None:
    if args.peers_per_process < 1:
        raise ConfigError("--peers-per-process must be at least 1")
    processes = process_count(args.nodes, args.peers_per_process)
    if not 1 <= args.nodes <= MAX_PEERS or processes > MAX_PROCESSES:
        raise ConfigError(
            f"--nodes must be between 1 and {MAX_PROCESSES} (up to {MAX_PEERS} with "
            f"--peers-per-process: at most {MAX_PROCESSES} processes)"
        )
    if args.kill_at and args.peers_per_process > 1:
        raise ConfigError("--kill-at kills processes: use it with --peers-per-process 1")
    if args.rounds < 1:
        raise ConfigError("--rounds must be at least 1")


class Mesh:
    """One `mycelium mesh` run: its children, their churn, the live view and the summary.

    It is long because starting, pacing, churning and stopping the children share their state."""

    def __init__(self, args: argparse.Namespace) -> None:
        from mycelium.learn.data import parse_partition

        _check_sizes(args)
        self.args = args
        self.partition = parse_partition(args.partition)
        self.kills = _churn(args.kill_at, "--kill-at")
        self.joins = _churn(args.join_at, "--join-at")
        self.round_interval = (
            ROUND_INTERVAL_PER_NODE * args.nodes if args.round_interval is None else args.round_interval
        )
        self.total = args.nodes + sum(count for _, count in self.joins)
        self.out = Path(args.out)
        self.children: dict[int, Child] = {}
        self.gated: set[subprocess.Popen[bytes]] = set()  # loaded, waiting for their wave
        self.explorer = Explorer(self.out, _web_address(args.web)) if args.web else None
        self.state = MeshState()
        self.rng = random.Random(args.seed)
        self.console = Console(stderr=args.json)  # with --json stdout holds the JSON alone
        self.started = time.time()
        self.title = (
            f"mycelium mesh: {args.nodes} nodes, {args.dataset} {args.partition}, {args.rounds} rounds"
        )

    # --- children -------------------------------------------------------------------------------

    def _node_args(self, index: int, bootstrap: list[str], rounds: int, hold: bool) -> list[str]:
        args = self.args
        node_dir = self.out / "nodes" / f"node-{index}"
        command = [
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--data-dir",
            str(node_dir / "data"),
            "--events",
            str(node_dir / "events.jsonl"),
            "--dataset",
            args.dataset,
            "--partition",
            args.partition,
            "--model",
            args.model,
            "--shard",
            f"{index}/{self.total}",
            "--seed",
            str(args.seed),
            "--rounds",
            str(rounds),
            "--capacity",
            str(args.capacity),
        ]
        if self.round_interval > 0:
            command += ["--round-interval", str(self.round_interval)]
        if hold:
            command.append("--hold")  # released together once every node is in a group
        for addr in bootstrap:
            command += ["--bootstrap", addr]
        return command + list(args.node_arg)

    def _start(self, index: int, rounds: int, hold: bool = False) -> Child:
        return self._start_process(range(index, index + 1), rounds, hold)[0]

    def _start_process(
        self, indices: range, rounds: int, hold: bool = False, gated: bool = False
    ) -> list[Child]:
        """One OS process for the peers `indices`: `mycelium node` for one, ui/peers.py for more
        (and for a `gated` one: it loads, then waits for `_open_gate`)."""
        argvs = []
        for index in indices:
            node_dir = self.out / "nodes" / f"node-{index}"
            (node_dir / "data").mkdir(parents=True, exist_ok=True)
            (node_dir / "events.jsonl").unlink(missing_ok=True)
            argvs.append(self._node_args(index, [] if gated else self._bootstrap_peers(), rounds, hold))
        first_dir = self.out / "nodes" / f"node-{indices[0]}"
        if len(indices) == 1 and not gated:
            command = [sys.executable, "-m", "mycelium", "node", *argvs[0]]
        else:
            from mycelium.mesh.peers import peer_spec

            spec = first_dir / "peers.json"
            spec.write_text(peer_spec(argvs, wait_for_start=gated))
            command = [sys.executable, "-m", "mycelium.ui.peers", str(spec)]
        stderr_path = first_dir / "stderr.log"  # the process's: shared by its peers
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                command,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                stdin=subprocess.PIPE if gated else subprocess.DEVNULL,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - only libc prctl, before exec
            )
        if gated:
            self.gated.add(process)
        started = []
        for index in indices:
            events = self.out / "nodes" / f"node-{index}" / "events.jsonl"
            child = Child(index, process, events, stderr_path)
            self.children[index] = child
            self.state.add_node(index, shard=index, rotation=self.partition.rotation_of(index))
            started.append(child)
        return started

    def _bootstrap_peers(self) -> list[str]:
        listening = [c for c in self.children.values() if c.addr and c.process.poll() is None]
        return [c.addr for c in self.rng.sample(listening, min(BOOTSTRAP_PEERS, len(listening)))]

    def _open_gate(self, process: subprocess.Popen[bytes]) -> None:
        """Let a gated process start its peers, each with bootstrap peers that listen now."""
        from mycelium.mesh.peers import start_line

        peers = sum(1 for c in self.children.values() if c.process is process)
        line = start_line([self._bootstrap_peers() for _ in range(peers)])
        self.gated.discard(process)
        if process.stdin is not None:
            with contextlib.suppress(OSError):  # it exited meanwhile: the poll reports it
                process.stdin.write(line)
                process.stdin.close()

    def _processes(self) -> list[subprocess.Popen[bytes]]:
        """Every OS process once, however many peers it runs."""
        return list({id(c.process): c.process for c in self.children.values()}.values())

    def _read_events(self) -> None:
        for child in self.children.values():
            if not child.events.exists():
                continue
            with child.events.open("rb") as handle:
                handle.seek(child.offset)
                chunk = handle.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            child.offset += len(complete)
            for line in complete.splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("event") == "listening" and event.get("addrs"):
                    child.addr = event["addrs"][0]
                self.state.apply(child.index, event)
            code = child.process.poll()
            if code is not None and not child.reported:
                child.reported = True
                self.state.mark_exit(child.index, code, child.killed)

    def _wait_for(self, child: Child, kind: str, timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            self._read_events()
            node = self.state.nodes[child.index]
            if (kind == "listening" and child.addr) or (kind == "joined" and node.group):
                return
            if child.process.poll() is not None:
                raise ConfigError(f"node {child.index} exited early; see {child.stderr}")
            time.sleep(POLL)
        raise ConfigError(f"node {child.index} did not report '{kind}' within {timeout:.0f} s")

    def _wait_until_holding(self, live: Live | None) -> None:
        """Until every running node holds a group (at --hold), or for 60 s + 6 s a node: a wave of
        newcomers then finds the groups the earlier ones formed, instead of every peer asking the
        first group's leader at once (on 2 cores, 99 at once got few answers in time)."""
        deadline = time.time() + 60 + 6 * len(self.children)
        while time.time() < deadline:
            self._read_events()
            waiting = [
                self.state.nodes[c.index]
                for c in self.children.values()
                if c.process.poll() is None
                and c.process not in self.gated
                and self.state.nodes[c.index].status != "exited"
            ]
            if all(node.holding for node in waiting):
                return
            if live:
                live.update(self._view())
            time.sleep(POLL)

    def _wave_size(self) -> int:
        """Shared processes bring their peers up within a second of each other: a wave of one group's
        capacity (its overflow creates the group the next wave joins). One process a peer comes up
        over tens of seconds on its own (each imports torch): all at once; waves made 30 of them
        reach round 0 in 114 s instead of 78-86 s (benchmarks/RESULTS.md, "Third pass")."""
        return self.args.capacity if self.args.peers_per_process > 1 else self.args.nodes

    def _start_in_waves(self, live: Live | None) -> None:
        """Start nodes 1.. wave by wave; each wave's processes load (torch, data) while the wave
        before forms its groups, and start their peers once it has (2.5-4.5 s of imports saved a
        wave on 2 cores)."""
        planned = waves(batches(self.args.nodes, self.args.peers_per_process), self._wave_size())
        loading: list[subprocess.Popen[bytes]] = []
        for number, wave in enumerate(planned):
            if number:
                self._wait_until_holding(live)  # the earlier waves are in their groups
                for process in loading:
                    self._open_gate(process)
            else:
                for indices in wave:
                    self._start_process(indices, self.args.rounds, hold=True)
            following = planned[number + 1] if number + 1 < len(planned) else []
            loading = [
                self._start_process(indices, self.args.rounds, hold=True, gated=True)[0].process
                for indices in following
            ]
            self._read_events()

    def _release_together(self, live: Live | None) -> None:
        """Start every node's first round at once, when all are in a group (or after a timeout)."""
        self._wait_until_holding(live)
        for process in self._processes():
            if process.poll() is None:
                process.send_signal(signal.SIGUSR1)
        released = f"released {len(self.children)} nodes after {time.time() - self.started:.0f} s"
        self.state.log.append(released)
        if live is None:
            print_line(self.console, f"mycelium mesh: {released}")

    def _apply_churn(self) -> None:
        reached = self.state.max_round() + 1  # rounds completed by the most advanced node
        while self.kills and reached >= self.kills[0][0]:
            _, count = self.kills.pop(0)
            alive = [c for c in self.children.values() if c.index != 0 and c.process.poll() is None]
            for victim in self.rng.sample(alive, min(count, len(alive))):
                victim.killed = True
                victim.process.send_signal(signal.SIGKILL)
        while self.joins and reached >= self.joins[0][0]:
            _, count = self.joins.pop(0)
            for _ in range(count):
                self._start(len(self.children), max(1, self.args.rounds - reached))

    def _running(self) -> bool:
        return any(child.process.poll() is None for child in self.children.values())

    def _task(self) -> str:
        node_args = list(self.args.node_arg)
        for i, arg in enumerate(node_args):
            if arg.startswith("--task="):
                return arg.split("=", 1)[1]
            if arg == "--task" and i + 1 < len(node_args):
                return node_args[i + 1]
        return f"{self.args.dataset}-{self.args.model}"

    def _stop_all(self) -> None:
        if self.explorer:
            self.explorer.stop()
        processes = self._processes()
        for process in processes:  # once each: a second SIGTERM would find trio's handler gone
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.time() + STOP_GRACE
        for process in processes:
            try:
                process.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    # --- the run --------------------------------------------------------------------------------

    def run(self) -> int:
        from mycelium.learn.data import load_dataset

        self.out.mkdir(parents=True, exist_ok=True)
        load_dataset(self.args.dataset)  # fails fast if missing, and warms the MNIST cache for the nodes
        outcome = "finished"
        live = (
            None
            if self.args.no_live or not self.console.is_terminal
            else Live(self._view(), console=self.console, refresh_per_second=4, transient=False)
        )
        try:
            if live:
                live.start()
            first = self._start(0, self.args.rounds, hold=True)
            self._wait_for(first, "listening", 90)
            if self.explorer:
                url = self.explorer.start(first.addr, self._task())
                self.state.log.append(f"explorer at {url}")
                print(f"mycelium mesh: explorer at {url}", file=sys.stderr, flush=True)
            self._wait_for(first, "joined", 120)
            self._start_in_waves(live)
            self._release_together(live)
            last_line = 0.0
            while self._running():
                if time.time() - self.started > self.args.timeout:
                    outcome = "timeout"
                    break
                self._read_events()
                self._apply_churn()
                if live:
                    live.update(self._view())
                elif time.time() - last_line > 5:
                    last_line = time.time()
                    print_line(self.console, self._progress_line())
                time.sleep(POLL)
        except KeyboardInterrupt:
            outcome = "interrupted"
        finally:
            self._stop_all()
            self._read_events()
            if live:
                live.update(self._view())
                live.stop()
            self._finish(outcome)
        failed = [c for c in self.children.values() if not c.killed and c.process.returncode not in (0, None)]
        if outcome == "interrupted":
            return 130
        return 1 if outcome == "timeout" or failed else 0

    def _finish(self, outcome: str) -> None:
        elapsed = time.time() - self.started
        extra = {
            "outcome": outcome,
            "elapsed_s": round(elapsed, 1),
            "command": " ".join(sys.argv),
            "options": {k: v for k, v in vars(self.args).items() if k != "run"},
            "explorer": self.explorer.url if self.explorer else None,
        }
        summary = write_summary(self.state, self.out, extra)
        report = write_report(self.state, self.out, self.title)
        print_summary(self.state, f"{self.title} — {outcome} after {elapsed:.0f} s", self.console)
        print_line(
            self.console, f"wrote {summary}, {report} and each node's events under {self.out / 'nodes'}"
        )
        if self.args.json:
            print(summary_json(self.state, extra), flush=True)

    def _progress_line(self) -> str:
        summary = self.state.summary()
        return (
            f"[{time.time() - self.started:5.0f} s] round {self.state.max_round() + 1}/{self.args.rounds}, "
            f"mean accuracy {summary['mean_accuracy']}, groups {len(summary['groups'])}, "
            f"running {sum(c.process.poll() is None for c in self.children.values())}"
        )

    def _view(self) -> Group:
        colours = group_colours(self.state)
        nodes = Table(title=self.title, expand=True)
        for column in ("node", "rot", "group", "round", "accuracy", "peers", "MB in/out", "status"):
            nodes.add_column(column, justify="left" if column in ("group", "status") else "right")
        for node in sorted(self.state.nodes.values(), key=lambda n: n.index):
            colour = colours.get(node.group, "white")
            nodes.add_row(
                str(node.index),
                f"{90 * node.rotation}°",
                f"[{colour}]{node.group[:8] or '-'}[/]",
                str(node.round + 1),
                "-" if node.accuracy != node.accuracy else f"{node.accuracy:.3f}",
                str(node.peers),
                f"{node.bytes_in / 1e6:.1f}/{node.bytes_out / 1e6:.1f}",
                node.status,
            )
        groups = Table(title="groups", expand=True)
        for column in ("group", "members", "nodes", "model accuracy"):
            groups.add_column(column)
        for group, members in sorted(self.state.groups().items()):
            accuracies = [m.accuracy for m in members if m.accuracy == m.accuracy]
            groups.add_row(
                f"[{colours.get(group, 'white')}]{group[:8]}[/]",
                str(len(members)),
                " ".join(str(m.index) for m in sorted(members, key=lambda m: m.index)),
                f"{sum(accuracies) / len(accuracies):.3f}" if accuracies else "-",
            )
        log = Panel("\n".join(self.state.log) or "(no events yet)", title="joins and migrations")
        return Group(nodes, groups, log)


def _web_address(text: str) -> str:
    address = f"127.0.0.1:{text}" if text.isdigit() else text
    from mycelium.watch.web import parse_web_address

    parse_web_address(address)
    return address


class Explorer:
    """`mycelium watch --web` on the mesh: an observer process like any outside user would run."""

    def __init__(self, out: Path, address: str) -> None:
        self.address = address
        self.log = out / "watch.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, bootstrap: str, task: str, timeout: float = 60.0) -> str:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mycelium",
                    "watch",
                    "--bootstrap",
                    bootstrap,
                    "--task",
                    task,
                    "--web",
                    self.address,
                    "--listen",
                    "/ip4/127.0.0.1/tcp/0",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - only libc prctl, before exec
            )
        deadline = time.time() + timeout
        while time.time() < deadline:
            for line in self.log.read_text(errors="replace").splitlines():
                if "explorer at " in line:
                    self.url = line.rsplit("explorer at ", 1)[1].strip()
                    return self.url
            if self.process.poll() is not None:
                break
            time.sleep(POLL)
        self.stop()
        tail = self.log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise ConfigError(f"the explorer did not start on {self.address}: {tail[0]} (see {self.log})")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def run_mesh_command(args: argparse.Namespace) -> int:
    return Mesh(args).run()
