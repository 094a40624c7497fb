"""Typed group records over py-libp2p's KadDHT.

The node never touches raw DHT bytes: it puts and gets `GroupRecord` / `GroupIndex` values here.
`RecordValidator` is registered on every node for the `/mycelium/` namespace, so remote peers
reject what `records.decode_value` rejects (a node without it would store anything).

Reads go to the network first: py-libp2p's `get_value` answers from the local store when it holds a
copy, which may be stale. Every call is bounded in time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import trio
from libp2p.crypto.keys import KeyPair
from libp2p.kad_dht.kad_dht import KadDHT
from libp2p.records.validator import Validator

from mycelium.errors import InvalidMessage
from mycelium.net.records import (
    GroupIndex,
    GroupRecord,
    IndexEntry,
    decode_group_index,
    decode_group_record,
    decode_value,
    group_key,
    merge_index,
    select_newest,
    task_key,
)

log = logging.getLogger(__name__)

GET_TIMEOUT = 8.0
PUT_TIMEOUT = 15.0
INDEX_TTL = 180.0


class RecordValidator(Validator):
    """Adapter from our record rules to py-libp2p's Validator interface.

    py-libp2p calls `validate` before storing or returning any value under `/mycelium/` (a raise
    rejects it) and `select` to choose among values: on a local put with [new, old] (0 = accept),
    on a remote PUT_VALUE with [existing, new] (1 = accept) and over all answers of a get.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock

    def validate(self, key: str, value: bytes) -> None:
        try:
            decode_value(key, value, self._clock())
        except InvalidMessage as error:
            raise ValueError(str(error)) from None

    def select(self, key: str, values: list[bytes]) -> int:
        return select_newest(key, values, self._clock())


class Registry:
    def __init__(self, dht: KadDHT, key_pair: KeyPair, clock: Callable[[], float] = time.time) -> None:
        self._dht = dht
        self._key_pair = key_pair
        self._clock = clock

    async def put_group(self, record: GroupRecord, timeout: float = PUT_TIMEOUT) -> None:
        await self._put(group_key(record.group_id), record.seal(self._key_pair), timeout)

    async def get_group(self, group_id: str, timeout: float = GET_TIMEOUT) -> GroupRecord | None:
        value = await self._get_network_first(group_key(group_id), timeout)
        if value is None:
            return None
        try:
            return decode_group_record(value, self._clock(), group_id)
        except InvalidMessage as error:
            log.debug("group %s: %s", group_id, error)
            return None

    async def get_index(self, task: str, timeout: float = GET_TIMEOUT) -> GroupIndex | None:
        value = await self._get_network_first(task_key(task), timeout)
        if value is None:
            return None
        try:
            return decode_group_index(value, self._clock(), task)
        except InvalidMessage as error:
            log.debug("index %s: %s", task, error)
            return None

    async def advertise(self, task: str, group_ids: list[str], ttl: float = INDEX_TTL) -> None:
        """Add (or refresh) groups in the task's index: read, merge, write."""
        now = self._clock()
        current = await self.get_index(task)
        merged = merge_index(current, task, [IndexEntry(g, now + ttl) for g in group_ids], now, ttl)
        await self._put(task_key(task), merged.seal(self._key_pair), PUT_TIMEOUT)

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
        with trio.move_on_after(timeout) as scope:
            try:
                await self._dht.put_value(key, value)
            except ValueError as error:  # py-libp2p: our own store already holds a newer value
                log.info("put %s: %s", key, error)
                return
        if scope.cancelled_caught:
            log.info("put %s: not all replicas answered within %.0f s", key, timeout)

    async def _get_network_first(self, key: str, timeout: float) -> bytes | None:
        """Ask the network even when a local copy exists; keep whichever is newest."""
        store = self._dht.value_store
        key_bytes = key.encode()
        local = store.get(key_bytes)
        if local is not None:
            store.remove(key_bytes)
        network: bytes | None = None
        try:
            with trio.move_on_after(timeout):
                network = await self._dht.get_value(key)
        finally:
            if local is not None:
                self._keep_newest(key, local, network)
        candidates = [v for v in (local.value if local else None, network) if v is not None]
        if not candidates:
            return None
        return candidates[select_newest(key, candidates, self._clock())]

    def _keep_newest(self, key: str, local: object, network: bytes | None) -> None:
        store = self._dht.value_store
        key_bytes = key.encode()
        local_value: bytes = local.value  # type: ignore[attr-defined]
        if network is None or select_newest(key, [network, local_value], self._clock()) == 1:
            store.put_record(key_bytes, local)  # type: ignore[arg-type]
