"""Finding groups for our task and measuring how well their models serve our data.

`GroupDirectory` keeps the group records heard on the task's discovery topic, shared by peers
(net/exchange.py) or listed from the DHT: per group, the version a node without history would believe
(policy/records.py), bounded in count. `Scout` learns the task's groups (asking a few connected peers,
the directory, the DHT index), pulls the most promising models and evaluates them on our validation
split; the choice itself is policy/groups.py's.
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

import trio

from mycelium.errors import InvalidMessage, TransferError
from mycelium.learn.train import Evaluation
from mycelium.net.exchange import ask_groups
from mycelium.net.messages import decode_group_record, record_from_signed
from mycelium.net.signing import Signed
from mycelium.node.services import Services
from mycelium.policy.groups import Candidate, Memory, paired_edge, worth_evaluating
from mycelium.policy.peers import PeerId
from mycelium.policy.records import GroupRecord, JoinPolicy, believe

log = logging.getLogger(__name__)

MAX_SEEN_GROUPS = 256
EVALUATION_DEADLINE = 45.0  # every candidate's pull and evaluation together
MODEL_PULL_DEADLINE = 30.0
ASKED_PEERS = 3  # connected peers asked for the groups they know, at each look
# once one of them shared a group, how long the others still have: a peer still starting up held
# every newcomer of a 30-peer mesh for the whole 3 s bound (net/exchange.py ASK_TIMEOUT)
OTHER_ANSWERS_GRACE = 0.5


class Listing(Enum):
    """When a look at the task's groups also lists the DHT index (slow: seconds at 30 peers)."""

    NEVER = "never"
    IF_NONE_KNOWN = "if no peer shared a group and none was heard"
    ALWAYS = "always"


@dataclass(frozen=True)
class CandidateView:
    """A candidate group as the dashboard shows it."""

    group_id: str
    members: int
    advertised: float
    measured: float


class GroupDirectory:
    def __init__(self, services: Services) -> None:
        self._services = services
        self._records: OrderedDict[str, GroupRecord] = OrderedDict()

    def on_signed(self, signed: Signed) -> None:
        try:
            record = record_from_signed(signed, self._services.clock())
        except InvalidMessage:
            return
        if record.task == self._services.config.task:
            self.note(record)

    def note(self, record: GroupRecord) -> None:
        if believe(self._records.get(record.group_id), record, self._services.clock()):
            self._records[record.group_id] = record
            self._records.move_to_end(record.group_id)
            while len(self._records) > MAX_SEEN_GROUPS:
                self._records.popitem(last=False)

    def get(self, group_id: str) -> GroupRecord | None:
        record = self._records.get(group_id)
        return record if record is not None and record.expires_at > self._services.clock() else None

    def live(self) -> list[GroupRecord]:
        now = self._services.clock()
        return [r for r in self._records.values() if r.expires_at > now]

    def shared(self, task: str, besides: str | None = None) -> list[bytes]:
        """What we tell a peer that asks for `task`'s groups: signed records, newest first (all but
        group `besides`)."""
        if task != self._services.config.task:
            return []
        live = (r for r in self.live() if r.group_id != besides)
        return [r.signed for r in sorted(live, key=lambda r: -r.updated_at)]


class Scout:
    def __init__(self, services: Services, directory: GroupDirectory) -> None:
        self.services = services
        self.directory = directory
        self.candidates: list[CandidateView] = []
        self.last_dht_listing = -1e18
        self.listing_seconds = 0.0  # how long listing the DHT took, at the last look (0: not listed)
        self.asking_seconds = 0.0  # how long asking connected peers took, at the last look
        self.memory = Memory()  # what evaluating groups taught us (policy/groups.py)
        self.rng = random.Random(services.peer_id.raw)

    async def known_groups(self, dht: Listing = Listing.IF_NONE_KNOWN) -> list[GroupRecord]:
        """Groups of our task with our model: shared by a few connected peers (net/exchange.py),
        heard on the discovery topic and, as `dht` says, listed from the DHT index."""
        began = self.services.clock()
        await self._ask_peers()
        self.asking_seconds = self.services.clock() - began
        self.listing_seconds = 0.0
        if dht is Listing.ALWAYS or (dht is Listing.IF_NONE_KNOWN and not self._ours(self.directory.live())):
            await self._list_dht()
        return self._ours(self.directory.live())

    def _ours(self, records: list[GroupRecord]) -> list[GroupRecord]:
        return [r for r in records if r.model_fingerprint == self.services.learner.fingerprint]

    async def _ask_peers(self) -> None:
        services = self.services
        connected = services.stack.connected_peers()
        asked = self.rng.sample(connected, min(ASKED_PEERS, len(connected)))

        pending = len(asked)
        answered = trio.Event()

        async def ask(peer: PeerId) -> None:
            nonlocal pending
            try:
                for raw in await ask_groups(services.stack.opener, peer, services.config.task):
                    try:
                        record = decode_group_record(raw, services.clock())
                    except InvalidMessage as error:
                        log.debug("%s shared an invalid group record: %s", peer.short, error)
                        continue
                    if record.task == services.config.task:
                        self.directory.note(record)
                        answered.set()
            finally:
                pending -= 1
                if not pending:
                    nursery.cancel_scope.cancel()

        async def the_others_grace() -> None:
            await answered.wait()
            await trio.sleep(OTHER_ANSWERS_GRACE)
            nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            for peer in asked:
                nursery.start_soon(ask, peer)
            if asked:
                nursery.start_soon(the_others_grace)

    async def _list_dht(self) -> None:
        services = self.services
        began = services.clock()
        for record in await services.registry.list_groups(services.config.task):
            self.directory.note(record)
        self.last_dht_listing = services.clock()
        self.listing_seconds = self.last_dht_listing - began

    def admits_us(self, record: GroupRecord) -> bool:
        return record.policy is JoinPolicy.OPEN or bool(self.services.config.invite)

    async def evaluate(
        self, records: list[GroupRecord], exclude: str = "", baseline: Evaluation | None = None
    ) -> list[Candidate]:
        """Pull the most promising groups' models and score them on our validation split (against
        `baseline`, our own group's model on the same images, when there is one). Bounded in time."""
        services, rules = self.services, self.services.config.rules
        learner = services.learner
        hints = [
            Candidate(
                r.group_id,
                len(r.members),
                r.capacity,
                r.metrics.accuracy,
                0.0,
                self.admits_us(r),
                creator=str(r.creator),
            )
            for r in records
            if r.group_id != exclude
        ]
        by_id = {r.group_id: r for r in records}
        began = services.clock()
        evaluated: list[Candidate] = []
        results: dict[bytes, Evaluation] = {}  # groups that have not trained yet share one model

        async def score(group_id: str) -> None:
            record = by_id[group_id]
            if not record.model_hash:
                return
            result = results.get(record.model_hash)
            if result is None:
                try:
                    model = await services.fetch_group_model(record, deadline=MODEL_PULL_DEADLINE)
                except (TransferError, InvalidMessage) as error:
                    services.events.emit("evaluation_failed", group=group_id, reason=str(error))
                    return
                result = await trio.to_thread.run_sync(learner.evaluate, learner.data.validation, model)
                results[record.model_hash] = result
            evaluated.append(
                Candidate(
                    group_id,
                    len(record.members),
                    record.capacity,
                    record.metrics.accuracy,
                    result.accuracy,
                    self.admits_us(record),
                    paired_edge(baseline.losses, result.losses) if baseline is not None else 0.0,
                    result.expected_accuracy,
                )
            )

        with trio.move_on_after(EVALUATION_DEADLINE):
            async with trio.open_nursery() as nursery:
                for group_id in worth_evaluating(hints, rules, self.rng, self.memory, services.clock()):
                    nursery.start_soon(score, group_id)
        for candidate in evaluated:
            self.memory.learn(candidate, rules, services.clock())
        self.candidates = [
            CandidateView(c.group_id, c.members, c.advertised_accuracy, c.measured_accuracy)
            for c in evaluated
        ]
        if evaluated:
            services.events.emit(
                "evaluated",
                candidates=[
                    {
                        "group": c.group_id,
                        "members": c.members,
                        "advertised": round(c.advertised_accuracy, 4),
                        "measured": round(c.measured_accuracy, 4),
                        "expected": round(c.soft_accuracy, 4),
                        "edge": round(c.edge, 2) if baseline is not None else None,
                    }
                    for c in sorted(evaluated, key=lambda c: c.group_id)
                ],
                seconds=round(services.clock() - began, 2),
                listing_seconds=round(self.listing_seconds, 2),
                asking_seconds=round(self.asking_seconds, 2),
            )
        return evaluated
