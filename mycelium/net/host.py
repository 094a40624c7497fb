"""The libp2p stack of one peer: host (Noise + Yamux only), Kademlia DHT, GossipSub, bootstrap.

`open_stack` is the only way to start it; leaving the context shuts everything down in an order
that py-libp2p 0.8.1 survives (connections first, then services; see docs in the README).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import multiaddr
import trio
from google.protobuf.message import DecodeError
from libp2p import new_host
from libp2p.abc import IHost, INetStream
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.network.auto_connector import AutoConnector
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service
from libp2p.utils.address_validation import expand_wildcard_address

from mycelium.errors import BootstrapError, ConfigError, leaf_exceptions
from mycelium.net import peer_records, tuning
from mycelium.net.kademlia import client_for
from mycelium.net.registry import RecordValidator
from mycelium.net.streams import StreamOpener, reset_quietly
from mycelium.net.traffic import Traffic
from mycelium.policy.peers import PeerId
from mycelium.policy.records import NAMESPACE
from mycelium.policy.relaying import Relaying

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "/ip4/0.0.0.0/tcp/4001"
MAX_GOSSIP_RPC_BYTES = 1 << 20
DIAL_TIMEOUT = 5.0
MAX_INBOUND_KAD_STREAMS = 128
ADDR_TTL = 600
RANDOM_REFRESH_KEYS = 2
REFRESH_TIMEOUT = 10.0
DISCONNECT_TIMEOUT = 2.0
MIN_CONNECTIONS = 4  # below this, py-libp2p's auto-connector looks every 10 s instead of every 30 s
LOW_WATERMARK = 8  # the auto-connector dials known peers only while we have fewer connections
SHUTDOWN_TIMEOUT = 3.0  # after disconnecting: stopping services and listeners


@dataclass(frozen=True)
class NetConfig:
    listen: tuple[multiaddr.Multiaddr, ...] = (multiaddr.Multiaddr(DEFAULT_LISTEN),)
    bootstrap: tuple[multiaddr.Multiaddr, ...] = ()
    announce: tuple[multiaddr.Multiaddr, ...] = ()
    bootstrap_timeout: float = 30.0
    # GossipSub's eclipse protection wants mesh peers from >= 3 IPs. Every loopback peer is one IP,
    # so "auto" turns it off when all listen addresses are loopback and on otherwise.
    ip_diversity: str = "auto"
    gossip_heartbeat: float = 1.0

    def ip_diversity_enabled(self) -> bool:
        if self.ip_diversity == "auto":
            return not all(_is_loopback(addr) for addr in self.listen)
        return self.ip_diversity == "on"


def parse_multiaddr(text: str, *, what: str, need_peer_id: bool = False) -> multiaddr.Multiaddr:
    """Parse a multiaddr from user input; ConfigError with one clear line when malformed."""
    try:
        addr = multiaddr.Multiaddr(text)
    except Exception as error:  # noqa: BLE001 - multiaddr raises several unrelated types
        raise ConfigError(f"{what} {text!r} is not a valid multiaddr: {error}") from None
    if need_peer_id:
        try:
            info_from_p2p_addr(addr)
        except Exception:  # noqa: BLE001 - as above
            raise ConfigError(
                f"{what} {text!r} must end with /p2p/<peer id>, e.g. /ip4/10.0.0.1/tcp/4001/p2p/12D3KooW..."
            ) from None
    return addr


def _is_loopback(addr: multiaddr.Multiaddr) -> bool:
    text = str(addr)
    return text.startswith("/ip4/127.") or text.startswith("/ip6/::1/")


def _announce_factory(
    announce: Sequence[multiaddr.Multiaddr],
) -> Callable[[list[multiaddr.Multiaddr]], list[multiaddr.Multiaddr]]:
    """Advertise `announce` if given, else listen addresses with 0.0.0.0 expanded to interfaces."""

    def factory(candidates: list[multiaddr.Multiaddr]) -> list[multiaddr.Multiaddr]:
        if announce:
            return list(announce)
        result: list[multiaddr.Multiaddr] = []
        for addr in candidates:
            if str(addr).startswith("/ip4/0.0.0.0/"):
                result.extend(a for a in expand_wildcard_address(addr) if str(a).startswith("/ip4/"))
            else:
                result.append(addr)
        return list(dict.fromkeys(result))

    return factory


def build_host(key_pair: KeyPair, announce: Sequence[multiaddr.Multiaddr] = ()) -> IHost:
    """A host that speaks Noise only (no plaintext, secio or TLS) and Yamux only."""
    tuning.apply()  # Yamux frames that fit one Noise message (net/tuning.py)
    peer_records.apply()  # a sender's signed peer record verified once, not in every RPC
    host = new_host(
        key_pair=key_pair,
        sec_opt={
            NOISE_PROTOCOL_ID: NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)
        },
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        # one connection per peer also skips py-libp2p's fixed 250 ms happy-eyeballs wait
        connection_config=ConnectionConfig(
            max_connections_per_peer=1,
            dial_timeout=DIAL_TIMEOUT,
            min_connections=MIN_CONNECTIONS,
            low_watermark=LOW_WATERMARK,
        ),
        addrs_factory=_announce_factory(announce),
    )
    swarm = host.get_network()
    swarm.auto_connector = LowWaterAutoConnector(swarm, swarm.connection_config.auto_connect_interval)
    return host


class LowWaterAutoConnector(AutoConnector):
    """py-libp2p's auto-connector, dialing only while we are below the low watermark, and up to it.

    py-libp2p 0.8.1's aims at the midpoint of its low and high watermarks (200 with its defaults)
    and looks every 10 s while below `min_connections` (50): every peer dials every peer its
    peerstore has heard of, 16 a look. In a 30-peer mesh on one machine that made a full mesh (435
    Noise handshakes, identify and gossip hellos) while the groups formed, and stream opens to a new
    leader took 6-8 s. Our own dials (bootstrap, DHT lookups, joins, members, pulls) connect what
    the protocol needs; this only keeps an isolated peer from staying isolated.
    """

    def _room(self) -> int:
        return self.swarm.connection_config.low_watermark - self.swarm.get_total_connections()

    async def maybe_connect(self) -> None:
        if self._room() > 0:
            await super().maybe_connect()

    async def _get_candidate_peers(self) -> list[ID]:
        candidates = await super()._get_candidate_peers()
        random.shuffle(candidates)
        return candidates[: max(self._room(), 0)]


def describe_error(error: BaseException) -> str:
    """The most specific message in an exception chain, on one line."""
    messages: list[str] = []
    seen: set[int] = set()
    stack: list[BaseException] = [error]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        text = str(current).strip().splitlines()
        if text:
            messages.append(text[-1])
        stack.extend(e for e in getattr(current, "errors", []) if isinstance(e, BaseException))
        stack.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    if isinstance(error, trio.TooSlowError):
        return "no answer in time"
    specific = [m for m in messages if "Failed to open" in m or "Errno" in m or "refused" in m]
    return (specific or messages or [type(error).__name__])[-1]


@dataclass
class Stack:
    """A running libp2p peer: what the rest of Mycelium uses of libp2p."""

    host: IHost
    dht: KadDHT
    pubsub: Pubsub
    gossipsub: GossipSub
    config: NetConfig
    nursery: trio.Nursery
    bootstrap_failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.opener = StreamOpener(self.host, self.nursery)  # every stream we open goes through it
        self.kad = client_for(self.dht, self.nursery)  # the routing table's upkeep

    @property
    def peer_id(self) -> PeerId:
        return PeerId(self.host.get_id().to_bytes())

    def listen_addrs(self) -> list[str]:
        return [str(addr) for addr in self.host.get_addrs()]

    def dialable_addrs(self) -> list[str]:
        """Our addresses without the /p2p suffix (what members store about each other)."""
        suffix = f"/p2p/{self.peer_id}"
        return [addr.removesuffix(suffix) for addr in self.listen_addrs()]

    def connected_peers(self) -> list[PeerId]:
        return [PeerId(peer.to_bytes()) for peer in self.host.get_connected_peers()]

    def is_connected(self, peer: PeerId) -> bool:
        return ID(peer.raw) in self.host.get_connected_peers()

    def remember_addrs(self, peer: PeerId, addrs: Sequence[str]) -> None:
        """Tell the peerstore where `peer` listens (for a while); bad addresses are skipped."""
        parsed = []
        for text in addrs:
            try:
                parsed.append(multiaddr.Multiaddr(text))
            except Exception:  # noqa: BLE001 - a peer's bad address is its problem
                continue
        if parsed and peer != self.peer_id:
            self.host.get_peerstore().add_addrs(ID(peer.raw), parsed, ADDR_TTL)

    async def dial(
        self, peer: PeerId, addrs: Sequence[str], timeout: float = DIAL_TIMEOUT, afresh: bool = False
    ) -> bool:
        """Connect to `peer` at `addrs` (or what the peerstore knows); False when it cannot be reached.

        `afresh`: close a connection we already have first (a peer we do not hear although we are
        connected may sit behind a wedged connection).
        """
        if peer == self.peer_id:
            return True
        if self.is_connected(peer):
            if not afresh:
                return True
            with trio.move_on_after(timeout):
                try:
                    await self.host.disconnect(ID(peer.raw))
                except Exception as error:  # noqa: BLE001 - best effort
                    log.debug("disconnect %s: %s", peer.short, error)
        self.remember_addrs(peer, addrs)
        try:
            known = self.host.get_peerstore().addrs(ID(peer.raw))
            await self.connect(PeerInfo(ID(peer.raw), known), timeout)
        except Exception as error:  # noqa: BLE001 - unreachable peers raise many types
            log.debug("dial %s: %s", peer.short, describe_error(error))
            return False
        return True

    async def connect(self, info: PeerInfo, timeout: float = DIAL_TIMEOUT) -> None:
        self.host.get_network().unblock_peer(info.peer_id)  # forget earlier failures: retry now
        with trio.fail_after(timeout):
            await self.host.connect(info)
        await self.dht.add_peer(info.peer_id)

    async def bootstrap(self, on_failure: Callable[[str], None], fill_table: bool = True) -> list[str]:
        """Connect to the bootstrap peers, retrying with backoff until `bootstrap_timeout`, then (with
        `fill_table`) fill the routing table.

        Returns the addresses that answered. Raises BootstrapError naming each address and why it
        failed when none did. Every failed attempt is reported through `on_failure`.
        """
        reached: list[str] = []
        failures: dict[str, str] = {}
        done = trio.Event()

        async def dial(addr: multiaddr.Multiaddr) -> None:
            info = info_from_p2p_addr(addr)
            delay = 0.5
            while True:
                try:
                    await self.connect(info)
                except Exception as error:  # noqa: BLE001 - every dial failure is reported
                    reason = describe_error(error)
                    failures[str(addr)] = reason
                    on_failure(f"bootstrap {addr} failed: {reason}; retrying in {delay:.1f} s")
                    await trio.sleep(delay * random.uniform(0.8, 1.2))
                    delay = min(delay * 2, 8.0)
                    continue
                reached.append(str(addr))
                done.set()
                return

        with trio.move_on_after(self.config.bootstrap_timeout):
            async with trio.open_nursery() as nursery:
                for addr in self.config.bootstrap:
                    nursery.start_soon(dial, addr)
                await done.wait()
                # the first success is enough to join; give the others a moment, then stop trying
                with trio.move_on_after(1.0):
                    while len(reached) < len(self.config.bootstrap):
                        await trio.sleep(0.05)
                nursery.cancel_scope.cancel()
        if not reached:
            detail = "; ".join(f"{addr}: {reason}" for addr, reason in failures.items())
            raise BootstrapError(
                f"could not reach any bootstrap peer within {self.config.bootstrap_timeout:.0f} s"
                f" ({detail or 'no attempt finished'})"
            )
        if fill_table:
            await self.fill_routing_table()
        else:
            await self.add_connected_peers()
        return reached

    async def fill_routing_table(self) -> None:
        """Add every connected peer to the routing table and look up our neighbourhood.

        py-libp2p does not add connected peers to the table by itself, and multi-process DHT
        operations are slow until tables are full (see README, measured figures). The lookups are
        our own (net/kademlia.py KadClient.refresh): our id and `RANDOM_REFRESH_KEYS` random keys.
        """
        await self.add_connected_peers()
        keys = [self.host.get_id().to_bytes()] + [random.randbytes(32) for _ in range(RANDOM_REFRESH_KEYS)]
        with trio.move_on_after(REFRESH_TIMEOUT):
            await self.kad.refresh(keys)

    async def add_connected_peers(self) -> None:
        for peer in self.connected_peers():
            try:
                await self.dht.add_peer(ID(peer.raw))
            except Exception as error:  # noqa: BLE001 - a peer that vanished meanwhile
                log.debug("add_peer %s: %s", peer, error)

    async def maintain_routing_table(self, fill_now: bool = False) -> None:
        """Refill the routing table (at once with `fill_now`), twice while the network forms, then
        every two minutes."""
        if fill_now:
            await self.fill_routing_table()
        for delay in (10, 30):
            await trio.sleep(delay)
            await self.fill_routing_table()
        while True:
            await trio.sleep(120)
            await self.fill_routing_table()


class SturdyPubsub(Pubsub):
    """py-libp2p's Pubsub, with a stream handler that survives a malformed RPC.

    py-libp2p 0.8.1's `Pubsub.stream_handler` resets a stream that fails with a stream error, but
    protobuf's DecodeError from parsing a peer's RPC escapes into the connection's nursery and stops
    the whole host: one garbled or hostile RPC (seen when a partition cut a stream mid-message)
    killed a node. Here it is what it is, one bad stream: reset it and drop the peer's pubsub state,
    as py-libp2p does for stream errors. tests/test_hostile_peers.py pins it.
    """

    async def stream_handler(self, stream: INetStream) -> None:
        try:
            await super().stream_handler(stream)
        except DecodeError as error:
            peer = stream.muxed_conn.peer_id
            log.debug("malformed pubsub RPC from %s: %s", peer, error)
            await reset_quietly(stream)
            self._handle_dead_peer(peer)

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        direct = msg_forwarder.to_bytes() == msg.from_id and msg_forwarder != self.my_id
        if direct and isinstance(self.router, FloodPublishGossipSub):
            self.router.heard_directly(msg)  # duplicates too: py-libp2p drops those first thing
        await super().push_msg(msg_forwarder, msg)


class FloodPublishGossipSub(GossipSub):
    """GossipSub that sends the messages we publish to every peer subscribed to the topic.

    go-libp2p does this by default (flood publishing, GossipSub v1.1): our own message goes to all
    subscribed peers we are connected to, relayed ones still go through the mesh. py-libp2p 0.8.1
    sends only to its mesh, and its meshes can become one-sided: in one run of the README demo two
    nodes heard all ten members while eight heard only those eight, for most of the run, because the
    two nodes' messages went only to each other. A group has at most 64 members, so this costs a few
    messages a heartbeat. tests/test_hostile_peers.py pins it (an empty mesh still delivers).

    On a topic with a `Relaying` (policy/relaying.py: our group topics) we skip the relays of a
    message to subscribers that said they hear its author themselves.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.relaying: dict[str, Relaying] = {}  # topic -> its relay state, while we are subscribed

    def heard_directly(self, msg: rpc_pb2.Message) -> None:
        now = time.monotonic()
        for topic in msg.topicIDs:
            relaying = self.relaying.get(topic)
            if relaying is not None:
                relaying.heard_directly(msg.from_id, now)

    def _get_peers_to_send(
        self, topic_ids: Iterable[str], msg_forwarder: ID, origin: ID, msg_id: bytes | None = None
    ) -> Iterable[ID]:
        peers = set(super()._get_peers_to_send(topic_ids, msg_forwarder, origin, msg_id))
        pubsub = self.pubsub
        if pubsub is None:
            return peers
        if origin == msg_forwarder == pubsub.my_id:
            for topic in topic_ids:
                peers |= set(pubsub.peer_topics.get(topic, ())) - {origin}
            return peers
        topics = list(topic_ids)
        relaying = self.relaying.get(topics[0]) if len(topics) == 1 else None
        if relaying is None:
            return peers
        now, author = time.monotonic(), origin.to_bytes()
        return {peer for peer in peers if relaying.relay_to(peer.to_bytes(), author, now)}


def serve_more_kad_streams(dht: KadDHT) -> None:
    """Let our DHT server handle `MAX_INBOUND_KAD_STREAMS` streams at once instead of py-libp2p's 12.

    py-libp2p 0.8.1 resets every inbound /ipfs/kad stream past 12 concurrent ones. Our clients
    (net/kademlia.py) keep a stream per peer open for a second to reuse it, so in a mesh of 30
    a busy node would refuse lookups; a handler waiting for its next request costs only memory.
    """
    dht._inbound_limiter = trio.CapacityLimiter(MAX_INBOUND_KAD_STREAMS)  # noqa: SLF001 - no setting for it


def _silence_libp2p_logs(verbose: bool) -> None:
    # py-libp2p logs expected events (every DHT stream end, refused dials) as warnings/errors
    level = logging.DEBUG if verbose else logging.CRITICAL
    logging.getLogger("libp2p").setLevel(level)


@asynccontextmanager
async def open_stack(
    key_pair: KeyPair,
    config: NetConfig,
    verbose: bool = False,
    client: bool = False,
    traffic: Traffic | None = None,
) -> AsyncIterator[Stack]:
    """Start host, DHT and pubsub listening on `config.listen` (bootstrap is a separate step).

    A `client` stack (used by one-shot commands) queries the DHT but does not serve it. `traffic`
    counts the DHT values our validator refuses.
    """
    _silence_libp2p_logs(verbose)
    host = build_host(key_pair, config.announce)
    dht = KadDHT(host, DHTMode.CLIENT if client else DHTMode.SERVER)
    serve_more_kad_streams(dht)
    dht.register_validator(NAMESPACE, RecordValidator(traffic=traffic))
    gossipsub = FloodPublishGossipSub(
        # not v1.2: its IDONTWANT goes out for every message received, as an RPC of its own to each
        # mesh peer, carrying a signed peer record the receiver verifies; our messages are small
        # (weights go over streams) and go-libp2p sends IDONTWANT only above 1 KiB. Without it a
        # 30-peer mesh's median round took 1.6-2.9 s instead of 3.8-5.3 s (benchmarks/RESULTS.md)
        protocols=[PROTOCOL_ID_V11, PROTOCOL_ID],
        # D=4 rather than the usual 6: every duplicate delivery costs ~1-3 ms of Python CPU; an idle
        # 20-node mesh used 100-140 % of our 2 cores with D=6 and 50-70 % with D=4 (README)
        degree=4,
        degree_low=3,
        degree_high=8,
        heartbeat_interval=config.gossip_heartbeat,  # type: ignore[arg-type]
        adaptive_gossip_enabled=False,  # it would stretch the heartbeat to 30-60 s
        spam_protection_enabled=True,
        max_messages_per_topic_per_second=100.0,
        eclipse_protection_enabled=config.ip_diversity_enabled(),
    )
    pubsub = SturdyPubsub(host, gossipsub, max_inbound_rpc_size=MAX_GOSSIP_RPC_BYTES)
    closing = False
    with trio.CancelScope() as shutdown:
        try:
            async with AsyncExitStack() as services:
                try:
                    await services.enter_async_context(host.run(list(config.listen)))
                except Exception as error:  # noqa: BLE001 - e.g. address in use, unknown interface
                    raise ConfigError(
                        f"cannot listen on {', '.join(map(str, config.listen))}: {describe_error(error)}"
                    ) from None
                if len(host.get_transport_addrs()) < len(config.listen):
                    # py-libp2p logs a failed bind and carries on without that address
                    raise ConfigError(
                        f"cannot listen on {', '.join(map(str, config.listen))}: "
                        "address already in use or not an address of this machine"
                    )
                await services.enter_async_context(background_trio_service(dht))
                await services.enter_async_context(background_trio_service(pubsub))
                await services.enter_async_context(background_trio_service(gossipsub))
                with trio.fail_after(10):
                    await pubsub.wait_until_ready()
                async with trio.open_nursery() as nursery:
                    try:
                        yield Stack(host, dht, pubsub, gossipsub, config, nursery)
                    finally:
                        closing = True
                        shutdown.deadline = trio.current_time() + SHUTDOWN_TIMEOUT
                        nursery.cancel_scope.cancel()
                        with trio.CancelScope(shield=True), trio.move_on_after(DISCONNECT_TIMEOUT):
                            await _disconnect_all(host)
        except BaseExceptionGroup as group:
            if not (closing and _only_shutdown_races(group)):
                raise
            log.debug("py-libp2p raced its own shutdown (ignored): %s", group)


def _only_shutdown_races(group: BaseExceptionGroup) -> bool:
    """py-libp2p 0.8.1 sometimes spawns a pubsub task into a nursery that is already closing while
    the stack shuts down ("Nursery is closed to new arrivals"): harmless then, and nothing else is."""
    leaves = leaf_exceptions(group)
    return bool(leaves) and all(
        isinstance(leaf, RuntimeError) and "closed to new arrivals" in str(leaf) for leaf in leaves
    )


async def _disconnect_all(host: IHost) -> None:
    # Closing connections before the pubsub service stops keeps py-libp2p from spawning a reader
    # into a closed nursery ("Nursery is closed to new arrivals").
    async def disconnect(peer: ID) -> None:
        try:
            await host.disconnect(peer)
        except Exception as error:  # noqa: BLE001 - best effort on the way out
            log.debug("disconnect %s: %s", peer, error)

    async with trio.open_nursery() as nursery:
        for peer in list(host.get_connected_peers()):
            nursery.start_soon(disconnect, peer)
