"""The README's explorer screenshot: `mycelium watch` on a 20-node rotated mesh (four kinds of data).

    python benchmarks/explorer_screenshot.py [--out docs/explorer.png]

Runs `mycelium mesh --nodes 20 --partition rotated:4 --rounds 40 --web 0` (the clustering benchmark's
mesh), opens the explorer in headless Chromium, and saves a screenshot once the page shows four groups
holding all twenty peers (or, failing that, at the last round), then prints what the page showed.
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

ROWS = "[...document.querySelectorAll('#groups tbody tr')].map(r => r.dataset.members.split(' ').length)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/explorer.png")
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--timeout", type=float, default=1200)
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
        best = None
        while time.time() < deadline and mesh.poll() is None:
            try:
                sizes = browser.evaluate(ROWS) or []
            except AssertionError:
                sizes = []
            if len(sizes) == 4 and sum(sizes) == args.nodes:
                time.sleep(3)
                best = sizes
                break
            time.sleep(2)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        browser.screenshot(Path(args.out))
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
            mesh.wait(120)
    return 0 if best else 1


if __name__ == "__main__":
    sys.exit(main())
