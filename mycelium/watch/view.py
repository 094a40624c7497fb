"""What an observer knows of a task's network, built only from what it hears. Pure: no clock, no I/O.

Theory of operation. `mycelium watch` is a peer that trains nothing and joins no group. It hears
group records (the DHT and the task's discovery topic) and, for open groups, the group topics:
heartbeats, update announcements, goodbyes, splits and merge offers. `NetworkView` turns those into
the picture the explorer draws, and into happenings (a group formed, a peer joined, moved, went
silent ...). What it believes follows the nodes' own rules:

- a group is what the newest believable version of its record says (`policy.records.believe`), so
  members, leader, round and advertised metrics come from signed records only;
- a heartbeat or announcement counts only when it is fresh (`policy.freshness`) and its author is a
  member of that group's record: nobody can draw a peer into a group by talking on its topic;
- accuracies shown per peer are what the peer reports about its group's model on its own data
  (unverifiable, labelled "reported"); a group's "measured" accuracy is the mean of its members'
  latest reports, set against the accuracy its record advertises;
- a peer goes silent when nothing was heard from it for `silent_after` seconds, and a group is gone
  when its record expired.

Every map is bounded (oldest forgotten first), and so is every history.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from mycelium.policy.freshness import Fresh, Freshness
from mycelium.policy.messages import Announce, Goodbye, Heartbeat, MergeOffer, SplitNotice
from mycelium.policy.peers import PeerId
from mycelium.policy.records import GroupRecord, believe

MAX_GROUPS = 256
MAX_PEERS = 1024
MAX_HISTORY = 300  # rounds of accuracy kept per peer and per group
MAX_HAPPENINGS = 200
MAX_TRANSFERS = 256
SILENT_AFTER = 30.0  # the nodes' default member expiry
TRANSFER_TIMEOUT = 60.0  # a pulled update counts as in flight at most this long
INLINE_SHOWN = 3.0  # an update inside its announcement is shown this long


@dataclass
class PeerView:
    peer_id: str
    group: str = ""
    round: int = -1
    accuracy: float = math.nan
    bytes_in: int = 0
    bytes_out: int = 0
    first_heard: float = 0.0
    last_heard: float = -math.inf
    placed_at: float = -math.inf  # how new the evidence is that put it in its group
    silent: bool = False
    migrations: int = 0
    history: deque[tuple[int, float, str]] = field(default_factory=lambda: deque(maxlen=MAX_HISTORY))


@dataclass
class GroupView:
    record: GroupRecord
    first_heard: float
    followed: bool = False  # the observer reads its topic
    history: OrderedDict[int, dict[str, float]] = field(default_factory=OrderedDict)  # round -> peer -> acc

    def measured(self, peers: dict[str, PeerView]) -> float:
        """Mean of the members' latest reports of the group model's accuracy."""
        values = [
            peers[str(m.peer_id)].accuracy
            for m in self.record.members
            if str(m.peer_id) in peers
            and peers[str(m.peer_id)].group == self.record.group_id
            and not math.isnan(peers[str(m.peer_id)].accuracy)
        ]
        return sum(values) / len(values) if values else math.nan


@dataclass(frozen=True)
class Transfer:
    author: str
    group: str
    round: int
    size: int
    inline: bool
    since: float


@dataclass(frozen=True)
class Happening:
    seq: int  # numbered from 1, so that a reader can tell which ones it has shown
    time: float
    kind: str  # formed | gone | joined | left | moved | silent | back | split | merge | leader
    text: str
    group: str = ""
    peer: str = ""


def short(peer: str) -> str:
    return peer[-6:]


class NetworkView:
    def __init__(self, task: str, silent_after: float = SILENT_AFTER) -> None:
        self.task = task
        self.silent_after = silent_after
        self.groups: OrderedDict[str, GroupView] = OrderedDict()
        self.peers: OrderedDict[str, PeerView] = OrderedDict()
        self.transfers: deque[Transfer] = deque(maxlen=MAX_TRANSFERS)
        self.happenings: deque[Happening] = deque(maxlen=MAX_HAPPENINGS)
        self.freshness: Freshness[PeerId] = Freshness()
        self.announced_bytes = 0
        self.ignored: dict[str, int] = {"stale": 0, "replayed": 0, "not a member": 0, "other task": 0}
        self._happened = 0
        self.version = 0  # grows with every change: the web page is pushed a new picture then

    # --- what is heard ------------------------------------------------------------------------------

    def on_record(self, record: GroupRecord, now: float) -> None:
        if record.task != self.task:
            self.ignored["other task"] += 1
            return
        known = self.groups.get(record.group_id)
        if known is not None and not believe(known.record, record, now):
            return
        if known is None and record.expires_at <= now:
            return
        if known is None:
            known = GroupView(record, first_heard=now)
            self.groups[record.group_id] = known
            self._happen(
                now,
                "formed",
                f"group {record.group_id[:8]} ({record.name or 'unnamed'})",
                group=record.group_id,
            )
            while len(self.groups) > MAX_GROUPS:
                self.groups.popitem(last=False)
        else:
            before = known.record
            if record.leader != before.leader:
                self._happen(
                    now,
                    "leader",
                    f"{short(str(record.leader))} leads {record.group_id[:8]}",
                    group=record.group_id,
                    peer=str(record.leader),
                )
            for gone in before.member_ids - record.member_ids:
                peer = self.peers.get(str(gone))
                if peer is not None and peer.group == record.group_id:
                    self._happen(
                        now,
                        "left",
                        f"{short(str(gone))} left {record.group_id[:8]}",
                        group=record.group_id,
                        peer=str(gone),
                    )
            known.record = record
        self.groups.move_to_end(record.group_id)
        for member in record.members:
            self._place(str(member.peer_id), record.group_id, now, heard_at=member.last_seen)
        self._changed()

    def on_heartbeat(self, beat: Heartbeat, now: float) -> None:
        peer = self._member_speaking(beat.group_id, beat.stamp, "heartbeat", now)
        if peer is None:
            return
        peer.round = max(peer.round, beat.round)
        if 0.0 < beat.accuracy <= 1.0:  # 0 is what a node reports before it has evaluated anything
            peer.accuracy = beat.accuracy
            peer.history.append((beat.round, beat.accuracy, beat.group_id))
            rounds = self.groups[beat.group_id].history
            rounds.setdefault(beat.round, {})[peer.peer_id] = beat.accuracy
            while len(rounds) > MAX_HISTORY:
                rounds.popitem(last=False)
        peer.bytes_in = max(peer.bytes_in, beat.bytes_in)
        peer.bytes_out = max(peer.bytes_out, beat.bytes_out)
        self._changed()

    def on_announce(self, announce: Announce, now: float) -> None:
        peer = self._member_speaking(announce.group_id, announce.stamp, "announce", now)
        if peer is None:
            return
        peer.round = max(peer.round, announce.round)
        inline = bool(announce.inline_blob)
        self.transfers.append(
            Transfer(peer.peer_id, announce.group_id, announce.round, announce.size, inline, now)
        )
        receivers = max(0, len(self.groups[announce.group_id].record.members) - 1)
        self.announced_bytes += announce.size * receivers
        self._changed()

    def on_goodbye(self, goodbye: Goodbye, now: float) -> None:
        peer = self._member_speaking(goodbye.group_id, goodbye.stamp, "goodbye", now)
        if peer is None:
            return
        self._happen(
            now,
            "left",
            f"{short(peer.peer_id)} said goodbye to {goodbye.group_id[:8]} ({goodbye.reason or 'no reason'})",
            group=goodbye.group_id,
            peer=peer.peer_id,
        )
        self._changed()

    def on_split(self, notice: SplitNotice, now: float) -> None:
        if self._member_speaking(notice.group_id, notice.stamp, "split", now) is None:
            return
        self._happen(
            now,
            "split",
            f"{notice.group_id[:8]} splits: {len(notice.stay)} stay, {len(notice.leave)} leave for "
            f"{notice.new_group_id[:8]} (separation {notice.separation:.2f})",
            group=notice.group_id,
        )
        self._changed()

    def on_merge_offer(self, offer: MergeOffer, now: float) -> None:
        if self._member_speaking(offer.group_id, offer.stamp, "merge", now) is None:
            return
        self._happen(
            now,
            "merge",
            f"{short(str(offer.stamp.author))} offers to merge two parts of {offer.group_id[:8]} "
            f"({offer.own_score:.3f} against {offer.other_score:.3f})",
            group=offer.group_id,
            peer=str(offer.stamp.author),
        )
        self._changed()

    def tick(self, now: float) -> None:
        """Let time pass: expire groups and transfers, notice peers that went silent."""
        for group_id in [g for g, view in self.groups.items() if view.record.expires_at <= now]:
            del self.groups[group_id]
            self._happen(now, "gone", f"group {group_id[:8]} is gone (its record expired)", group=group_id)
            self._changed()
        while self.transfers and self._transfer_done(self.transfers[0], now):
            self.transfers.popleft()
            self._changed()
        for peer in self.peers.values():
            quiet = now - peer.last_heard > self.silent_after
            if quiet and not peer.silent:
                peer.silent = True
                self._happen(
                    now, "silent", f"{short(peer.peer_id)} went silent", peer=peer.peer_id, group=peer.group
                )
                self._changed()

    # --- what is shown ------------------------------------------------------------------------------

    def groups_following(self) -> list[GroupRecord]:
        return [view.record for view in self.groups.values()]

    def in_flight(self, now: float) -> list[Transfer]:
        return [t for t in self.transfers if not self._transfer_done(t, now)]

    def snapshot(self, now: float) -> dict[str, Any]:
        """The whole picture as JSON-ready data (what the web page and the terminal view draw)."""
        groups = [_group_json(view, self.peers, now) for view in self.groups.values()]
        listed = {str(m) for view in self.groups.values() for m in view.record.member_ids}
        peers = [{**_peer_json(peer, now), "listed": peer.peer_id in listed} for peer in self.peers.values()]
        transfers = [
            {
                "author": t.author,
                "group": t.group,
                "round": t.round,
                "size": t.size,
                "inline": t.inline,
                "age_s": round(now - t.since, 1),
            }
            for t in self.in_flight(now)
        ]
        return {
            "task": self.task,
            "time": round(now, 3),
            "version": self.version,
            "groups": groups,
            "peers": peers,
            "transfers": transfers,
            "bytes": {
                "reported_out": sum(p.bytes_out for p in self.peers.values()),
                "reported_in": sum(p.bytes_in for p in self.peers.values()),
                "announced_to_members": self.announced_bytes,
            },
            "happenings": [
                {
                    "seq": h.seq,
                    "time": round(h.time, 3),
                    "kind": h.kind,
                    "text": h.text,
                    "group": h.group,
                    "peer": h.peer,
                }
                for h in self.happenings
            ],
            "ignored": dict(self.ignored),
        }

    # --- inside -------------------------------------------------------------------------------------

    def _member_speaking(self, group_id: str, stamp: Any, kind: str, now: float) -> PeerView | None:
        """The speaker's view when the message is fresh and from a member of the group's record."""
        view = self.groups.get(group_id)
        if view is None or stamp.author not in view.record.member_ids:
            self.ignored["not a member"] += 1
            return None
        verdict = self.freshness.check(stamp.author, kind, stamp.seq, stamp.sent_at, now)
        if verdict is not Fresh.FRESH:
            self.ignored[verdict.value] += 1
            return None
        peer = self._place(str(stamp.author), group_id, now, heard_at=now)
        return peer

    def _place(self, peer_id: str, group_id: str, now: float, heard_at: float) -> PeerView:
        """Put a peer in a group (a move when it was in another one) and note when it was heard."""
        heard_at = min(heard_at, now)  # a record dated in the future pins nobody
        peer = self.peers.get(peer_id)
        if peer is None:
            peer = PeerView(peer_id, first_heard=now)
            self.peers[peer_id] = peer
            while len(self.peers) > MAX_PEERS:
                self.peers.popitem(last=False)
        if peer.group == group_id:
            peer.placed_at = max(peer.placed_at, heard_at)
        elif heard_at > peer.placed_at:  # an old record that still lists it does not move it back
            if peer.group and peer.group in self.groups:
                peer.migrations += 1
                self._happen(
                    now,
                    "moved",
                    f"{short(peer_id)} moved {peer.group[:8]} → {group_id[:8]}",
                    group=group_id,
                    peer=peer_id,
                )
            else:
                self._happen(
                    now, "joined", f"{short(peer_id)} is in {group_id[:8]}", group=group_id, peer=peer_id
                )
            peer.group = group_id
            peer.placed_at = heard_at
            peer.accuracy = math.nan  # the last report was about another model
        peer.last_heard = max(peer.last_heard, heard_at)
        if peer.silent and now - peer.last_heard <= self.silent_after:
            peer.silent = False
            self._happen(now, "back", f"{short(peer_id)} is heard again", group=peer.group, peer=peer_id)
        self.peers.move_to_end(peer_id)
        return peer

    def _transfer_done(self, transfer: Transfer, now: float) -> bool:
        """Pulled updates are in flight until the group moved past their round; updates inside the
        announcement arrived with it and are shown for a moment only."""
        if now - transfer.since > (INLINE_SHOWN if transfer.inline else TRANSFER_TIMEOUT):
            return True
        view = self.groups.get(transfer.group)
        if view is None:
            return True
        rounds = [self.peers[str(m)].round for m in view.record.member_ids if str(m) in self.peers]
        return max([view.record.round, *rounds]) > transfer.round

    def _happen(self, now: float, kind: str, text: str, group: str = "", peer: str = "") -> None:
        self.happenings.append(Happening(self._happened + 1, now, kind, text, group, peer))
        self._happened += 1

    def _changed(self) -> None:
        self.version += 1


def _number(value: float) -> float | None:
    return None if not math.isfinite(value) else round(value, 4)


def _group_json(view: GroupView, peers: dict[str, PeerView], now: float) -> dict[str, Any]:
    record = view.record
    return {
        "id": record.group_id,
        "name": record.name,
        "leader": str(record.leader),
        "members": [str(m.peer_id) for m in record.members],
        "capacity": record.capacity,
        "round": record.round,
        "version": record.version,
        "policy": record.policy.value,
        "advertised": _number(record.metrics.accuracy),
        "advertised_loss": _number(record.metrics.loss),
        "samples": record.metrics.samples,
        "measured": _number(view.measured(peers)),
        "followed": view.followed,
        "age_s": round(now - view.first_heard, 1),
        "accuracy": [[r, round(sum(a.values()) / len(a), 4)] for r, a in view.history.items() if a],
    }


def _peer_json(peer: PeerView, now: float) -> dict[str, Any]:
    return {
        "id": peer.peer_id,
        "short": short(peer.peer_id),
        "group": peer.group,
        "round": peer.round,
        "accuracy": _number(peer.accuracy),
        "bytes_in": peer.bytes_in,
        "bytes_out": peer.bytes_out,
        "quiet_s": round(now - peer.last_heard, 1) if math.isfinite(peer.last_heard) else None,
        "silent": peer.silent,
        "migrations": peer.migrations,
        "accuracy_history": [[r, round(a, 4)] for r, a, _ in peer.history],
    }
