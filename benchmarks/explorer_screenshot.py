"""The README's explorer screenshot: `mycelium watch` on a 20-node rotated mesh (four kinds of data).

    python benchmarks/explorer_screenshot.py [--out docs/explorer.png]

Runs `mycelium mesh --nodes 20 --partition rotated:4 --rounds 50 --web 0 --round-interval 8`
(the clustering benchmark's mesh, paced slower), opens the explorer in headless Chromium, and
saves a screenshot once the page shows four groups holding all twenty peers (failing that, the
last one taken every 20 s while the mesh ran), then prints what the page showed.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from chromium import Browser  # noqa: E402

ROWS = (
    "[...document.querySelectorAll('#groups tbody tr')].map(r =>"
    " [r.dataset.members.split(' ').length, Number(r.querySelector('td.round').textContent)])"
)
SETTLED_ROUND = 15  # four groups of three or more, past this round: the rotations have found each other


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/explorer.png")
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=1200)
    parser.add_argument(
        "--round-interval",
        default="8",
        help="mesh pacing in seconds (default 8: the observer and the browser take about a fifth of a "
        "core, which a 20-node mesh on 2 cores paced at 4 s does not have to spare)",
    )
    args = parser.parse_args()
    run = Path(tempfile.mkdtemp(prefix="explorer-shot-"))
    mesh = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mycelium",
            "mesh",
            "--nodes",
            str(args.nodes),
            "--rounds",
            str(args.rounds),
            "--partition",
            "rotated:4",
            "--out",
            str(run),
            "--web",
            "0",
            "--no-live",
            "--round-interval",
            args.round_interval,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    browser = None
    try:
        deadline = time.time() + args.timeout
        url = ""
        while not url and time.time() < deadline and mesh.poll() is None:
            log = run / "watch.log"
            if log.exists() and "explorer at " in log.read_text():
                url = log.read_text().rsplit("explorer at ", 1)[1].split()[0]
            time.sleep(1)
        if not url:
            raise SystemExit("the explorer did not start")
        browser = Browser(1500, 1100)
        browser.open(url)
        browser.wait_for("document.getElementById('graph')?.dataset.peers > 0", 300, "the graph")
        best, last_shot = None, time.time()
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        while time.time() < deadline and mesh.poll() is None:
            try:
                sizes = browser.evaluate(ROWS) or []
            except AssertionError:
                sizes = []
            if (
                len(sizes) == 4
                and sum(size for size, _ in sizes) == args.nodes
                and all(size >= 3 and round_number >= SETTLED_ROUND for size, round_number in sizes)
            ):
                time.sleep(3)
                best = sizes
                browser.screenshot(Path(args.out))
                break
            if time.time() - last_shot > 20:  # keep a recent picture in case four groups never form
                last_shot = time.time()
                browser.screenshot(Path(args.out))
            time.sleep(2)
        summary = browser.evaluate("document.getElementById('summary').textContent")
        rows = browser.evaluate(
            "[...document.querySelectorAll('#groups tbody tr')].map(r => r.innerText.replace(/\\s+/g, ' '))"
        )
        print(
            json.dumps(
                {
                    "groups": best,
                    "summary": summary,
                    "rows": rows,
                    "screenshot": args.out,
                    "after_s": round(time.time() - (deadline - args.timeout)),
                },
                indent=2,
            )
        )
    finally:
        if browser is not None:
            browser.close()
        if mesh.poll() is None:
            mesh.send_signal(signal.SIGINT)
            try:
                mesh.wait(120)
            except subprocess.TimeoutExpired:
                mesh.kill()
    return 0 if best else 1


if __name__ == "__main__":
    sys.exit(main())
