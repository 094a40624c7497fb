"""GossipSub topics carrying signed envelopes.

Topics: `mycelium/group/<group_id>` (heartbeats, update announcements, membership records, leave
notices, splits, merge offers) and `mycelium/<task>/groups` (group records: the discovery fast path).

Each topic gets a validator that drops, before relaying, anything that is oversized, not a valid
envelope of an allowed kind, signed by someone other than the message's libp2p sender, or refused by
the topic's own `relay` check (group topics: undecodable or outside the freshness window, so that
nobody relays a replayed message). Validators never raise (a raising validator tears down
py-libp2p's pubsub service); every drop is counted in the topic's `Traffic` by reason. A dedicated
task drains the subscription (py-libp2p's queue holds 32 messages and drops the rest) into our handler.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass

import trio
from libp2p.crypto.keys import KeyPair
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub

from mycelium.errors import InvalidMessage
from mycelium.net.signing import Signed, open_envelope
from mycelium.net.traffic import Refusal, Traffic
from mycelium.policy.peers import PeerId
from mycelium.policy.relaying import Relaying

log = logging.getLogger(__name__)

MAX_GOSSIP_BYTES = 768 * 1024  # under the 1 MiB RPC limit, with room for framing


def group_topic(group_id: str) -> str:
    return f"mycelium/group/{group_id}"


def discovery_topic(task: str) -> str:
    return f"mycelium/{task}/groups"


def _open(message: rpc_pb2.Message, kinds: Collection[int], max_bytes: int) -> Signed:
    signed = open_envelope(message.data, kinds, max_bytes)
    if signed.author.raw != message.from_id:
        raise InvalidMessage("envelope author differs from the gossip sender")
    return signed


def _relay_everything(_signed: Signed) -> bool:
    return True


@dataclass
class Topic:
    name: str
    pubsub: Pubsub
    key_pair: KeyPair
    traffic: Traffic
    kinds: frozenset[int]
    relay: Callable[[Signed], bool] = _relay_everything  # False: not fresh; raising: undecodable
    max_bytes: int = MAX_GOSSIP_BYTES
    relaying: Relaying | None = None  # group topics: no relays to who hears the author; None: as GossipSub

    def peers(self) -> int:
        """Peers we know to be subscribed: a publish with none reaches nobody."""
        return len(self.pubsub.peer_topics.get(self.name, ()))

    async def publish(self, data: bytes) -> None:
        """Publish one signed envelope (see net/messages.py for sealing our types)."""
        if len(data) > self.max_bytes:
            raise InvalidMessage(f"message of {len(data)} bytes is too large for gossip")
        self.traffic.bytes_out += len(data)
        await self.pubsub.publish(self.name, data)


async def run_topic(
    topic: Topic,
    handle: Callable[[Signed], None],
    ready: trio.Event,
    own_id: PeerId,
) -> None:
    """Subscribe, deliver every valid message from others to `handle`, unsubscribe on cancel."""

    def validate(_forwarder: object, message: rpc_pb2.Message) -> bool:
        try:
            signed = _open(message, topic.kinds, topic.max_bytes)
        except Exception:  # noqa: BLE001 - never raise inside a py-libp2p validator
            topic.traffic.refused(Refusal.INVALID)
            return False
        try:
            if topic.relay(signed):
                return True
            topic.traffic.refused(Refusal.STALE)
        except Exception:  # noqa: BLE001
            topic.traffic.refused(Refusal.UNDECODABLE)
        return False

    topic.pubsub.set_topic_validator(topic.name, validate, False)
    subscription = await topic.pubsub.subscribe(topic.name)
    if topic.relaying is not None:  # our router (net/host.py FloodPublishGossipSub) reads it
        topic.pubsub.router.relaying[topic.name] = topic.relaying
    ready.set()
    try:
        while True:
            message = await subscription.get()
            if message.from_id == own_id.raw:
                continue
            try:
                signed = _open(message, topic.kinds, topic.max_bytes)
            except InvalidMessage as error:
                log.debug("dropped message on %s: %s", topic.name, error)
                topic.traffic.refused(Refusal.INVALID)
                continue
            topic.traffic.bytes_in += len(message.data)
            handle(signed)
    finally:
        if topic.relaying is not None and topic.pubsub.router.relaying.get(topic.name) is topic.relaying:
            del topic.pubsub.router.relaying[topic.name]
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            try:
                await topic.pubsub.unsubscribe(topic.name)
                topic.pubsub.remove_topic_validator(topic.name)
            except Exception as error:  # noqa: BLE001 - shutting down
                log.debug("unsubscribe %s: %s", topic.name, error)
