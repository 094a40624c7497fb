"""What a learning node keeps on disk to resume after a restart: its group's record, round and model.

`state.json` holds the group's record as signed (so that a restart continues the same chain of
versions), the round and the model's hash; `model.bin` the encoded model. Both are replaced
atomically, the state after the model, so a crash between the two leaves a consistent pair or a
model newer than its state (which a hash check refuses).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from mycelium.errors import InvalidMessage
from mycelium.net.messages import decode_group_record
from mycelium.net.transfer import content_hash
from mycelium.policy.records import GroupRecord

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
MODEL_FILE = "model.bin"
FORMAT = 2


@dataclass(frozen=True)
class Checkpoint:
    record: GroupRecord  # as it was when saved (it may have expired since)
    round: int
    model: bytes


def save(data_dir: Path, record: GroupRecord, round_number: int, model: bytes) -> None:
    state = {
        "format": FORMAT,
        "group_id": record.group_id,
        "task": record.task,
        "model_fingerprint": record.model_fingerprint,
        "round": round_number,
        "model_hash": content_hash(model).hex(),
        "record": base64.b64encode(record.signed).decode(),
        "saved_at": time.time(),
    }
    try:
        _write_atomically(data_dir / MODEL_FILE, model)
        _write_atomically(data_dir / STATE_FILE, json.dumps(state, indent=1).encode())
    except OSError as error:
        log.warning("checkpoint failed: %s", error)


def load(data_dir: Path, task: str, fingerprint: str) -> Checkpoint | None:
    """The saved checkpoint for this task and model, or None (absent, other task, or damaged)."""
    try:
        state = json.loads((data_dir / STATE_FILE).read_text())
        model = (data_dir / MODEL_FILE).read_bytes()
        if (
            state.get("format") != FORMAT
            or state["task"] != task
            or state["model_fingerprint"] != fingerprint
        ):
            return None
        if content_hash(model).hex() != state["model_hash"]:
            return None
        # checked as of when it was saved: a resumed node may have been down for longer than a TTL
        record = decode_group_record(base64.b64decode(state["record"]), float(state["saved_at"]) - 1)
    except (OSError, ValueError, KeyError, TypeError, InvalidMessage) as error:
        log.info("no usable checkpoint in %s: %s", data_dir, error)
        return None
    return Checkpoint(record=record, round=int(state["round"]), model=model)


def forget(data_dir: Path) -> None:
    for name in (STATE_FILE, MODEL_FILE):
        (data_dir / name).unlink(missing_ok=True)


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_bytes(data)
    partial.replace(path)
