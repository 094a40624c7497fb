"""What this node's network layer measured: bytes moved, how long network calls took, what it refused.

Bytes are gossip messages and model transfers (payload bytes, not wire bytes), counted here: the
heartbeats, events and dashboard read them. Timings and refusals go to the `observer` (the node's
Prometheus metrics, node/metrics.py) when one is attached, and nowhere otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Protocol


class NetCall(Enum):
    """Network calls whose latency is measured (a histogram each)."""

    DHT_PUT = "put"
    DHT_GET = "get"
    TRANSFER = "transfer"  # one pull of a model or update over /mycelium/model/1.0.0, every holder tried


class Refusal(Enum):
    """Why something that arrived was dropped: a fixed set, so a metric labelled by it stays small."""

    INVALID = "invalid"  # envelope: size, schema, kind, key or signature; or a DHT value that fails checks
    UNDECODABLE = "undecodable"  # signed, but not a valid message of its kind
    STALE = "stale"  # dated outside the freshness window
    REPLAYED = "replayed"  # sequence number not above the author's last
    NOT_MEMBER = "not_member"  # from a peer the group does not list
    NOT_LEADER = "not_leader"  # a split or merge offer from a peer that does not lead
    OTHER_GROUP = "other_group"  # names another group than the topic's
    OLD_VERSION = "old_version"  # a group record older than the version we hold
    FORGED = "forged"  # a group record led by a peer that was never a member
    REFUSED_TAKEOVER = "refused_takeover"  # a takeover dropping members we still hear
    FORK = "fork"  # a version of a diverged part of our group
    BAD_UPDATE = "bad_update"  # an update we could not use (fingerprint, hash, decoding, transfer)
    DISTRUSTED = "distrusted"  # an update left out of our average: its author's reputation is too low
    JOIN_REFUSED = "join_refused"  # a join request we answered with a refusal (full, invite, model, ...)


class Observer(Protocol):
    def took(self, call: NetCall, seconds: float) -> None: ...

    def refused(self, reason: Refusal) -> None: ...


@dataclass
class Traffic:
    bytes_in: int = 0
    bytes_out: int = 0
    observer: Observer | None = None

    def refused(self, reason: Refusal) -> None:
        if self.observer is not None:
            self.observer.refused(reason)

    @contextmanager
    def timed(self, call: NetCall) -> Iterator[None]:
        """Time the block, however it ends (a timeout is a latency too)."""
        began = time.monotonic()
        try:
            yield
        finally:
            if self.observer is not None:
                self.observer.took(call, time.monotonic() - began)
