"""The observer peer behind `mycelium watch`: hears a task's network and keeps a `NetworkView`.

It bootstraps like any node (a DHT client: it reads records, it stores none), trains nothing and
joins no group. It listens on the task's discovery topic, lists the task's groups from the DHT every
`listing_every` seconds, and follows the topics of open groups read-only: it subscribes, validates
and relays like any subscriber, and never publishes. Invite-only groups are shown from their
records alone. Everything it hears goes through the same decoders and checks as a node's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import multiaddr
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair

from mycelium.errors import InvalidMessage
from mycelium.net.gossip import Topic, discovery_topic, group_topic, run_topic
from mycelium.net.host import NetConfig, Stack, open_stack
from mycelium.net.messages import GROUP_KINDS, decode_group_message, record_from_signed
from mycelium.net.registry import Registry
from mycelium.net.signing import Kind, Signed
from mycelium.net.traffic import Traffic
from mycelium.policy.freshness import FRESHNESS_WINDOW
from mycelium.policy.messages import Announce, Goodbye, Heartbeat, MergeOffer, SplitNotice
from mycelium.policy.records import GroupRecord, JoinPolicy
from mycelium.watch.view import NetworkView

log = logging.getLogger(__name__)

MAX_FOLLOWED = 64  # group topics read at once
TICK = 1.0


@dataclass(frozen=True)
class WatchSettings:
    task: str
    bootstrap: tuple[multiaddr.Multiaddr, ...]
    listen: tuple[multiaddr.Multiaddr, ...] = (multiaddr.Multiaddr("/ip4/0.0.0.0/tcp/0"),)
    bootstrap_timeout: float = 30.0
    listing_every: float = 10.0
    follow_groups: bool = True


class Observer:
    """Feeds `view` from the network; `changed` is set whenever the view's picture changed."""

    def __init__(self, settings: WatchSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.view = NetworkView(settings.task)
        self.changed = trio.Event()
        self.peer_id = ""
        self.status = "starting"
        self._followed: dict[str, trio.CancelScope] = {}

    async def run(self, on_ready: Callable[[Observer], None] | None = None) -> None:
        settings = self.settings
        key_pair = create_new_key_pair()
        config = NetConfig(
            listen=settings.listen, bootstrap=settings.bootstrap, bootstrap_timeout=settings.bootstrap_timeout
        )
        async with open_stack(key_pair, config, client=True) as stack:
            self.peer_id = str(stack.peer_id)
            self.status = "bootstrapping"
            self._notify()
            await stack.bootstrap(lambda message: log.warning(message))
            self.status = "watching"
            stack.nursery.start_soon(stack.maintain_routing_table)
            traffic = Traffic()
            discovery = Topic(
                discovery_topic(settings.task),
                stack.pubsub,
                key_pair,
                traffic,
                frozenset({Kind.GROUP_RECORD}),
            )
            registry = Registry(stack.dht, key_pair, nursery=stack.nursery)
            ready = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_topic, discovery, self._on_discovery, ready, stack.peer_id)
                nursery.start_soon(self._list_groups, registry)
                nursery.start_soon(self._tick, stack, key_pair, traffic, nursery)
                if on_ready is not None:
                    on_ready(self)

    # --- what is heard ------------------------------------------------------------------------------

    def _on_discovery(self, signed: Signed) -> None:
        try:
            record = record_from_signed(signed, self.clock())
        except InvalidMessage:
            return
        self._on_record(record)

    def _on_record(self, record: GroupRecord) -> None:
        self.view.on_record(record, self.clock())
        self._notify()

    def _on_group_message(self, signed: Signed) -> None:
        now = self.clock()
        try:
            message = decode_group_message(signed, now)
        except InvalidMessage:
            return
        view = self.view
        if isinstance(message, GroupRecord):
            view.on_record(message, now)
        elif isinstance(message, Heartbeat):
            view.on_heartbeat(message, now)
        elif isinstance(message, Announce):
            view.on_announce(message, now)
        elif isinstance(message, Goodbye):
            view.on_goodbye(message, now)
        elif isinstance(message, SplitNotice):
            view.on_split(message, now)
        elif isinstance(message, MergeOffer):
            view.on_merge_offer(message, now)
        self._notify()

    def _relay(self, signed: Signed) -> bool:
        """Relay what decodes and is fresh, as members do (node/inbox.py)."""
        now = self.clock()
        message = decode_group_message(signed, now)
        stamp = getattr(message, "stamp", None)
        return stamp is None or abs(now - stamp.sent_at) <= FRESHNESS_WINDOW

    # --- background ---------------------------------------------------------------------------------

    async def _list_groups(self, registry: Registry) -> None:
        while True:
            try:
                for record in await registry.list_groups(self.settings.task):
                    self._on_record(record)
            except Exception as error:  # noqa: BLE001 - the DHT may fail; try again next time
                log.info("listing groups failed: %s", error)
            await trio.sleep(self.settings.listing_every)

    async def _tick(self, stack: Stack, key_pair: KeyPair, traffic: Traffic, nursery: trio.Nursery) -> None:
        while True:
            before = self.view.version
            self.view.tick(self.clock())
            if self.settings.follow_groups:
                self._follow(stack, key_pair, traffic, nursery)
            if self.view.version != before:
                self._notify()
            await trio.sleep(TICK)

    def _follow(self, stack: Stack, key_pair: KeyPair, traffic: Traffic, nursery: trio.Nursery) -> None:
        """Read the topics of the open groups the view knows (at most MAX_FOLLOWED), leave the others."""
        wanted = [r.group_id for r in self.view.groups_following() if r.policy is JoinPolicy.OPEN][
            -MAX_FOLLOWED:
        ]
        for group_id in [g for g in self._followed if g not in wanted]:
            self._followed.pop(group_id).cancel()
            if group_id in self.view.groups:
                self.view.groups[group_id].followed = False
        for group_id in wanted:
            if group_id in self._followed:
                continue
            scope = trio.CancelScope()
            self._followed[group_id] = scope
            self.view.groups[group_id].followed = True
            topic = Topic(
                group_topic(group_id), stack.pubsub, key_pair, traffic, GROUP_KINDS, relay=self._relay
            )
            nursery.start_soon(self._read_topic, scope, topic, stack)

    async def _read_topic(self, scope: trio.CancelScope, topic: Topic, stack: Stack) -> None:
        with scope:
            await run_topic(topic, self._on_group_message, trio.Event(), stack.peer_id)

    def _notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


async def watch(settings: WatchSettings, serve: Sequence[Callable[[Observer], object]] = ()) -> None:
    """Run the observer and, beside it, each of `serve` (a web server, a terminal view)."""
    observer = Observer(settings)
    async with trio.open_nursery() as nursery:
        for start in serve:
            nursery.start_soon(start, observer)
        await observer.run()
