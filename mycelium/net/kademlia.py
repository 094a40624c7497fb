"""A lean client of the libp2p Kademlia wire protocol (/ipfs/kad/1.0.0) for our records.

Why not py-libp2p's own `KadDHT.put_value`/`get_value`: measured on loopback (benchmarks/RESULTS.md,
issue 12) a put or a get took 160-250 ms in a 10-node network, nearly all of it CPU in the caller.
Each of its RPCs opens a fresh stream (Yamux SYN and two multistream-select round trips before the
request), attaches and verifies signed peer records, and a get runs a FIND_NODE lookup first and
then asks the same peers again with GET_VALUE, then writes corrections before it returns.

This client speaks the same messages to the same servers (py-libp2p's handler and go-libp2p's
both answer many requests on one stream):
- get: one iterative GET_VALUE lookup (each answer carries the record and closer peers), ended
  when the k closest peers have answered (policy/lookup.py); the registered validator's `select`
  chooses among every peer's answer (copies count as support: policy/records.best_record); peers
  among the k closest that answered with an older version or none are sent the winner in the
  background (Kademlia's entry correction).
- put: an iterative FIND_NODE lookup that ends once the beta (3) closest have answered, as
  go-libp2p's does, then PUT_VALUE to the k closest known, all at once.
- refresh (the routing table's upkeep): FIND_NODE for our own id (Kademlia's join) and a few
  random keys, first one hop through the peers we are connected to, full lookups (all at once)
  only while the table holds fewer than K / 2 peers (`KadClient.refresh`). py-libp2p's
  `refresh_routing_table` runs its lookups one after another over fresh streams and took the whole
  20 s we gave it in a 30-node mesh, at every node, while the mesh was forming.
- streams are kept per peer for `IDLE_SECONDS` after use and reused by the next request. A
  py-libp2p server handles at most 12 streams at once and resets the rest (ours: 128,
  net/host.serve_more_kad_streams), so idle streams are closed quickly and at most one per peer
  is kept.

Every request has its own deadline; the caller (net/registry.py) bounds the whole call.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence

import multiaddr
import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.kad_dht.common import MAX_DHT_MESSAGE_SIZE
from libp2p.kad_dht.common import PROTOCOL_ID as KAD_PROTOCOL
from libp2p.kad_dht.kad_dht import KadDHT
from libp2p.kad_dht.pb.kademlia_pb2 import Message
from libp2p.kad_dht.routing_table import RoutingTable
from libp2p.kad_dht.value_store import ValueStore
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.records.validator import Validator

from mycelium.net.framing import FrameReader, frame
from mycelium.net.streams import StreamOpener, close_quietly
from mycelium.policy.lookup import BETA, K, Lookup
from mycelium.policy.peers import PeerId

log = logging.getLogger(__name__)

RPC_TIMEOUT = 4.0
IDLE_SECONDS = 1.0
MAX_REFRESH_PEERS = 16  # connected peers asked at a refresh's first hop
CORROBORATING_PEERS = 2  # how many first-hop answers must name a peer for the table to take it
FULL_REFRESH_BELOW = K // 2  # routing-table size under which a refresh runs full lookups
MAX_IDLE_STREAMS = 64
MAX_CORRECTIONS = 16  # background entry-correction writes at once
ADDR_TTL = 600
MAX_REMEMBERED_ADDRS = 1024

OpenStream = Callable[[ID, Sequence[TProtocol]], Awaitable[INetStream]]


class _Pooled:
    def __init__(self, stream: INetStream) -> None:
        self.stream = stream
        self.reader = FrameReader(stream)
        self.idle_since = time.monotonic()


class StreamPool:
    """At most one idle /ipfs/kad stream per peer, closed after `IDLE_SECONDS` unused.

    Without a nursery nothing is kept: each stream is closed after its request.
    """

    def __init__(self, open_stream: OpenStream, nursery: trio.Nursery | None) -> None:
        self._open = open_stream
        self._nursery = nursery
        self._idle: dict[ID, _Pooled] = {}
        if nursery is not None:
            nursery.start_soon(self._reap)

    async def request(self, peer: ID, message: Message) -> Message:
        pooled = self._idle.pop(peer, None)
        if pooled is not None:
            try:
                return await self._exchange(peer, pooled, message)
            except Exception:  # noqa: BLE001 - the server may have closed an idle stream: ask afresh
                log.debug("pooled kad stream to %s failed; opening a new one", peer)
        pooled = _Pooled(await self._open(peer, [KAD_PROTOCOL]))
        return await self._exchange(peer, pooled, message)

    async def _exchange(self, peer: ID, pooled: _Pooled, message: Message) -> Message:
        try:
            await pooled.stream.write(frame(message.SerializeToString()))
            response = Message()
            response.ParseFromString(await pooled.reader.read_frame(MAX_DHT_MESSAGE_SIZE))
        except BaseException:
            self._discard(pooled)
            raise
        if self._nursery is None:
            await close_quietly(pooled.stream, graceful=True)
        elif peer in self._idle or len(self._idle) >= MAX_IDLE_STREAMS:
            self._discard(pooled, graceful=True)
        else:
            pooled.idle_since = time.monotonic()
            self._idle[peer] = pooled
        return response

    def _discard(self, pooled: _Pooled, graceful: bool = False) -> None:
        """Close in the background (a failed stream's reset may block: streams.py)."""
        if self._nursery is None:
            return  # short-lived tools: the connection's close takes it with it
        self._nursery.start_soon(close_quietly, pooled.stream, graceful)

    async def _reap(self) -> None:
        while True:
            await trio.sleep(IDLE_SECONDS / 2)
            now = time.monotonic()
            for peer, pooled in list(self._idle.items()):
                if now - pooled.idle_since > IDLE_SECONDS:
                    del self._idle[peer]
                    self._discard(pooled, graceful=True)


class KadClient:
    def __init__(
        self,
        host: IHost,
        routing_table: RoutingTable,
        value_store: ValueStore,
        validator: Validator,
        open_stream: OpenStream,
        nursery: trio.Nursery | None = None,
    ) -> None:
        self._host = host
        self._routing_table = routing_table
        self._value_store = value_store
        self._validator = validator
        self._pool = StreamPool(open_stream, nursery)
        self._nursery = nursery
        self._corrections = 0
        self._me = PeerId(host.get_id().to_bytes())
        self._dialable: dict[bytes, float] = {}  # peers whose addresses we added, and when (oldest first)

    async def put(self, key: str, value: bytes) -> int:
        """Validate, keep locally, store at the k closest peers; how many accepted it.

        ValueError when our own store holds a version that `value` does not succeed."""
        self._validator.validate(key, value)
        key_bytes = key.encode()
        old = self._value_store.get(key_bytes)
        if old is not None and old.value != value and self._validator.select(key, [value, old.value]) != 0:
            raise ValueError("refusing to replace a newer value with an older one")
        self._value_store.put(key_bytes, value)
        find = Message(type=Message.MessageType.FIND_NODE, key=key_bytes)
        lookup = await self._lookup(key_bytes, find, lambda peer, response: None, beta=BETA)
        store = Message(type=Message.MessageType.PUT_VALUE, key=key_bytes)
        store.record.key = key_bytes
        store.record.value = value
        stored = 0

        async def store_at(peer: PeerId) -> None:
            nonlocal stored
            if await self._ask(peer, store) is not None:
                stored += 1

        async with trio.open_nursery() as nursery:
            for peer in lookup.closest_known():
                nursery.start_soon(store_at, peer)
        return stored

    async def get(self, key: str, within: float = math.inf) -> bytes | None:
        """The newest valid value held by the k closest peers (never our own copy). A lookup not
        done `within` seconds ends there, with the newest of what the peers asked so far sent."""
        key_bytes = key.encode()
        values: dict[PeerId, bytes] = {}

        def on_answer(peer: PeerId, response: Message) -> None:
            if not (response.HasField("record") and response.record.value):
                return
            try:
                self._validator.validate(key, response.record.value)
            except Exception as error:  # noqa: BLE001 - validators raise what they like
                log.debug("%s offered an invalid value for %s: %s", peer.short, key, error)
                return
            values[peer] = response.record.value

        ask = Message(type=Message.MessageType.GET_VALUE, key=key_bytes)
        lookup = await self._lookup(key_bytes, ask, on_answer, within=within)
        if not values:
            return None
        answers = list(values.values())  # one per peer: the validator counts copies as support
        best = answers[0] if len(set(answers)) == 1 else answers[self._validator.select(key, answers)]
        behind = [peer for peer in lookup.closest() if values.get(peer) != best]
        self._correct(key_bytes, best, behind)
        return best

    async def refresh(self, keys: Sequence[bytes]) -> int:
        """Fill the routing table with the peers closest to `keys`; how many peers it took.

        First one hop: FIND_NODE for each key to the DHT servers we are connected to (up to
        `MAX_REFRESH_PEERS`), no new connection; those that answered go into the table, and so
        does every peer that at least `CORROBORATING_PEERS` of them named (one peer alone cannot
        fill our table with peers it made up).
        Only while neither the table nor that hop (every peer that answered or was named) holds
        `FULL_REFRESH_BELOW` peers, full lookups for the keys, all at once (Kademlia's join: they
        dial the k closest of each key); a network that big one hop away serves any lookup's first
        hops. Full lookups at every refresh connected nearly every pair of a 30-peer mesh (25-29
        connections a peer), and each connection costs every later gossip message and heartbeat
        (benchmarks/RESULTS.md). A liar that names made-up peers can at worst spare us the full
        lookups; it cannot put them into the table.
        """
        answered: dict[PeerId, None] = {}
        named_by: dict[PeerId, set[PeerId]] = {}

        async def ask_each_key(peer: PeerId) -> None:
            for key in keys:
                response = await self._ask(peer, Message(type=Message.MessageType.FIND_NODE, key=key))
                if response is None:
                    return
                answered[peer] = None
                for named in self._learn(response)[:K]:
                    named_by.setdefault(named, set()).add(peer)

        connected = [PeerId(peer.to_bytes()) for peer in self._host.get_connected_peers()]
        async with trio.open_nursery() as nursery:
            for peer in random.sample(connected, min(MAX_REFRESH_PEERS, len(connected))):
                nursery.start_soon(ask_each_key, peer)
        corroborated = [peer for peer, namers in named_by.items() if len(namers) >= CORROBORATING_PEERS]
        added = await self._add_to_table([*answered, *corroborated])
        seen = {*answered, *named_by} - {self._me}
        if max(self._routing_table.size(), len(seen)) >= FULL_REFRESH_BELOW:
            return added
        answered.clear()

        async def find(key: bytes) -> None:
            find_node = Message(type=Message.MessageType.FIND_NODE, key=key)
            await self._lookup(key, find_node, lambda peer, response: answered.setdefault(peer))

        async with trio.open_nursery() as nursery:
            for key in keys:
                nursery.start_soon(find, key)
        return added + await self._add_to_table(list(answered))

    async def _add_to_table(self, peers: list[PeerId]) -> int:
        added = 0
        peerstore = self._host.get_peerstore()
        for peer in dict.fromkeys(peers):
            if peer == self._me:
                continue
            try:
                info = PeerInfo(ID(peer.raw), peerstore.addrs(ID(peer.raw)))
                added += await self._routing_table.add_peer(info, skip_server_mode_check=True)
            except Exception as error:  # noqa: BLE001 - a peer whose addresses expired meanwhile
                log.debug("routing table add %s: %s", peer.short, error)
        return added

    async def _lookup(
        self,
        key: bytes,
        message: Message,
        on_answer: Callable[[PeerId, Message], None],
        beta: int | None = None,
        within: float = math.inf,
    ) -> Lookup:
        lookup = Lookup(key, self._seeds(key), self._me, beta=beta)
        wake = trio.Event()

        async def query(peer: PeerId) -> None:
            nonlocal wake
            response = await self._ask(peer, message)
            if response is None:
                lookup.failed(peer)
            else:
                on_answer(peer, response)
                lookup.answered(peer, self._learn(response))
            wake.set()

        with trio.move_on_after(within):
            async with trio.open_nursery() as nursery:
                while not lookup.done:
                    for peer in lookup.next_queries():
                        nursery.start_soon(query, peer)
                    await wake.wait()
                    wake = trio.Event()
                # questions still in flight finish (each within RPC_TIMEOUT): cancelling them would
                # reset streams that the next request could reuse
        return lookup

    async def _ask(self, peer: PeerId, message: Message) -> Message | None:
        """The peer's answer, or None when it failed or took longer than `RPC_TIMEOUT`."""
        with trio.move_on_after(RPC_TIMEOUT):
            try:
                response = await self._pool.request(ID(peer.raw), message)
            except Exception as error:  # noqa: BLE001 - libp2p raises many types for a dead peer
                log.debug("kad %s to %s: %s", Message.MessageType.Name(message.type), peer.short, error)
                return None
            if response.type == message.type:
                return response
        return None

    def _seeds(self, key: bytes) -> list[PeerId]:
        known = self._routing_table.find_local_closest_peers(key, K)
        if len(known) < K:
            known += self._host.get_connected_peers()
        return [PeerId(peer.to_bytes()) for peer in dict.fromkeys(known)]

    def _learn(self, response: Message) -> list[PeerId]:
        """The closer peers an answer names, with their addresses kept so that we can dial them."""
        closer: list[PeerId] = []
        peerstore = self._host.get_peerstore()
        for peer in response.closerPeers:
            closer.append(PeerId(peer.id))
            added = self._dialable.get(peer.id)
            if not peer.addrs or (added is not None and time.monotonic() - added < ADDR_TTL / 2):
                continue  # parsing multiaddrs is slow, and every answer names the same peers
            try:
                peerstore.add_addrs(ID(peer.id), [multiaddr.Multiaddr(a) for a in peer.addrs], ADDR_TTL)
            except Exception:  # noqa: BLE001 - a malformed entry is skipped
                continue
            self._dialable.pop(peer.id, None)
            self._dialable[peer.id] = time.monotonic()
            while len(self._dialable) > MAX_REMEMBERED_ADDRS:
                del self._dialable[next(iter(self._dialable))]
        return closer

    def _correct(self, key: bytes, value: bytes, peers: list[PeerId]) -> None:
        """Send the newest version to close peers that hold an older one or none (in the background)."""
        if self._nursery is None or not peers:
            return
        store = Message(type=Message.MessageType.PUT_VALUE, key=key)
        store.record.key = key
        store.record.value = value
        for peer in peers:
            if self._corrections >= MAX_CORRECTIONS:
                return
            self._corrections += 1
            self._nursery.start_soon(self._correct_one, peer, store)

    async def _correct_one(self, peer: PeerId, store: Message) -> None:
        try:
            await self._ask(peer, store)
        finally:
            self._corrections -= 1


def client_for(dht: KadDHT, nursery: trio.Nursery | None) -> KadClient:
    """A client of `dht`'s table and store. Its streams go through a StreamOpener in a long-lived
    node (streams.py), directly in short tools (no `nursery`)."""
    open_stream: OpenStream = dht.host.new_stream
    if nursery is not None:
        opener = StreamOpener(dht.host, nursery)
        open_stream = lambda peer, protocols: opener.open(PeerId(peer.to_bytes()), protocols, RPC_TIMEOUT)  # noqa: E731
    return KadClient(dht.host, dht.routing_table, dht.value_store, dht.validator, open_stream, nursery)
