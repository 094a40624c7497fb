"""Machine-readable node events as JSON lines, plus a bounded memory of recent ones."""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from mycelium.errors import ConfigError

RECENT_EVENTS = 200


class EventLog:
    """Writes one JSON object per line (flushed at once) to a file, stdout ("-") or nowhere, and
    hands each event to its `listeners` (a node's metrics follow its events)."""

    def __init__(self, target: str | None) -> None:
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self._owned = False
        self._stream: IO[str] | None
        if target is None:
            self._stream = None
        elif target == "-":
            self._stream = sys.stdout
        else:
            try:
                path = Path(target)
                path.parent.mkdir(parents=True, exist_ok=True)
                self._stream = path.open("a", encoding="utf-8")
                self._owned = True
            except OSError as error:
                raise ConfigError(f"cannot write events to {target}: {error.strerror}") from None

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {"event": event, "time": round(time.time(), 3), **fields}
        self.recent.append(record)
        if self._stream is not None:
            self._stream.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._stream.flush()
        for listener in self.listeners:
            listener(record)
        return record

    def close(self) -> None:
        if self._owned and self._stream is not None:
            self._stream.close()
            self._stream = None
