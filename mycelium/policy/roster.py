"""Whom of a group's listed members a member hears, and what each last told it. Pure.

A message is taken only from a listed member and only when it is fresh (freshness.py); taking it
marks its author as heard now. Live = listed, heard within the expiry, and not gone (said goodbye).
Views exist only for listed members, so the roster is bounded by the group's capacity; former members
(dropped from the record) are remembered, bounded, with their addresses: whoever leads a diverged part
of the group must be one of them, and they are whom a member dials when it heals.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

from mycelium.policy.freshness import Fresh, Freshness
from mycelium.policy.messages import Stamp
from mycelium.policy.peers import PeerId
from mycelium.policy.records import GroupRecord


class Heard(Enum):
    TAKEN = "taken"
    NOT_MEMBER = "not a member"
    OTHER_GROUP = "other group"
    STALE = "stale"
    REPLAYED = "replayed"
    NOT_LEADER = "not from the leader"


@dataclass
class PeerView:
    last_seen: float = -math.inf  # our clock
    round: int = -1
    model_hash: bytes = b""
    accuracy: float = math.nan
    addrs: tuple[str, ...] = ()
    record_digest: bytes = b""  # of the version it holds, as its heartbeats say


class Roster:
    def __init__(self, me: PeerId, expiry: float, remembered: int, freshness: Freshness[PeerId]) -> None:
        self.me = me
        self.expiry = expiry
        self.freshness = freshness
        self.listed: frozenset[PeerId] = frozenset()
        self.views: dict[PeerId, PeerView] = {}
        self.gone: set[PeerId] = set()  # said goodbye (or left with the other half of a split)
        self.finished: set[PeerId] = set()  # ... because their run was over
        self.former: OrderedDict[PeerId, tuple[str, ...]] = OrderedDict()
        self._remembered = remembered

    def heard_within(self, peer: PeerId, seconds: float, now: float) -> bool:
        view = self.views.get(peer)
        return view is not None and view.last_seen >= now - seconds

    def live(self, now: float, silence: float | None = None) -> frozenset[PeerId]:
        """Listed members heard within `silence` (default: the expiry) that did not say goodbye, and us."""
        horizon = self.expiry if silence is None else silence
        heard = (p for p in self.listed if p not in self.gone and self.heard_within(p, horizon, now))
        return frozenset(heard) | {self.me}

    def view_of(self, peer: PeerId) -> PeerView:
        return self.views.get(peer, PeerView())

    def reports(self) -> dict[PeerId, tuple[int, bytes]]:
        """(round, model hash) each member last said it holds."""
        return {peer: (view.round, view.model_hash) for peer, view in self.views.items()}

    def known(self, peer: PeerId) -> bool:
        return peer in self.listed or peer in self.former

    def addrs_of(self, peer: PeerId, record: GroupRecord) -> tuple[str, ...]:
        view = self.views.get(peer)
        if view is not None and view.addrs:
            return view.addrs
        entry = record.member(peer)
        return entry.addrs if entry else self.former.get(peer, ())

    def admit(self, stamp: Stamp, kind: str, now: float) -> Heard:
        """Take a message from a listed member if it is fresh; it is then heard now."""
        if stamp.author not in self.listed:
            return Heard.NOT_MEMBER
        fresh = self.freshness.check(stamp.author, kind, stamp.seq, stamp.sent_at, now)
        if fresh is not Fresh.FRESH:
            return Heard.STALE if fresh is Fresh.STALE else Heard.REPLAYED
        self.views.setdefault(stamp.author, PeerView()).last_seen = now
        return Heard.TAKEN

    def heard_from(self, peer: PeerId, addrs: tuple[str, ...], now: float) -> None:
        """A listed member reached us another way (it asked to join again): it is alive."""
        if peer in self.listed and peer != self.me:
            view = self.views.setdefault(peer, PeerView())
            view.last_seen = now
            view.addrs = addrs or view.addrs

    def said_goodbye(self, peer: PeerId, reason: str) -> None:
        self.gone.add(peer)
        if reason == "finished":
            self.finished.add(peer)
        if peer in self.views:
            self.views[peer].last_seen = -math.inf

    def follow(self, previous: GroupRecord | None, record: GroupRecord, now: float) -> None:
        """The group's membership is now `record`'s: newcomers get one expiry of grace to be heard."""
        if previous is not None:
            for peer in previous.member_ids - record.member_ids:
                self.remember(peer, self.addrs_of(peer, previous))
        newcomers = record.member_ids - (previous.member_ids if previous is not None else frozenset())
        self.listed = record.member_ids
        for peer in list(self.views):
            if peer not in record.member_ids:
                del self.views[peer]
        for member in record.members:
            view = self.views.setdefault(member.peer_id, PeerView())
            if member.peer_id in newcomers:
                view.last_seen = max(view.last_seen, now)
                self.gone.discard(member.peer_id)
            if not view.addrs:
                view.addrs = member.addrs
        self.gone &= set(record.member_ids)
        self.finished &= self.gone

    def remember(self, peer: PeerId, addrs: tuple[str, ...]) -> None:
        if peer == self.me:
            return
        self.former[peer] = addrs
        self.former.move_to_end(peer)
        while len(self.former) > self._remembered:
            self.former.popitem(last=False)
