"""Typed group records over py-libp2p's KadDHT.

The node never touches raw DHT bytes: it puts signed `GroupRecord` / `GroupIndex` values here and
gets decoded ones back. `RecordValidator` is registered on every node for the `/mycelium/` namespace,
so remote peers reject what `net.messages.decode_value` rejects and keep the version that
`policy.records.best_record` believes (a node without it would store anything).

Puts and gets go over our own lean Kademlia client (net/kademlia.py), which reads from the network
only: py-libp2p's `get_value` would answer from the local store, which may be stale. What the network
answers replaces the local copy only when it is a valid successor of it (`policy.records.believe`),
so a forged version can never displace a record this node already holds. Every call is bounded in
time.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import TypeVar

import trio
from libp2p.crypto.keys import KeyPair
from libp2p.kad_dht.kad_dht import KadDHT
from libp2p.records.validator import Validator

from mycelium.errors import InvalidMessage
from mycelium.net.detached import Detached
from mycelium.net.kademlia import client_for
from mycelium.net.messages import decode_group_index, decode_group_record, decode_value, seal_index
from mycelium.net.traffic import NetCall, Refusal, Traffic
from mycelium.policy.records import (
    GroupIndex,
    GroupRecord,
    IndexEntry,
    believe,
    best_record,
    group_key,
    merge_index,
    task_key,
)

log = logging.getLogger(__name__)

GET_TIMEOUT = 8.0
GET_MARGIN = 1.0  # of a get's time, kept for choosing among the answers heard
PUT_TIMEOUT = 15.0
INDEX_TTL = 180.0

T = TypeVar("T")


def _newest_index(indexes: list[GroupIndex]) -> int:
    return max(range(len(indexes)), key=lambda i: (indexes[i].updated_at, -i))


class RecordValidator(Validator):
    """Adapter from our record rules to py-libp2p's Validator interface.

    py-libp2p calls `validate` before storing or returning any value under `/mycelium/` (a raise
    rejects it) and `select` to choose among values: on a local put with [new, old] (0 = accept),
    on a remote PUT_VALUE with [stored, offered] (1 = accept) and over all answers of a get. Group
    records are chosen by `best_record`, whose first-on-tie keeps the stored value against an
    offered version it does not validly succeed; indexes by their newest `updated_at`.
    """

    def __init__(self, clock: Callable[[], float] = time.time, traffic: Traffic | None = None) -> None:
        self._clock = clock
        self._traffic = traffic or Traffic()  # counts the values refused

    def validate(self, key: str, value: bytes) -> None:
        try:
            decode_value(key, value, self._clock())
        except InvalidMessage as error:
            self._traffic.refused(Refusal.INVALID)
            raise ValueError(str(error)) from None

    def select(self, key: str, values: list[bytes]) -> int:
        now = self._clock()
        decoded: list[tuple[int, GroupRecord | GroupIndex]] = []
        for index, value in enumerate(values):
            try:
                decoded.append((index, decode_value(key, value, now)))
            except InvalidMessage:
                continue
        if not decoded:
            return 0
        records = [v for _, v in decoded if isinstance(v, GroupRecord)]
        if len(records) == len(decoded):
            return decoded[best_record(records)][0]
        indexes = [v for _, v in decoded if isinstance(v, GroupIndex)]
        if len(indexes) == len(decoded):
            return decoded[_newest_index(indexes)][0]
        return decoded[0][0]


class Registry:
    def __init__(
        self,
        dht: KadDHT,
        key_pair: KeyPair,
        clock: Callable[[], float] = time.time,
        nursery: trio.Nursery | None = None,
        traffic: Traffic | None = None,
    ) -> None:
        """`nursery` (a long-lived node's stack nursery) runs each DHT call detached (detached.py);
        `traffic` learns how long each took."""
        self._dht = dht
        self._key_pair = key_pair
        self._clock = clock
        self._detached = Detached(nursery)
        self._traffic = traffic or Traffic()
        self._kad = client_for(dht, nursery)

    async def put_group(self, record: GroupRecord, timeout: float = PUT_TIMEOUT) -> None:
        """Store a signed version (`record.signed`) at the closest peers."""
        await self._put(group_key(record.group_id), record.signed, timeout)

    async def get_group(self, group_id: str, timeout: float = GET_TIMEOUT) -> GroupRecord | None:
        key = group_key(group_id)
        decode = lambda raw: decode_group_record(raw, self._clock(), group_id)  # noqa: E731
        local = self._local(key, decode)
        found = await self._get_network(key, timeout, decode)
        if found is not None and believe(local, found[1], self._clock()):
            self._keep(key, found)
            return found[1]
        return local

    async def get_index(self, task: str, timeout: float = GET_TIMEOUT) -> GroupIndex | None:
        key = task_key(task)
        decode = lambda raw: decode_group_index(raw, self._clock(), task)  # noqa: E731
        local = self._local(key, decode)
        found = await self._get_network(key, timeout, decode)
        if found is not None and (local is None or found[1].updated_at >= local.updated_at):
            self._keep(key, found)
            return found[1]
        return local

    async def advertise(self, task: str, group_ids: list[str], ttl: float = INDEX_TTL) -> None:
        """Add (or refresh) groups in the task's index: read, merge, write."""
        now = self._clock()
        current = await self.get_index(task)
        merged = merge_index(current, task, [IndexEntry(g, now + ttl) for g in group_ids], now, ttl)
        await self._put(task_key(task), seal_index(self._key_pair, merged), PUT_TIMEOUT)

    async def list_groups(self, task: str, timeout: float = GET_TIMEOUT) -> list[GroupRecord]:
        """The task's live groups, read from the network in parallel, newest first."""
        index = await self.get_index(task, timeout)
        if index is None:
            return []
        records: list[GroupRecord] = []

        async def fetch(group_id: str) -> None:
            record = await self.get_group(group_id, timeout)
            if record is not None and record.task == task:
                records.append(record)

        async with trio.open_nursery() as nursery:
            for group_id in index.live_group_ids(self._clock()):
                nursery.start_soon(fetch, group_id)
        return sorted(records, key=lambda r: (-r.updated_at, r.group_id))

    async def _put(self, key: str, value: bytes, timeout: float) -> None:
        try:
            with self._traffic.timed(NetCall.DHT_PUT):
                await self._detached.run(lambda: self._kad.put(key, value), timeout)
        except ValueError as error:  # our own store holds a version this one does not succeed
            log.info("put %s: %s", key, error)
        except trio.TooSlowError:
            log.info("put %s: not all replicas answered within %.0f s", key, timeout)

    def _local(self, key: str, decode: Callable[[bytes], T]) -> T | None:
        """Our own copy, decoded (None when absent, expired or invalid)."""
        stored = self._dht.value_store.get(key.encode())
        if stored is None:
            return None
        try:
            return decode(stored.value)
        except InvalidMessage:
            return None

    async def _get_network(
        self, key: str, timeout: float, decode: Callable[[bytes], T]
    ) -> tuple[bytes, T] | None:
        """The network's newest version, as sent and decoded (our own copy is never asked)."""
        value: bytes | None = None
        with contextlib.suppress(trio.TooSlowError), self._traffic.timed(NetCall.DHT_GET):
            within = max(timeout - GET_MARGIN, timeout / 2)  # then what was heard, within `timeout`
            value = await self._detached.run(lambda: self._kad.get(key, within), timeout)
        if value is None:
            return None
        try:
            return value, decode(value)
        except InvalidMessage as error:
            log.debug("%s: %s", key, error)
            return None

    def _keep(self, key: str, found: tuple[bytes, object]) -> None:
        """Keep the network's version as our own copy (it succeeded ours)."""
        self._dht.value_store.put(key.encode(), found[0])
