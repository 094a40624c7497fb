"""Output that is not going to a terminal (a pipe, a file, CI logs) keeps every value whole, and
`mycelium mesh --json` leaves nothing but the summary on stdout."""

from __future__ import annotations

import io
import json

from rich.console import Console
from rich.table import Table

from mycelium.mesh.launcher import Mesh
from mycelium.mesh.report import print_summary, summary_json, write_summary
from mycelium.mesh.state import MeshState
from mycelium.ui.cli import main_parser
from mycelium.ui.tables import plain_table, print_line, print_table

PEER = "12D3KooWHL4YAEKtdUkXSxiQcvJketRmXvMzNLWT1A5sM9fFrGLa"


def piped() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=80), out  # what Rich assumes for a pipe


def ten_node_mesh() -> MeshState:
    state = MeshState()
    for index in range(10):
        state.add_node(index, shard=index, rotation=index % 4)
        state.apply(index, {"event": "listening", "peer_id": PEER, "addrs": []})
        state.apply(index, {"event": "joined", "group": "3f2a9c1d" * 4, "created": index == 0})
        for round_number in range(20):
            state.apply(
                index,
                {
                    "event": "round",
                    "group": "3f2a9c1d" * 4,
                    "round": round_number,
                    "accuracy": 0.93314,
                    "local_accuracy": 0.87512,
                    "bytes_in": 123_456_789,
                    "bytes_out": 98_765_432,
                },
            )
        state.apply(index, {"event": "finished", "rounds": 20, "migrations": 0})
        state.mark_exit(index, 0, killed=False)
    return state


def test_the_mesh_summary_keeps_every_column_whole_when_piped() -> None:
    console, out = piped()
    print_summary(ten_node_mesh(), "mycelium mesh: 10 nodes — finished after 71 s", console)
    text = out.getvalue()
    assert "…" not in text
    header = next(line for line in text.splitlines() if line.startswith("node"))
    for column in ("rotation", "peer", "group", "rounds", "accuracy", "local acc", "migrations", "status"):
        assert column in header
    rows = [line.split() for line in text.splitlines() if line.split() and line.split()[0].isdigit()]
    assert len(rows) == 10
    for row in rows:
        assert row[5:7] == ["0.9331", "0.8751"] and row[-1] == "finished"
        assert row[2] == PEER[-8:] and row[3] == "3f2a9c1d"
        assert row[8:10] == ["2469.14", "1975.31"]  # MB in and out over 20 rounds
    assert "mean accuracy 0.9331, min 0.9331, groups 1, migrations 0" in text


def test_on_a_terminal_the_summary_is_still_a_rich_table() -> None:
    out = io.StringIO()
    print_summary(ten_node_mesh(), "title", Console(file=out, width=200, force_terminal=True))
    assert "┃" in out.getvalue() or "│" in out.getvalue()


def test_a_plain_table_aligns_columns_and_spreads_multi_line_cells() -> None:
    table = Table(title="groups of task digits-mlp")
    table.add_column("group")
    table.add_column("members", justify="right")
    table.add_row("a" * 32, "2/10\n…aaaaaaaa\n…bbbbbbbb")
    table.add_row("b" * 32, "1/10\n…cccccccc")
    assert plain_table(table).splitlines() == [
        "groups of task digits-mlp",
        "group" + " " * 27 + "  " + "  members",  # columns 32 and 9 wide, two spaces apart
        "a" * 32 + "  " + "     2/10",
        " " * 32 + "  " + "…aaaaaaaa",
        " " * 32 + "  " + "…bbbbbbbb",
        "b" * 32 + "  " + "     1/10",
        " " * 32 + "  " + "…cccccccc",
    ]


def test_print_table_takes_cells_literally_off_a_terminal() -> None:
    console, out = piped()
    table = Table()
    table.add_column("name")
    table.add_row("[bold]not markup[/bold]")
    print_table(console, table)
    assert "[bold]not markup[/bold]" in out.getvalue()


def test_the_groups_table_keeps_full_group_ids_when_piped() -> None:
    from libp2p.peer.id import ID

    from mycelium.policy.records import GroupRecord, JoinPolicy, Member, Metrics
    from mycelium.ui.groups_view import print_groups_table

    peer = ID.from_base58(PEER)
    record = GroupRecord(
        group_id="3f2a9c1d" * 4,
        task="digits-mlp",
        name="a group with a rather long name",
        model_fingerprint="mlp:0123456789abcdef",
        policy=JoinPolicy.OPEN,
        capacity=10,
        round=1234,
        members=(Member(peer, 0.0, 0.0),),
        metrics=Metrics(accuracy=0.9331, loss=0.2345, samples=123456, rounds_per_minute=42.5),
        version=7,
        updated_at=100.0,
        expires_at=190.0,
        creator=peer,
        nonce=b"n" * 16,
        leader=peer,
    )
    console, out = piped()
    print_groups_table("digits-mlp", [record], 103.0, console)
    text = out.getvalue()
    assert "…" + PEER[-8:] in text
    for value in ("3f2a9c1d" * 4, "a group with a rather long name", "0.933", "0.234", "123456", "3 s ago"):
        assert value in text, value


def test_a_progress_line_is_never_wrapped() -> None:
    console, out = piped()
    line = "[ 1234 s] round 17/20, mean accuracy 0.9331, groups 3, running 30, and then some more words"
    print_line(console, line)
    assert out.getvalue() == line + "\n"


def test_mesh_json_prints_exactly_summary_json(tmp_path) -> None:  # type: ignore[no-untyped-def]
    state, extra = ten_node_mesh(), {"outcome": "finished", "elapsed_s": 71.0}
    written = write_summary(state, tmp_path, extra)
    assert summary_json(state, extra) == written.read_text()
    assert json.loads(summary_json(state, extra))["nodes"][9]["accuracy"] == 0.9331


def test_with_json_everything_but_the_json_goes_to_stderr(tmp_path) -> None:  # type: ignore[no-untyped-def]
    args = main_parser().parse_args(["mesh", "--nodes", "2", "--out", str(tmp_path), "--json"])
    assert Mesh(args).console.stderr is True
    args = main_parser().parse_args(["mesh", "--nodes", "2", "--out", str(tmp_path)])
    assert Mesh(args).console.stderr is False
