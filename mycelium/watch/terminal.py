"""`mycelium watch` without `--web`: the same picture in the terminal (Rich), or as plain lines.

On a terminal it redraws in place (groups, peers, recent happenings); when stdout is not a terminal
it prints one line per happening and a short status line every `PLAIN_EVERY` seconds, so that a log
file stays readable.
"""

from __future__ import annotations

from typing import Any

import trio
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from mycelium.watch.observer import Observer
from mycelium.watch.web import picture

REDRAW_EVERY = 0.5
PLAIN_EVERY = 10.0
SHOWN_HAPPENINGS = 12


def _accuracy(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def render(view: dict[str, Any]) -> Group:
    peers = {p["id"]: p for p in view["peers"]}
    groups = Table(title=f"mycelium watch: task {view['task']} ({view['status']})", expand=True)
    for column in ("group", "name", "members", "leader", "round", "advertised", "measured", "policy"):
        groups.add_column(column, justify="right" if column in ("members", "round") else "left")
    for group in view["groups"]:
        groups.add_row(
            group["id"][:8],
            group["name"] or "-",
            f"{len(group['members'])}/{group['capacity']}",
            group["leader"][-6:],
            str(group["round"]),
            _accuracy(group["advertised"]),
            _accuracy(group["measured"]),
            group["policy"] + ("" if group["followed"] else " (records only)"),
        )
    silent = [p for p in peers.values() if p["silent"]]
    members = Table(title=f"peers ({len(peers)}, {len(silent)} silent)", expand=True)
    for column in ("peer", "group", "round", "reported accuracy", "MB in/out", "moves", "heard"):
        members.add_column(column)
    for peer in sorted(peers.values(), key=lambda p: (p["group"], p["id"])):
        members.add_row(
            peer["short"],
            peer["group"][:8] or "-",
            str(peer["round"] + 1 if peer["round"] >= 0 else "-"),
            _accuracy(peer["accuracy"]),
            f"{peer['bytes_in'] / 1e6:.1f}/{peer['bytes_out'] / 1e6:.1f}",
            str(peer["migrations"]),
            "silent"
            if peer["silent"]
            else f"{peer['quiet_s']:.0f} s ago"
            if peer["quiet_s"] is not None
            else "-",
        )
    happenings = Table(title="recent", expand=True, show_header=False)
    happenings.add_column("what")
    for happening in view["happenings"][-SHOWN_HAPPENINGS:]:
        happenings.add_row(happening["text"])
    return Group(groups, members, happenings)


def status_line(view: dict[str, Any]) -> str:
    groups = ", ".join(
        f"{g['id'][:8]} {len(g['members'])} members round {g['round']} measured {_accuracy(g['measured'])}"
        for g in view["groups"]
    )
    silent = sum(p["silent"] for p in view["peers"])
    return (
        f"{len(view['groups'])} groups, {len(view['peers'])} peers ({silent} silent): {groups or 'none yet'}"
    )


async def show_in_terminal(observer: Observer, console: Console | None = None) -> None:
    """Redraw the picture in place on a terminal; print lines otherwise."""
    console = console or Console()
    if not console.is_terminal:
        await print_lines(observer)
        return
    with Live(render(picture(observer)), console=console, refresh_per_second=4) as live:
        while True:
            with trio.move_on_after(REDRAW_EVERY):
                await observer.changed.wait()
            live.update(render(picture(observer)))


async def print_lines(observer: Observer) -> None:
    """One line per happening, and a status line every PLAIN_EVERY seconds."""
    printed = 0.0
    seen = 0
    while True:
        view = picture(observer)
        for happening in view["happenings"]:
            if happening["seq"] > seen:
                print(happening["text"], flush=True)
        if view["happenings"]:
            seen = view["happenings"][-1]["seq"]
        if observer.clock() - printed >= PLAIN_EVERY:
            printed = observer.clock()
            print(status_line(view), flush=True)
        with trio.move_on_after(PLAIN_EVERY):
            await observer.changed.wait()
