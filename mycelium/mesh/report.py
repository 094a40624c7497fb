"""The end of a mesh run: summary table, summary.json and report.png."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mycelium.mesh.state import MeshState
from mycelium.ui.tables import print_line, print_table

PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]


def group_colours(state: MeshState) -> dict[str, str]:
    """A stable colour per group, in order of first appearance."""
    seen: list[str] = []
    for node in sorted(state.nodes.values(), key=lambda n: n.index):
        for _, _, group in node.history:
            if group not in seen:
                seen.append(group)
    return {group: PALETTE[i % len(PALETTE)] for i, group in enumerate(seen)}


def summary_table(state: MeshState, title: str) -> Table:
    table = Table(title=title)
    for column in (
        "node",
        "rotation",
        "peer",
        "group",
        "rounds",
        "accuracy",
        "local acc",
        "migrations",
        "MB in",
        "MB out",
        "status",
    ):
        table.add_column(column, justify="left" if column in ("peer", "group", "status") else "right")
    for node in sorted(state.nodes.values(), key=lambda n: n.index):
        table.add_row(
            str(node.index),
            f"{90 * node.rotation}°",
            node.peer_id[-8:],
            node.group[:8],
            str(node.rounds),
            _fmt(node.accuracy),
            _fmt(node.local_accuracy),
            str(node.migrations),
            f"{node.bytes_in / 1e6:.2f}",
            f"{node.bytes_out / 1e6:.2f}",
            node.status,
        )
    return table


def _fmt(value: float) -> str:
    return "-" if value != value else f"{value:.4f}"  # as in summary.json


def summary_json(state: MeshState, extra: dict[str, Any]) -> str:
    """summary.json's text, which `mycelium mesh --json` also prints."""
    return json.dumps({**extra, **state.summary()}, indent=2)


def write_summary(state: MeshState, out: Path, extra: dict[str, Any]) -> Path:
    path = out / "summary.json"
    path.write_text(summary_json(state, extra))
    return path


def write_report(state: MeshState, out: Path, title: str) -> Path:
    """Accuracy per node over rounds, coloured by the node's group in that round; migrations marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    colours = group_colours(state)
    figure, axis = plt.subplots(figsize=(10, 6), dpi=110)
    for node in sorted(state.nodes.values(), key=lambda n: n.index):
        history = node.history
        for (r0, a0, g0), (r1, a1, _) in zip(history, history[1:], strict=False):
            axis.plot([r0, r1], [a0, a1], color=colours.get(g0, "grey"), linewidth=1.2, alpha=0.8)
        if len(history) == 1:
            axis.scatter([history[0][0]], [history[0][1]], color=colours.get(history[0][2], "grey"), s=8)
        if history and sum(n.history[-1:] == history[-1:] for n in state.nodes.values()) == 1:
            axis.annotate(
                str(node.index),
                (history[-1][0], history[-1][1]),
                fontsize=7,
                xytext=(3, 0),
                textcoords="offset points",
            )  # label a line's end unless others end there too
        for round_number, _, target in node.moves:
            accuracy = next((a for r, a, _ in history if r >= round_number), history[-1][1] if history else 0)
            axis.scatter(
                [round_number],
                [accuracy],
                marker="*",
                s=90,
                color=colours.get(target, "black"),
                edgecolors="black",
                linewidths=0.5,
                zorder=5,
            )
    for group, colour in colours.items():
        axis.plot([], [], color=colour, label=f"group {group[:8]}")
    if any(node.moves for node in state.nodes.values()):
        axis.scatter([], [], marker="*", s=90, color="white", edgecolors="black", label="migration")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("round")
    axis.set_ylabel("test accuracy")
    axis.set_ylim(0, 1)
    axis.grid(alpha=0.3)
    axis.set_title(title)
    axis.legend(loc="lower right", fontsize=8)
    path = out / "report.png"
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def print_summary(state: MeshState, title: str, console: Console | None = None) -> None:
    console = console or Console()
    print_table(console, summary_table(state, title))  # whole cells when piped, too
    summary = state.summary()
    print_line(
        console,
        f"mean accuracy {summary['mean_accuracy']}, min {summary['min_accuracy']}, "
        f"groups {len(summary['groups'])}, migrations {summary['migrations']}"
        + (f", purity {summary['purity']}" if summary["purity"] is not None else ""),
    )
