"""`mycelium mesh --peers-per-process K`: several real peers in one OS process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mycelium.errors import ConfigError
from mycelium.mesh.launcher import Mesh, batches, process_count, waves
from mycelium.mesh.peers import PeerSpec, peer_spec, read_spec, start_line, with_start_line
from mycelium.node.runner import ExitDeadline
from mycelium.ui.cli import main_parser


@pytest.mark.parametrize(
    ("nodes", "per_process", "processes"),
    [(1, 1, 1), (1, 10, 1), (4, 1, 4), (4, 2, 3), (30, 10, 4), (100, 10, 11), (100, 25, 5), (100, 99, 3)],
)
def test_node_0_runs_alone_and_the_rest_k_a_process(nodes: int, per_process: int, processes: int) -> None:
    assert process_count(nodes, per_process) == processes
    assert len(batches(nodes, per_process)) + 1 == processes


@pytest.mark.parametrize(
    ("nodes", "per_process", "expected"),
    [
        (4, 2, [[1], [2, 3]]),
        (2, 5, [[1]]),
        (1, 3, []),
        (4, 1, [[1], [2], [3]]),
        (9, 3, [[1, 2], [3, 4, 5], [6, 7, 8]]),
    ],
)
def test_batches_cover_every_index_once_in_runs_counted_from_node_0(
    nodes: int, per_process: int, expected: list[list[int]]
) -> None:
    assert [list(batch) for batch in batches(nodes, per_process)] == expected


@pytest.mark.parametrize(
    ("nodes", "per_process", "capacity", "sizes"),
    [
        (10, 1, 10, [9]),  # the README's mesh: one wave, as before
        (30, 1, 10, [9, 10, 10]),  # node 0 and the first wave fill the first group
        (30, 10, 10, [9, 10, 10]),
        (100, 25, 10, [24, 25, 25, 25]),  # a process is never split
        (100, 4, 10, [11, 12, 12, 12, 12, 12, 12, 12, 4]),
        (2, 1, 10, [1]),
        (1, 1, 10, []),
    ],
)
def test_waves_bring_at_least_size_peers_each_and_never_split_a_process(
    nodes: int, per_process: int, capacity: int, sizes: list[int]
) -> None:
    processes = batches(nodes, per_process)
    grouped = waves(processes, capacity)
    assert [sum(map(len, wave)) for wave in grouped] == sizes
    assert [p for wave in grouped for p in wave] == processes


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--nodes", "65"], "between 1 and 64"),
        (["--nodes", "100", "--peers-per-process", "1"], "between 1 and 64"),
        (["--nodes", "600", "--peers-per-process", "20"], "up to 512"),
        (["--nodes", "10", "--peers-per-process", "0"], "at least 1"),
        (["--nodes", "10", "--peers-per-process", "2", "--kill-at", "3:1"], "--kill-at kills processes"),
    ],
)
def test_mesh_refuses_what_it_cannot_run(tmp_path: Path, flags: list[str], message: str) -> None:
    args = main_parser().parse_args(["mesh", "--out", str(tmp_path), *flags])
    with pytest.raises(ConfigError, match=message):
        Mesh(args)


def test_a_hundred_peers_ten_a_process_are_accepted(tmp_path: Path) -> None:
    args = main_parser().parse_args(
        ["mesh", "--out", str(tmp_path), "--nodes", "100", "--peers-per-process", "10"]
    )
    assert Mesh(args).total == 100


def test_a_peer_spec_reads_back_as_written() -> None:
    argvs = [["--data-dir", "a", "--events", "a.jsonl"], ["--data-dir", "b", "--events", "b.jsonl"]]
    assert read_spec(peer_spec(argvs)).argvs == argvs
    assert read_spec(peer_spec(argvs, wait_for_start=True)) == PeerSpec(argvs, wait_for_start=True)


def test_a_start_line_gives_each_waiting_peer_its_bootstrap_peers() -> None:
    spec = PeerSpec([["--events", "a.jsonl"], ["--events", "b.jsonl"]], wait_for_start=True)
    line = start_line(
        [["/ip4/127.0.0.1/tcp/1/p2p/A"], ["/ip4/127.0.0.1/tcp/2/p2p/B", "/ip4/127.0.0.1/tcp/3/p2p/C"]]
    )
    assert with_start_line(spec, line.decode()) == [
        ["--events", "a.jsonl", "--bootstrap", "/ip4/127.0.0.1/tcp/1/p2p/A"],
        [
            "--events",
            "b.jsonl",
            "--bootstrap",
            "/ip4/127.0.0.1/tcp/2/p2p/B",
            "--bootstrap",
            "/ip4/127.0.0.1/tcp/3/p2p/C",
        ],
    ]


@pytest.mark.parametrize("line", ["", "start", '{"bootstrap": [[]]}', '{"bootstrap": "x"}'])
def test_a_bad_start_line_is_one_clear_error(line: str) -> None:
    spec = PeerSpec([["--events", "a.jsonl"], ["--events", "b.jsonl"]], wait_for_start=True)
    with pytest.raises(ConfigError, match="start line"):
        with_start_line(spec, line)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        '{"peers": []}',
        '{"peers": "x"}',
        '{"peers": [1]}',
        '{"x": 1}',
        '{"peers": [[]], "wait_for_start": 1}',
    ],
)
def test_a_bad_peer_spec_is_one_clear_error(text: str) -> None:
    with pytest.raises(ConfigError, match="peers spec"):
        read_spec(text)


class NoEvents:
    def emit(self, event: str, **fields: object) -> None:
        pass


def test_the_exit_deadline_of_a_shared_process_waits_for_its_last_peer() -> None:
    deadline = ExitDeadline([NoEvents(), NoEvents()], seconds=60.0, expected=2)  # type: ignore[list-item]
    deadline.on_event({"event": "finished"})
    assert deadline._timer is None  # one peer done: the other is still learning
    deadline.on_event({"event": "round"})
    assert deadline._timer is None
    deadline.on_event({"event": "finished"})
    assert deadline._timer is not None
    deadline.cancel()


def test_four_peers_two_a_process_each_train_and_log_their_own_events(tmp_path: Path) -> None:
    """Groups of two: node 0 and node 1 are the first wave; nodes 2 and 3 share a process that
    loads while the first wave forms and starts on its start line."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "mycelium", "mesh", "--nodes", "4", "--peers-per-process", "2"]
    command += ["--capacity", "2"]
    result = subprocess.run(
        [*command, "--rounds", "3", "--out", str(out), "--json"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["outcome"] == "finished"
    assert len({n["peer_id"] for n in summary["nodes"]}) == 4
    for node in summary["nodes"]:
        assert node["rounds"] >= 3 and node["status"] == "finished" and node["exit_code"] == 0
    shared = read_spec((out / "nodes" / "node-2" / "peers.json").read_text())  # nodes 2 and 3: one process
    assert shared.wait_for_start
    assert [argv[argv.index("--data-dir") + 1] for argv in shared.argvs] == [
        str(out / "nodes" / f"node-{i}" / "data") for i in (2, 3)
    ]
    assert sorted(map(len, summary["groups"].values())) == [2, 2]  # the second wave found the first full
    for index in range(4):
        lines = (out / "nodes" / f"node-{index}" / "events.jsonl").read_text().splitlines()
        events = [json.loads(line) for line in lines]
        listening = [e for e in events if e["event"] == "listening"]
        assert len(listening) == 1  # one peer's events only, in its own file
        assert listening[0]["peer_id"] == summary["nodes"][index]["peer_id"]
        assert len([e for e in events if e["event"] == "round"]) >= 3
        assert [e["event"] for e in events].count("finished") == 1
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_peer_of_a_shared_process_that_cannot_bootstrap_says_why_and_the_other_finishes(
    tmp_path: Path,
) -> None:
    def peer(name: str, *extra: str) -> list[str]:
        data = tmp_path / name
        return [
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--data-dir",
            str(data),
            "--events",
            f"{data}.jsonl",
            *extra,
        ]

    unreachable = "/ip4/127.0.0.1/tcp/9/p2p/12D3KooWLmfv8zNGa7SFJjMViGMwJPGCESjNTZ7HxnPjjsbJmknN"
    spec = tmp_path / "peers.json"
    spec.write_text(
        peer_spec(
            [
                peer("lost", "--bootstrap", unreachable, "--bootstrap-timeout", "2"),
                peer("alone", "--rounds", "1"),
            ]
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "mycelium.ui.peers", str(spec)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "peer 0" in result.stderr and "could not reach any bootstrap peer" in result.stderr
    lost = [json.loads(line) for line in (tmp_path / "lost.jsonl").read_text().splitlines()]
    assert lost[-1]["event"] == "failed" and "could not reach any bootstrap peer" in lost[-1]["error"]
    alone = [json.loads(line)["event"] for line in (tmp_path / "alone.jsonl").read_text().splitlines()]
    assert "finished" in alone
