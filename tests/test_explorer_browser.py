"""The network explorer in a real headless Chromium: against a running four-node mesh, and against
the explorer's own server fed records of a known shape.

`mycelium mesh --web 0` starts `mycelium watch`, an outside observer peer, on the mesh. The test loads
its page, waits until the graph is drawn, and checks that the groups table rendered in the DOM lists
exactly the groups and members the nodes themselves report (their event logs), and that the page
shows rounds and accuracy. A screenshot is saved with the test's output. The second test serves
signed records whose leader is listed after its members, the shape a mesh reaches only when a
leadership moved, so the graph is checked on it every run. Without Chromium the tests fail with the
install hint; they are never skipped.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import trio
from chromium import Browser, chromium_binary
from test_watch_view import T0, A, B, P, next_version, record

from mycelium.mesh.state import MeshState
from mycelium.watch.observer import Observer, WatchSettings
from mycelium.watch.web import serve_web

NODES = 4
ROUNDS = 1000  # the mesh must still run when Chromium looks, however slowly the browser starts


def groups_the_nodes_report(out: Path) -> dict[str, set[str]]:
    state = MeshState()
    for index in range(NODES):
        state.add_node(index, shard=index, rotation=0)
        path = out / "nodes" / f"node-{index}" / "events.jsonl"
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    state.apply(index, json.loads(line))
                except ValueError:
                    continue
    return {group: {m.peer_id for m in members} for group, members in state.groups().items() if group}


def explorer_url(out: Path, mesh: subprocess.Popen[str], timeout: float) -> str:
    deadline = time.time() + timeout
    log = out / "watch.log"
    while time.time() < deadline:
        if log.exists():
            for line in log.read_text(errors="replace").splitlines():
                if "explorer at " in line:
                    return line.rsplit("explorer at ", 1)[1].strip()
        assert mesh.poll() is None, "the mesh exited before its explorer started"
        time.sleep(0.5)
    raise AssertionError(f"no explorer within {timeout:.0f} s")


GROUP_ROWS = (
    """[...document.querySelectorAll('#groups tbody tr')].map(r => [r.dataset.group, r.dataset.members])"""
)


def test_the_explorer_page_draws_the_mesh_groups_and_members_in_chromium(tmp_path: Path) -> None:
    chromium_binary()  # fails with the install hint when Chromium is missing
    out = tmp_path / "run"
    mesh = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mycelium",
            "mesh",
            "--nodes",
            str(NODES),
            "--rounds",
            str(ROUNDS),
            "--out",
            str(out),
            "--web",
            "0",
            "--no-live",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    browser = None
    try:
        url = explorer_url(out, mesh, timeout=120)
        browser = Browser()
        browser.open(url)
        browser.wait_for(
            f"document.getElementById('graph').dataset.peers === '{NODES}'",
            180,
            f"{NODES} peers in the graph",
        )
        deadline, rows, truth = time.time() + 120, [], {}
        while time.time() < deadline:
            rows = browser.evaluate(GROUP_ROWS)
            shown = {group: set(members.split()) for group, members in rows}
            truth = groups_the_nodes_report(out)
            if shown == truth and sum(map(len, truth.values())) == NODES:
                break
            time.sleep(1)
        else:
            raise AssertionError(f"the page shows {rows}, the nodes report {truth}")
        browser.wait_for(
            "[...document.querySelectorAll('#groups tbody tr')].every(r =>"
            " Number(r.querySelector('td.round').textContent) >= 3"
            " && Number(r.querySelector('td.measured').textContent) >= 0.5)",
            180,
            "every group at round 3 or later with a measured accuracy of at least 0.5",
        )
        summary = browser.evaluate("document.getElementById('summary').textContent")
        assert f"{len(truth)} groups" in summary and f"{NODES} members" in summary, summary
        browser.wait_for(
            f"document.querySelectorAll('#chart path').length >= {len(truth) + NODES}",
            60,
            "an accuracy line for every group and every peer",
        )
        assert browser.evaluate("document.querySelectorAll('#happenings li').length") >= NODES
        shot = browser.screenshot(tmp_path / "explorer.png")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        print(f"screenshot: {shot}")
    finally:
        if browser is not None:
            browser.close()
        if mesh.poll() is None:
            mesh.send_signal(signal.SIGINT)
            try:
                mesh.wait(60)
            except subprocess.TimeoutExpired:
                mesh.kill()
                mesh.wait()


@contextmanager
def explorer_serving(observer: Observer) -> Iterator[tuple[str, trio.lowlevel.TrioToken]]:
    """The explorer's real web server for `observer` on a loopback port, in a thread of its own."""
    started: queue.Queue[tuple[str, trio.lowlevel.TrioToken]] = queue.Queue()
    stop = threading.Event()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            token = trio.lowlevel.current_trio_token()
            nursery.start_soon(
                partial(serve_web, observer, "127.0.0.1:0", lambda url: started.put((url, token)))
            )
            await trio.to_thread.run_sync(stop.wait)
            nursery.cancel_scope.cancel()

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    try:
        yield started.get(timeout=30)
    finally:
        stop.set()
        thread.join(30)


def test_the_graph_draws_a_group_whose_leader_is_listed_after_its_members(tmp_path: Path) -> None:
    chromium_binary()
    observer = Observer(WatchSettings(task="digits-mlp", bootstrap=()), clock=lambda: T0 + 1)
    a, b = record(A, creator=0, leader=2, listed=[0, 1, 2]), record(B, creator=3, leader=4, listed=[3, 4])
    observer.view.on_record(a, T0)
    observer.view.on_record(b, T0)
    graph = "document.getElementById('graph').dataset"
    with explorer_serving(observer) as (url, token):
        browser = Browser()
        try:
            browser.open(url + "/")
            browser.wait_for(f"{graph}.peers === '5' && {graph}.groups === '2'", 60, "5 peers in 2 groups")
            for held, listed in ((a, [0, 1, 3, 2]), (b, [4])):  # P3 moves to A, listed before A's leader
                moved = next_version(held, listed, T0 + 0.5)
                trio.from_thread.run_sync(observer.view.on_record, moved, T0 + 0.5, trio_token=token)
            browser.wait_for(
                f"cy.getElementById('p-{P[3]}').data('parent') === 'g-{A}' && {graph}.peers === '5'",
                60,
                "the moved peer drawn inside its new group",
            )
            assert browser.evaluate("cy.getElementById('p-" + str(P[2]) + "').hasClass('leader')")
            assert browser.evaluate("document.body.dataset.error") is None
            browser.screenshot(tmp_path / "explorer-moved.png")
        finally:
            browser.close()
