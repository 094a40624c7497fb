"""`mycelium mesh` end to end: files written, and no child process ever outlives it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def children_of(out: Path) -> list[int]:
    """Processes whose command line mentions this run's directory (node processes write there)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if str(out).encode() in command and b"mycelium" in command and b" node " in command:
            found.append(int(entry))
    return found


def test_a_small_mesh_writes_its_summary_and_report_and_leaves_no_process(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "mycelium", "mesh", "--nodes", "4", "--rounds", "5", "--out", str(out)]
        + ["--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["outcome"] == "finished"
    assert [n["index"] for n in summary["nodes"]] == [0, 1, 2, 3]
    for node in summary["nodes"]:
        assert node["rounds"] >= 5 and node["status"] == "finished" and node["exit_code"] == 0
        assert node["peer_id"].startswith("12D3KooW") and node["final_group"]
        assert 0.5 < node["accuracy"] <= 1.0
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all((out / "nodes" / f"node-{i}" / "events.jsonl").exists() for i in range(4))
    assert json.loads(result.stdout) == summary  # --json: stdout holds the summary and nothing else
    assert "mean accuracy" in result.stderr
    rows = [line.split() for line in result.stderr.splitlines() if line.split() and line.split()[0].isdigit()]
    assert [(row[5], row[-1]) for row in rows] == [  # piped, yet every cell whole
        (f"{node['accuracy']:.4f}", "finished") for node in summary["nodes"]
    ]
    assert children_of(out) == []


def test_ctrl_c_stops_every_node_and_still_writes_what_was_gathered(tmp_path: Path) -> None:
    out = tmp_path / "run"
    mesh = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mycelium",
            "mesh",
            "--nodes",
            "3",
            "--rounds",
            "500",
            "--out",
            str(out),
            "--no-live",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        events = out / "nodes" / "node-0" / "events.jsonl"
        deadline = time.time() + 180
        while time.time() < deadline and not (events.exists() and '"event":"round"' in events.read_text()):
            time.sleep(0.5)
        assert len(children_of(out)) == 3
        mesh.send_signal(signal.SIGINT)
        code = mesh.wait(30)
    finally:
        mesh.kill()
    assert code == 130
    summary = json.loads((out / "summary.json").read_text())
    assert summary["outcome"] == "interrupted"
    assert summary["nodes"][0]["rounds"] >= 1
    assert (out / "report.png").exists()
    assert children_of(out) == []


def test_killing_the_launcher_takes_its_nodes_with_it(tmp_path: Path) -> None:
    out = tmp_path / "run"
    mesh = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mycelium",
            "mesh",
            "--nodes",
            "2",
            "--rounds",
            "500",
            "--out",
            str(out),
            "--no-live",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(children_of(out)) < 2:
        time.sleep(0.5)
    assert len(children_of(out)) == 2
    mesh.kill()
    mesh.wait()
    deadline = time.time() + 10
    while time.time() < deadline and children_of(out):
        time.sleep(0.2)
    assert children_of(out) == []
