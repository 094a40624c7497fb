"""What every part of a running learning node shares: its stack, its learner, and small helpers."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import trio
from libp2p.crypto.keys import KeyPair

from mycelium.config import NodeConfig
from mycelium.events import EventLog
from mycelium.learn import Weights
from mycelium.learn import codec as tensor_codec
from mycelium.learn.train import Learner
from mycelium.net.gossip import Topic
from mycelium.net.host import Stack
from mycelium.net.messages import SequenceNumbers, seal_group_message, seal_record
from mycelium.net.registry import Registry
from mycelium.net.traffic import Traffic
from mycelium.net.transfer import TransferService
from mycelium.node.attacks import Attack
from mycelium.policy.messages import GroupMessage, Stamp
from mycelium.policy.peers import PeerId, in_peer_order
from mycelium.policy.records import GroupRecord
from mycelium.policy.trust import Reputation

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT = 5.0


@dataclass
class Services:
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
    sequence: SequenceNumbers = field(default_factory=SequenceNumbers)
    reputation: Reputation = field(default_factory=Reputation)  # our book of peers (policy/trust.py)
    attack: Attack | None = None  # tests only (node/attacks.py)

    @property
    def peer_id(self) -> PeerId:
        return self.stack.peer_id

    def addrs(self) -> tuple[str, ...]:
        return tuple(self.stack.dialable_addrs()[:4])

    def stamp(self) -> Stamp:
        return Stamp(self.peer_id, self.sequence.next(), self.clock())

    def seal(self, message: GroupMessage) -> bytes:
        return seal_group_message(self.key_pair, message)

    def sign_record(self, record: GroupRecord) -> GroupRecord:
        return seal_record(self.key_pair, record)

    async def publish(self, topic: Topic, data: bytes) -> None:
        """Publish, bounded in time; a failure is logged and retried by whoever publishes next."""
        try:
            with trio.move_on_after(PUBLISH_TIMEOUT):
                await topic.publish(data)
        except Exception as error:  # noqa: BLE001 - py-libp2p raises many types on a closing host
            log.debug("publish on %s failed: %s", topic.name, error)

    async def publish_discovery(self, record: GroupRecord) -> None:
        await self.publish(self.discovery, record.signed)

    def encode_model(self, weights: Weights) -> bytes:
        return tensor_codec.encode(weights, tensor_codec.CODECS["fp32"], self.learner.fingerprint)

    def store_model(self, weights: Weights) -> bytes:
        """Keep a model servable; returns its content hash."""
        return self.transfer.store.put(self.encode_model(weights))

    async def fetch_group_model(self, record: GroupRecord, deadline: float) -> Weights:
        """The model `record` names, from its members (its leader first)."""
        for member in record.members:
            self.stack.remember_addrs(member.peer_id, member.addrs)
        others = [p for p in in_peer_order(record.member_ids) if p not in (record.leader, self.peer_id)]
        return await self.fetch_model(record.model_hash, [record.leader, *others], deadline=deadline)

    async def fetch_model(
        self, model_hash: bytes, holders: Sequence[PeerId], deadline: float | None = None
    ) -> Weights:
        """A group model by its hash from any of `holders`; TransferError or InvalidMessage otherwise."""
        kwargs = {} if deadline is None else {"deadline": deadline}
        blob = await self.transfer.fetch(model_hash, None, holders, **kwargs)
        return tensor_codec.decode(blob, self.learner.fingerprint, self.learner.shapes)
