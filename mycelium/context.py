"""What every part of a running learning node shares, and the small services they all use."""

from __future__ import annotations

import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import multiaddr
import trio
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID

from mycelium.config import NodeConfig
from mycelium.events import EventLog
from mycelium.learn.train import Learner
from mycelium.net.gossip import Topic
from mycelium.net.host import Stack
from mycelium.net.records import GroupRecord
from mycelium.net.registry import Registry
from mycelium.net.signing import Kind
from mycelium.net.transfer import Traffic, TransferService

if TYPE_CHECKING:
    from mycelium.group import GroupSession

log = logging.getLogger(__name__)

ADDR_TTL = 600
STATE_FILE = "state.json"
MODEL_FILE = "model.bin"
MAX_SEEN_GROUPS = 256


@dataclass
class NodeContext:
    config: NodeConfig
    key_pair: KeyPair
    stack: Stack
    registry: Registry
    transfer: TransferService
    traffic: Traffic
    events: EventLog
    learner: Learner
    discovery: Topic
    clock: Callable[[], float] = time.time
    # group records heard on the discovery topic, newest per group, bounded
    seen_groups: OrderedDict[str, GroupRecord] = field(default_factory=OrderedDict)

    @property
    def peer_id(self) -> ID:
        return self.stack.peer_id

    def listen_addrs(self) -> list[str]:
        """Our dialable addresses without the /p2p suffix (what members store about each other)."""
        suffix = f"/p2p/{self.peer_id}"
        return [addr.removesuffix(suffix) for addr in self.stack.listen_addrs()]

    def remember_addrs(self, peer: ID, addrs: Sequence[str]) -> None:
        parsed = []
        for text in addrs:
            try:
                parsed.append(multiaddr.Multiaddr(text))
            except Exception:  # noqa: BLE001 - a peer's bad address is its problem
                continue
        if parsed:
            self.stack.host.get_peerstore().add_addrs(peer, parsed, ADDR_TTL)

    async def fetch_blob(self, key: bytes, size: int | None, holders: Sequence[ID]) -> bytes:
        return await self.transfer.fetch(key, size, holders)

    async def publish_discovery(self, record: GroupRecord) -> None:
        try:
            with trio.move_on_after(5):
                await self.discovery.publish(Kind.GROUP_RECORD, record.to_proto())
        except Exception as error:  # noqa: BLE001 - the DHT remains the source of truth
            log.debug("discovery publish failed: %s", error)

    def note_group(self, record: GroupRecord) -> None:
        known = self.seen_groups.get(record.group_id)
        if known is None or (record.updated_at, record.version) > (known.updated_at, known.version):
            self.seen_groups[record.group_id] = record
            self.seen_groups.move_to_end(record.group_id)
            while len(self.seen_groups) > MAX_SEEN_GROUPS:
                self.seen_groups.popitem(last=False)

    # --- checkpoint -----------------------------------------------------------------------------

    def checkpoint(self, session: GroupSession) -> None:
        """Atomically save group, round and model so that a restart resumes where we were."""
        record = session.record
        state = {
            "group_id": record.group_id,
            "task": record.task,
            "name": record.name,
            "creator": str(record.creator),
            "nonce": record.nonce.hex(),
            "policy": record.policy.value,
            "capacity": record.capacity,
            "model_fingerprint": record.model_fingerprint,
            "round": session.round,
            "model_hash": session.model_hash.hex(),
        }
        blob = self.transfer.store.get(session.model_hash)
        try:
            if blob is not None:
                _write_atomically(self.config.data_dir / MODEL_FILE, blob)
            _write_atomically(self.config.data_dir / STATE_FILE, json.dumps(state, indent=1).encode())
        except OSError as error:
            log.warning("checkpoint failed: %s", error)

    def load_checkpoint(self) -> tuple[dict[str, Any], bytes] | None:
        try:
            state = json.loads((self.config.data_dir / STATE_FILE).read_text())
            model = (self.config.data_dir / MODEL_FILE).read_bytes()
        except (OSError, ValueError):
            return None
        if (
            state.get("task") != self.config.task
            or state.get("model_fingerprint") != self.learner.fingerprint
        ):
            return None
        return state, model

    def forget_checkpoint(self) -> None:
        for name in (STATE_FILE, MODEL_FILE):
            (self.config.data_dir / name).unlink(missing_ok=True)


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_bytes(data)
    partial.replace(path)
