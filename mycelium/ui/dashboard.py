"""`mycelium-node --dashboard`: a live Rich view of one node.

A snapshot of the node's state is taken a few times a second (cheap reads, no I/O) and rendered by
pure functions, so the view never slows training. When stdout is not a terminal the dashboard
prints plain log lines instead.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import trio
from rich.console import Console, RenderableType
from rich.layout import Layout
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from mycelium.node.runner import RunningNode
from mycelium.policy.peers import in_peer_order

REFRESH_HZ = 4
PLAIN_EVERY = 5.0
SPARK = "▁▂▃▄▅▆▇█"
EVENT_LINES = 8
SPARK_WIDTH = 30


@dataclass(frozen=True)
class MemberRow:
    peer: str
    me: bool
    leader: bool
    last_seen_s: float
    round: int
    accuracy: float


@dataclass(frozen=True)
class CandidateRow:
    group: str
    members: int
    advertised: float
    measured: float


@dataclass(frozen=True)
class Snapshot:
    peer_id: str
    addrs: tuple[str, ...]
    uptime_s: float
    peers: int
    routing_table: int
    stored_records: int
    bytes_in: int
    bytes_out: int
    learns: bool = False
    rate_in: float = 0.0
    rate_out: float = 0.0
    group: str = ""
    group_name: str = ""
    capacity: int = 0
    members: tuple[MemberRow, ...] = ()
    round: int = 0
    phase: str = ""
    announced: int = 0
    contributed: int = 0
    accuracy: tuple[float, ...] = ()
    loss: tuple[float, ...] = ()
    candidates: tuple[CandidateRow, ...] = ()
    events: tuple[str, ...] = field(default=())


def take_snapshot(node: RunningNode, started: float, rates: tuple[float, float] = (0.0, 0.0)) -> Snapshot:
    stack, now = node.stack, time.time()
    base = {
        "peer_id": str(stack.peer_id),
        "addrs": tuple(stack.listen_addrs()),
        "uptime_s": now - started,
        "peers": len(stack.connected_peers()),
        "routing_table": stack.dht.get_routing_table_size(),
        "stored_records": stack.dht.get_value_store_size(),
        "bytes_in": node.traffic.bytes_in,
        "bytes_out": node.traffic.bytes_out,
        "rate_in": rates[0],
        "rate_out": rates[1],
        "events": tuple(_describe(e) for e in list(node.events.recent)[-EVENT_LINES:]),
    }
    learning = node.learning
    session = learning.session if learning else None
    if learning is None or session is None:
        return Snapshot(**base, learns=learning is not None)
    membership = session.membership
    me, live = stack.peer_id, session.live()
    members = tuple(
        MemberRow(
            peer=str(peer),
            me=peer == me,
            leader=peer == membership.leader,
            last_seen_s=0.0 if peer == me else now - membership.view_of(peer).last_seen,
            round=session.round if peer == me else membership.view_of(peer).round,
            accuracy=session.accuracy if peer == me else membership.view_of(peer).accuracy,
        )
        for peer in in_peer_order(live)
    )
    progress = session.progress
    return Snapshot(
        **base,
        learns=True,
        group=session.group_id,
        group_name=session.record.name,
        capacity=session.record.capacity,
        members=members,
        round=progress.round,
        phase=progress.phase,
        announced=len(progress.announced),
        contributed=len(progress.contributed),
        accuracy=tuple(a for _, a, _ in session.history[-SPARK_WIDTH:]),
        loss=tuple(loss for _, _, loss in session.history[-SPARK_WIDTH:]),
        candidates=tuple(
            CandidateRow(c.group_id, c.members, c.advertised, c.measured) for c in learning.candidates
        ),
    )


def _describe(event: dict) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(event.get("time", 0)))
    details = " ".join(f"{k}={v}" for k, v in event.items() if k not in ("event", "time", "addrs"))
    return f"{stamp} {event.get('event')} {details}"[:160]


def sparkline(values: tuple[float, ...], low: float | None = None, high: float | None = None) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return ""
    low = min(finite) if low is None else low
    high = max(finite) if high is None else high
    span = (high - low) or 1.0
    return "".join(
        SPARK[min(len(SPARK) - 1, max(0, int((v - low) / span * (len(SPARK) - 1))))] for v in finite
    )


def _short(peer: str) -> str:
    return f"…{peer[-8:]}"


def _bytes(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{count:.0f} B"
        count /= 1000
    return ""


def render(snap: Snapshot) -> RenderableType:
    identity = Table.grid(padding=(0, 2))
    identity.add_row("peer id", snap.peer_id)
    identity.add_row("listening", ", ".join(snap.addrs) or "-")
    identity.add_row(
        "network",
        f"peers {snap.peers}   DHT routing table {snap.routing_table}   records held {snap.stored_records}"
        f"   up {int(snap.uptime_s) // 60}m{int(snap.uptime_s) % 60:02d}s",
    )

    if snap.group:
        members = Table(expand=True, box=None)
        for column in ("member", "last heartbeat", "round", "accuracy"):
            members.add_column(column)
        for row in snap.members:
            tag = " (me)" if row.me else ""
            tag += " ★" if row.leader else ""
            members.add_row(
                _short(row.peer) + tag,
                f"{row.last_seen_s:.1f} s ago",
                str(row.round),
                "-" if not math.isfinite(row.accuracy) else f"{row.accuracy:.3f}",
            )
        size = f"{len(snap.members)}/{snap.capacity}"
        group_title = f"group {snap.group[:8]} {snap.group_name} — {size} members (★ leader)"
        group_panel = Panel(members, title=group_title)
        round_text = Text(
            f"round {snap.round}: {snap.phase}\nannounced {snap.announced}/{len(snap.members)}\n"
            f"received {snap.contributed}/{len(snap.members)}"
        )
    else:
        group_panel = Panel(
            "not in a group yet: discovering" if snap.learns else "DHT-only peer", title="group"
        )
        round_text = Text("-")

    last_accuracy = snap.accuracy[-1] if snap.accuracy else float("nan")
    last_loss = snap.loss[-1] if snap.loss else float("nan")
    learning = Text(
        f"accuracy {sparkline(snap.accuracy, 0.0, 1.0)} {last_accuracy:.3f}\n"
        f"loss     {sparkline(snap.loss)} {last_loss:.3f}",
        no_wrap=True,
        overflow="ellipsis",
    )
    traffic = Text(
        f"in  {_bytes(snap.bytes_in)} ({_bytes(snap.rate_in)}/s)\n"
        f"out {_bytes(snap.bytes_out)} ({_bytes(snap.rate_out)}/s)"
    )
    candidates = Table(expand=True, box=None)
    for column in ("candidate group", "members", "advertised", "measured here"):
        candidates.add_column(column)
    for row in snap.candidates:
        candidates.add_row(row.group[:8], str(row.members), f"{row.advertised:.3f}", f"{row.measured:.3f}")

    layout = Layout()
    layout.split_column(
        Layout(Panel(identity, title="mycelium node"), size=5),
        Layout(name="middle", ratio=2),
        Layout(name="lower", size=5),
        Layout(
            Panel(candidates if snap.candidates else Text("none evaluated yet"), title="candidate groups"),
            size=6,
        ),
        Layout(
            Panel(Text("\n".join(snap.events), no_wrap=True, overflow="ellipsis"), title="events"),
            size=EVENT_LINES + 2,
        ),
    )
    layout["middle"].split_row(
        Layout(group_panel, ratio=3), Layout(Panel(round_text, title="round"), ratio=1)
    )
    layout["lower"].split_row(
        Layout(Panel(learning, title="learning")), Layout(Panel(traffic, title="traffic"))
    )
    return layout


def plain_line(snap: Snapshot) -> str:
    accuracy = f"{snap.accuracy[-1]:.3f}" if snap.accuracy else "-"
    group = snap.group[:8] or "-"
    return (
        f"{time.strftime('%H:%M:%S')} peers={snap.peers} dht={snap.routing_table} group={group} "
        f"members={len(snap.members)} round={snap.round} phase={snap.phase or '-'} accuracy={accuracy} "
        f"in={_bytes(snap.bytes_in)} out={_bytes(snap.bytes_out)}"
    )


async def run_dashboard(node: RunningNode, console: Console | None = None) -> None:
    console = console or Console()
    started = time.time()
    previous = (started, 0, 0)

    def snapshot() -> Snapshot:
        nonlocal previous
        now = time.time()
        elapsed = max(now - previous[0], 1e-6)
        rates = (
            (node.traffic.bytes_in - previous[1]) / elapsed,
            (node.traffic.bytes_out - previous[2]) / elapsed,
        )
        previous = (now, node.traffic.bytes_in, node.traffic.bytes_out)
        return take_snapshot(node, started, rates)

    if not console.is_terminal:
        while True:
            print(plain_line(snapshot()), file=sys.stdout, flush=True)
            await trio.sleep(PLAIN_EVERY)
    with Live(render(snapshot()), console=console, refresh_per_second=REFRESH_HZ, screen=True) as live:
        while True:
            await trio.sleep(1 / REFRESH_HZ)
            live.update(render(snapshot()))


def start_dashboard(node: RunningNode) -> None:
    node.stack.nursery.start_soon(run_dashboard, node)
