"""A real headless Chromium driven over the DevTools protocol (for the explorer's browser tests).

Debian's `chromium` package; the DevTools socket is spoken with `websockets` (its sync client), so
no browser download and no driver binary are needed.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

INSTALL_HINT = "the explorer's browser test needs Chromium: apt-get install -y chromium (Debian's package)"


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError(INSTALL_HINT)


class Browser:
    def __init__(self, width: int = 1400, height: int = 1000) -> None:
        self.profile = tempfile.mkdtemp(prefix="mycelium-chromium-")
        # a file, not a pipe: nobody reads a pipe after start-up, and a full one stalls Chromium
        self.log = Path(self.profile) / "stderr.log"
        self._log_file = self.log.open("wb")
        self.process = subprocess.Popen(
            [
                chromium_binary(),
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._log_file,
        )
        self._ids = itertools.count(1)
        browser_url = self._devtools_url(timeout=30)
        port = re.search(r":(\d+)/", browser_url).group(1)  # type: ignore[union-attr]
        page = self._first_page(port, timeout=10)
        self.socket = connect(page, max_size=64 * 1024 * 1024, open_timeout=10)

    def _devtools_url(self, timeout: float) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            match = re.search(r"DevTools listening on (ws://\S+)", self.log.read_text(errors="replace"))
            if match:
                return match.group(1)
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"Chromium did not open its DevTools port ({INSTALL_HINT})")

    @staticmethod
    def _first_page(port: str, timeout: float) -> str:
        import urllib.request

        deadline = time.time() + timeout
        while time.time() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as answer:
                pages = [t for t in json.load(answer) if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.2)
        raise AssertionError("Chromium opened no page")

    def call(self, method: str, timeout: float = 30, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        self.socket.send(json.dumps({"id": call_id, "method": method, "params": params}))
        deadline = time.time() + timeout
        while True:
            message = json.loads(self.socket.recv(timeout=max(0.1, deadline - time.time())))
            if message.get("id") == call_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message.get("result", {})

    def open(self, url: str) -> None:
        self.call("Page.enable")
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float, what: str) -> Any:
        deadline = time.time() + timeout
        value = None
        while time.time() < deadline:
            try:
                value = self.evaluate(expression)
            except AssertionError as error:  # the page is still loading
                value = str(error)[:200]
            else:
                if value:
                    return value
            time.sleep(0.5)
        raise AssertionError(
            f"the page never showed {what} within {timeout:.0f} s (last: {value!r}); {self.diagnosis()}"
        )

    def diagnosis(self) -> str:
        """What the page and Chromium say, for a failure's message."""
        try:
            page = self.evaluate(
                "JSON.stringify({summary: document.getElementById('summary').textContent,"
                " graph: {...document.getElementById('graph').dataset}, error: document.body.dataset.error})"
            )
        except Exception as error:  # noqa: BLE001 - the page itself may be what failed
            page = f"page unreadable: {error}"
        lines = self.log.read_text(errors="replace").splitlines()
        return f"page: {page}; Chromium's last lines: {lines[-8:]}"

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.socket.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self._log_file.close()
            shutil.rmtree(self.profile, ignore_errors=True)
