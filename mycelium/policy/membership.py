"""Who is in a group, who leads it, and what a member does about it. Pure: no I/O, no clock.

Everything that decides membership lives here: which version of the group's record a member holds,
which members are live, who leads, when the leader rewrites the record, when a member takes over,
when it re-checks the DHT, rejoins, or gives the group up, which model a member may catch up to, and
how two diverged parts of one group become one again. The trio shell (`node/session.py`) feeds it
decoded messages and the time, and carries out the `Decision` that `tick` returns.

Theory of operation.

- The record is the membership. A member holds one version of it (the newest it could verify; see
  records.py for the authority rule), and the members it lists are the group. Messages from peers
  it does not list are not taken (heartbeats, updates). A version that does not list us means we
  were dropped: REJOIN.
- Live = listed and heard from (a fresh, non-replayed message; roster.py) within `expiry`.
- The leader is the signer of the held version. It alone writes versions: when the members it
  would list differ from the record, and every `republish` seconds. It drops silent members only
  while it hears a majority of the group (a leader that hears few is more likely cut off itself
  than the last one alive); members silent for `long_silence` go anyway, goodbyes at once.
- When the leader falls silent, the first live member in peer order takes over (writes a version it
  leads, without the silent leader and without anyone ranked before it) once three things hold:
  the leader has been silent for `expiry`, it hears a majority of the group (or the leader has been
  silent for `long_silence`), and a re-read of the DHT within the last `recheck` seconds found no
  newer version from the leader (the leader renews it every `republish` seconds: its lease). A
  member refuses a takeover that drops a member it still hears.
- A member that hears fewer members than the record lists for `recheck` seconds re-reads the record
  from the DHT and dials the silent ones (RECHECK). If it hears nobody for `expiry` while the DHT
  shows the leader renewing its lease, its gossip is lost: it REJOINs through a listed member. If it
  hears nobody for `long_silence` and the lease has lapsed, the group is gone: DISSOLVED.
- Diverged parts (merging.py). A version of our group that is neither ours, nor older, nor a valid
  successor, and is led by a member or former member, comes from another part of the group (after a
  partition or a long stall each side can end up with versions of its own). Its leader and ours
  exchange merge offers; the losing part's members REJOIN the winning part through its leader. A
  version led by a peer that was never a member is FORGED and ignored.
- Catch-up (catchup.py): a model is adopted only when the record or a majority of the live members
  vouch for it.
- Distrust (trust.py): the leader removes a member whose updates its reputation book has held
  below the floor for several rounds, and refuses to admit it again for `distrust_for` seconds.

Every map here is bounded: per-member views by the record's capacity (at most MAX_MEMBERS), former
members, distrusted peers and version digests by `MembershipRules`, offers to two parts, counts
to fixed reasons.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass
from enum import Enum

from mycelium.policy.admission import JoinCase, Verdict, decide_join
from mycelium.policy.catchup import CatchUp, catch_up_target, diverged_targets, majority_ahead
from mycelium.policy.freshness import Fresh, Freshness
from mycelium.policy.merging import DivergedPart
from mycelium.policy.messages import Goodbye, Heartbeat, MergeOffer, SplitNotice, Stamp
from mycelium.policy.peers import PeerId, in_peer_order
from mycelium.policy.records import GroupRecord, JoinPolicy, Member, Standing, is_takeover, standing
from mycelium.policy.roster import Heard, PeerView, Roster


@dataclass(frozen=True)
class MembershipRules:
    expiry: float = 30.0  # a member unheard this long is not live
    long_silence: float = 90.0  # dropped even without a majority heard; no lease and nobody heard: dissolved
    republish: float = 15.0  # the leader writes a new version at least this often
    recheck: float = 15.0  # re-read the DHT and dial silent members at most this often
    merge_wait: float = 30.0  # offer again after this long while the other part's leader has not
    remembered: int = 128  # former members kept (for diverged parts and reconnects)
    history: int = 64  # digests of versions held
    distrust_for: float = 600.0  # a member removed for harmful updates is not let in again this long


class Action(Enum):
    NONE = "none"
    WRITE_RECORD = "write record"  # we lead: write a version listing `members`
    TAKE_OVER = "take over"  # the leader is gone: write a version we lead, listing `members`
    RECHECK = "recheck"  # re-read the record from the DHT and dial `peers`
    OFFER_MERGE = "offer merge"  # we lead a diverged part: score both parts' models, publish an offer
    REJOIN = "rejoin"  # enter the group again through `peers` (of `record`)
    DISSOLVED = "dissolved"  # nobody of the group is alive


@dataclass(frozen=True)
class Decision:
    action: Action
    members: frozenset[PeerId] = frozenset()
    peers: tuple[PeerId, ...] = ()
    record: GroupRecord | None = None  # OFFER_MERGE: the other part; REJOIN: the version to join through
    reason: str = ""


class RecordVerdict(Enum):
    ADOPTED = "adopted"
    SAME = "same"
    STALE = "stale"
    EVICTED = "evicted"  # adopted, and it does not list us
    FORK = "fork"  # another branch led by a (former) member: a diverged part of the group
    FORGED = "forged"  # not entitled, and led by a peer that was never a member
    REFUSED_TAKEOVER = "refused takeover"  # a takeover that drops members we still hear
    OTHER_GROUP = "other group"


class Membership:
    """One member's view of one group (see the module's theory of operation).

    It is long because it is one state machine: every transition reads the same few facts (the held
    version, the roster, the leader's lease, the diverged part), so they live in one object; what
    does not need them is in roster.py, merging.py, catchup.py and records.py. The sections below go
    views, messages, records, admissions and catch-up, then `tick`.
    """

    def __init__(
        self,
        me: PeerId,
        record: GroupRecord,
        now: float,
        rules: MembershipRules | None = None,
        freshness: Freshness[PeerId] | None = None,
    ) -> None:
        self.me = me
        self.rules = rules or MembershipRules()
        self.freshness: Freshness[PeerId] = freshness or Freshness()
        self.roster = Roster(me, self.rules.expiry, self.rules.remembered, self.freshness)
        self.record = record  # the held version (signed: its `signed` bytes can be forwarded)
        self.history: deque[bytes] = deque(maxlen=self.rules.history)
        self.part = DivergedPart()  # the other part of our group, when it diverged
        self.evicted = False
        # when our leader was last seen alive: its heartbeats, or the date of its newest version
        self.lease_seen_at = now
        self.recheck_asked_at = -math.inf  # when we last asked the shell to re-read the DHT
        self.last_recheck = -math.inf  # when it last did
        self.rejoin_asked_at = -math.inf  # when we last asked the shell to let us in again
        self.counts: Counter[str] = Counter()
        self.distrusted: OrderedDict[PeerId, float] = OrderedDict()  # peer -> until when (leader's own)
        self._take(None, record, now)

    # --- views ------------------------------------------------------------------------------------

    @property
    def group_id(self) -> str:
        return self.record.group_id

    @property
    def listed(self) -> frozenset[PeerId]:
        return self.record.member_ids

    @property
    def leader(self) -> PeerId:
        return self.record.leader

    @property
    def is_leader(self) -> bool:
        return self.record.leader == self.me

    @property
    def fork(self) -> GroupRecord | None:
        return self.part.record

    @property
    def paused(self) -> bool:
        """Dropped, or on the losing side of a merge: no rounds until we are let in again."""
        return self.evicted or self.part.winner is not None

    def live(self, now: float, silence: float | None = None) -> frozenset[PeerId]:
        return self.roster.live(now, silence)

    def live_following(self, now: float) -> int:
        """Live members whose heartbeats name a version of our chain (us included): our part's size."""
        ours = [p for p in self.live(now) if p == self.me or self.view_of(p).record_digest in self.history]
        return len(ours)

    def view_of(self, peer: PeerId) -> PeerView:
        return self.roster.view_of(peer)

    def addrs_of(self, peer: PeerId) -> tuple[str, ...]:
        return self.roster.addrs_of(peer, self.record)

    def members_to_list(self, now: float) -> frozenset[PeerId]:
        """The members the leader writes into its next version (see the theory of operation)."""
        removed = self.roster.gone | self.distrusted_now(now)
        listed = (self.listed - removed) | {self.me}
        live = self.live(now) - removed
        if 2 * len(live) > len(listed):
            return live
        if live == {self.me}:
            return listed  # hearing nobody, we do not empty the group: it dissolves instead (tick)
        return listed & self.live(now, silence=self.rules.long_silence)

    def distrust(self, peer: PeerId, now: float) -> None:
        """As leader, remove `peer` from the next version and admit it nowhere soon (trust.py)."""
        if peer == self.me:
            return
        self.distrusted.pop(peer, None)
        self.distrusted[peer] = now + self.rules.distrust_for
        while len(self.distrusted) > self.rules.remembered:
            self.distrusted.popitem(last=False)

    def distrusted_now(self, now: float) -> frozenset[PeerId]:
        return frozenset(p for p, until in self.distrusted.items() if until > now)

    def member_entries(
        self, members: frozenset[PeerId], now: float, addrs: dict[PeerId, tuple[str, ...]] | None = None
    ) -> tuple[Member, ...]:
        """Member entries of a version listing `members` (newcomers' addresses from `addrs`)."""
        entries = []
        for peer in in_peer_order(members):
            known = self.record.member(peer)
            heard = now if peer == self.me else self.view_of(peer).last_seen
            entries.append(
                Member(
                    peer_id=peer,
                    joined_at=known.joined_at if known else now,
                    last_seen=max(heard, known.last_seen if known else 0.0),
                    addrs=tuple(((addrs or {}).get(peer) or self.addrs_of(peer))[:4]),
                )
            )
        return tuple(entries)

    # --- messages ---------------------------------------------------------------------------------

    def _admit(self, stamp: Stamp, kind: str, group_id: str, now: float) -> Heard:
        if group_id != self.group_id:
            return Heard.OTHER_GROUP
        heard = self.roster.admit(stamp, kind, now)
        if heard is Heard.NOT_MEMBER:
            self.counts[heard.value] += 1  # stale and replayed ones: freshness.dropped
        return heard

    def heard_from(self, peer: PeerId, addrs: tuple[str, ...], now: float) -> None:
        self.roster.heard_from(peer, addrs, now)

    def on_heartbeat(self, beat: Heartbeat, now: float) -> Heard:
        heard = self._admit(beat.stamp, "heartbeat", beat.group_id, now)
        if heard is Heard.TAKEN:
            view = self.roster.views[beat.stamp.author]
            view.round, view.model_hash, view.accuracy = beat.round, beat.model_hash, beat.accuracy
            view.addrs, view.record_digest = beat.addrs or view.addrs, beat.record_digest
            if beat.stamp.author == self.leader:
                self.lease_seen_at = now
        return heard

    def on_announce(
        self, stamp: Stamp, group_id: str, round_number: int, base_hash: bytes, now: float
    ) -> Heard:
        """An update for `round_number`, trained from `base_hash`: its author holds that round and
        model now, as a heartbeat would say (a joiner hears announcements before heartbeats)."""
        heard = self._admit(stamp, "announce", group_id, now)
        if heard is Heard.TAKEN:
            view = self.roster.views[stamp.author]
            if round_number > view.round:
                view.round, view.model_hash = round_number, base_hash
        return heard

    def on_goodbye(self, goodbye: Goodbye, now: float) -> Heard:
        heard = self._admit(goodbye.stamp, "goodbye", goodbye.group_id, now)
        if heard is Heard.TAKEN:
            self.roster.said_goodbye(goodbye.stamp.author, goodbye.reason)
            if goodbye.stamp.author == self.leader:
                self.lease_seen_at = -math.inf  # a leader that said goodbye holds no lease
        return heard

    def on_split(self, notice: SplitNotice, now: float) -> Heard:
        """A split is taken only from the leader; the leaving half counts as gone for the staying one."""
        heard = self._admit(notice.stamp, "split", notice.group_id, now)
        if heard is not Heard.TAKEN:
            return heard
        if notice.stamp.author != self.leader:
            return Heard.NOT_LEADER
        if self.me in notice.stay:
            self.roster.gone |= set(notice.leave) & self.listed
        return Heard.TAKEN

    def on_merge_offer(self, offer: MergeOffer, now: float) -> Heard:
        """An offer from our part's leader or the other part's (merging.py); nobody else's counts."""
        if offer.group_id != self.group_id:
            return Heard.OTHER_GROUP
        author = offer.stamp.author
        if offer.part.leader != author:
            return Heard.NOT_LEADER
        if author != self.leader and not self.roster.known(author):
            self.counts["forged offer"] += 1
            return Heard.NOT_MEMBER
        fresh = self.freshness.check(author, "merge", offer.stamp.seq, offer.stamp.sent_at, now)
        if fresh is not Fresh.FRESH:
            return Heard.STALE if fresh is Fresh.STALE else Heard.REPLAYED
        if author != self.leader:
            self.on_record(offer.part, now)  # the offer carries the other part's newest version
        return Heard.TAKEN if self.part.take_offer(offer, self.leader) else Heard.NOT_MEMBER

    def offered(self, offer: MergeOffer, now: float) -> None:
        """We lead our part and published `offer`."""
        self.part.offered(offer, now)

    # --- records ----------------------------------------------------------------------------------

    def on_record(self, record: GroupRecord, now: float) -> RecordVerdict:
        """A version of some record, decoded and signature-checked at the edge (topic, DHT, join)."""
        if record.group_id != self.group_id:
            return RecordVerdict.OTHER_GROUP
        verdict = self._judge(record, now)
        self.counts[verdict.value] += 1
        if verdict is RecordVerdict.ADOPTED:
            self._take(self.record, record, now)
            if self.me not in record.member_ids:
                self.evicted = True
                return RecordVerdict.EVICTED
        elif verdict in (RecordVerdict.FORK, RecordVerdict.REFUSED_TAKEOVER):
            for member in record.members:
                if member.peer_id not in self.listed:
                    self.roster.remember(member.peer_id, member.addrs)
            self.part.note(record, now)
        elif verdict is RecordVerdict.SAME:
            self._renew_lease(record, now)
        return verdict

    def readmitted(self, record: GroupRecord, now: float) -> None:
        """The version a leader signed when it let us back in (node/joining.py): it comes from a member
        of a version we held, so we take it whatever we held."""
        self._take(self.record, record, now)
        self.evicted = False
        self.part.clear()
        self.rejoin_asked_at = -math.inf

    def adopt_own(self, record: GroupRecord, now: float) -> None:
        """A version we wrote and signed (as leader, or taking over)."""
        self._take(self.record, record, now)

    def rechecked(self, found: GroupRecord | None, now: float) -> RecordVerdict | None:
        """The result of a RECHECK: the version the DHT holds now, if any."""
        self.last_recheck = now
        return self.on_record(found, now) if found is not None else None

    def lease_is_fresh(self, now: float) -> bool:
        """Our leader was heard, or renewed its version, within the expiry."""
        return now - self.lease_seen_at < self.rules.expiry

    def _renew_lease(self, record: GroupRecord, now: float) -> None:
        # the leader's own clock dates its versions (clamped to ours): see the README on clocks
        self.lease_seen_at = max(self.lease_seen_at, min(now, record.updated_at))

    def _judge(self, record: GroupRecord, now: float) -> RecordVerdict:
        held = self.record
        position = standing(held, record)
        if position is Standing.SAME:
            return RecordVerdict.SAME
        if position is Standing.SUCCESSOR:
            if is_takeover(held, record) and record.leader != held.leader:
                if (held.member_ids - record.member_ids) & self.live(now) - {self.me}:
                    return RecordVerdict.REFUSED_TAKEOVER
            return RecordVerdict.ADOPTED
        if position is Standing.STALE:
            # an older version of our own chain is dated before ours; a later-dated one is a branch
            if record.updated_at <= held.updated_at or record.digest in self.history:
                return RecordVerdict.STALE
        if not self.roster.known(record.leader):
            return RecordVerdict.FORGED
        # Led by a member of ours that lists us, while our own leader is silent: the group went on
        # while we were away (a takeover, then a readmission, that we missed).
        if (
            position is Standing.UNENTITLED
            and self.me in record.member_ids
            and record.leader in held.member_ids
            and held.leader != self.me
            and not self.roster.heard_within(held.leader, self.rules.expiry, now)
        ):
            return RecordVerdict.ADOPTED
        return RecordVerdict.FORK

    def _take(self, previous: GroupRecord | None, record: GroupRecord, now: float) -> None:
        self._renew_lease(record, now)
        self.roster.follow(previous, record, now)
        self.record = record
        if record.digest:
            self.history.append(record.digest)
        self._forget_settled_part(now)

    def _forget_settled_part(self, now: float) -> None:
        fork = self.part.record
        if fork is not None:
            follows_us = self.view_of(fork.leader).record_digest in self.history
            if self.part.settled(self.listed, follows_us, now):
                self.part.clear()

    # --- admissions and catching up -----------------------------------------------------------------

    def judge_join(
        self,
        candidate: PeerId,
        fingerprint_matches: bool,
        invite_presented: bool,
        invite_problem: str | None,
        now: float,
    ) -> Verdict:
        return decide_join(
            JoinCase(
                is_leader=self.is_leader,
                already_member=candidate in self.listed,
                fingerprint_matches=fingerprint_matches,
                invite_only=self.record.policy is JoinPolicy.INVITE,
                invite_problem=invite_problem,
                invite_presented=invite_presented,
                members=len(self.members_to_list(now) - {candidate}),
                capacity=self.record.capacity,
                distrusted=candidate in self.distrusted_now(now),
            )
        )

    def catch_up_target(self, my_round: int, now: float) -> CatchUp | None:
        """The model the group vouches for, when it is ahead of `my_round` (catchup.py)."""
        return catch_up_target(self.me, self.record, self.roster.reports(), self.live(now), my_round)

    def diverged_targets(self, my_round: int, now: float) -> tuple[CatchUp, ...]:
        """The models to choose from when a majority is ahead of `my_round` but holds no one model."""
        return diverged_targets(self.me, self.roster.reports(), self.live(now), my_round)

    def group_moved_on(self, round_number: int, now: float) -> bool:
        return majority_ahead(self.me, self.roster.reports(), self.live(now), round_number)

    def run_is_over(self, now: float) -> bool:
        """Every other member left because its run was over, and nobody else is here."""
        return bool(self.roster.finished) and self.live(now) == {self.me}

    # --- what to do now ---------------------------------------------------------------------------

    def tick(self, now: float) -> Decision:
        """The one thing to do now (the shell calls this every half heartbeat)."""
        live = self.live(now)
        self._forget_settled_part(now)
        if self.paused:
            target, reason = (self.record, "evicted") if self.evicted else (self.part.winner, "merge")
            return self._rejoin(now, target, reason)  # type: ignore[arg-type]
        for step in (self._ending_tick, self._leader_tick if self.is_leader else self._member_tick):
            decision = step(now, live)
            if decision.action is not Action.NONE:
                return decision
        return self._recheck_tick(now, live)

    def _leader_tick(self, now: float, live: frozenset[PeerId]) -> Decision:
        members = self.members_to_list(now)
        if members != self.listed or now - self.record.updated_at >= self.rules.republish:
            return Decision(Action.WRITE_RECORD, members=members)
        if self.part.offer_due(self.me, now, self.rules.merge_wait):
            return Decision(Action.OFFER_MERGE, record=self.part.record)
        return Decision(Action.NONE)

    def _member_tick(self, now: float, live: frozenset[PeerId]) -> Decision:
        """Take over from a silent leader (see the theory of operation), or wait."""
        leader_silent_for = now - self.view_of(self.leader).last_seen
        if leader_silent_for < self.rules.expiry or live == {self.me}:
            return Decision(Action.NONE)  # hearing nobody, we cannot tell who is gone: _health_tick
        ahead = [p for p in self.listed if p < self.me and p != self.leader]
        if any(p in live for p in ahead):
            return Decision(Action.NONE)  # someone ranked before us takes over
        majority = 2 * len(live) > len((self.listed - self.roster.gone) | {self.me})
        if not (majority or leader_silent_for >= self.rules.long_silence):
            return Decision(Action.NONE)
        if not self._rechecked_lately(now):
            return (
                self._recheck(now, reason="leader silent")
                if self._may_recheck(now)
                else Decision(Action.NONE)
            )
        if self.lease_is_fresh(now):
            return Decision(Action.NONE)
        return Decision(Action.TAKE_OVER, members=live - {self.leader})

    def _ending_tick(self, now: float, live: frozenset[PeerId]) -> Decision:
        """Hearing nobody: our gossip is lost while the group lives (rejoin), or the group is gone."""
        expected = (self.listed - self.roster.gone) | {self.me}
        if live != {self.me} or expected == {self.me}:
            return Decision(Action.NONE)
        if not self.is_leader and self._rechecked_lately(now) and self.lease_is_fresh(now):
            return self._rejoin(now, self.record, "lost the group's gossip")
        nobody_for_long = self.live(now, silence=self.rules.long_silence) == {self.me}
        lease_lapsed = self.is_leader or now - self.lease_seen_at >= self.rules.long_silence
        if nobody_for_long and lease_lapsed and (self.is_leader or self._rechecked_lately(now)):
            return Decision(Action.DISSOLVED, reason="nobody of the group is alive")
        return Decision(Action.NONE)

    def _recheck_tick(self, now: float, live: frozenset[PeerId]) -> Decision:
        """Members we do not hear: re-read the record from the DHT and dial them (once a period)."""
        expected = (self.listed - self.roster.gone) | {self.me}
        if live >= expected or not self._may_recheck(now):
            return Decision(Action.NONE)
        reason = "hear nobody" if live == {self.me} else "hear fewer members than listed"
        return self._recheck(now, reason)

    def _rechecked_lately(self, now: float) -> bool:
        return now - self.last_recheck < self.rules.recheck

    def _may_recheck(self, now: float) -> bool:
        return now - max(self.recheck_asked_at, self.last_recheck) >= self.rules.recheck

    def _recheck(self, now: float, reason: str) -> Decision:
        self.recheck_asked_at = now
        silent = [
            p
            for p in in_peer_order(self.listed - self.roster.gone)
            if p != self.me and p not in self.live(now)
        ]
        former = [p for p in reversed(self.roster.former) if p not in self.listed][: len(silent) + 4]
        return Decision(Action.RECHECK, peers=tuple(silent + former), reason=reason)

    def _rejoin(self, now: float, record: GroupRecord, reason: str) -> Decision:
        """Ask to be let in again through `record`'s members, once a recheck period."""
        if now - self.rejoin_asked_at < self.rules.recheck:
            return Decision(Action.NONE)
        self.rejoin_asked_at = now
        return Decision(Action.REJOIN, peers=self._entry_points(record), record=record, reason=reason)

    def _entry_points(self, record: GroupRecord) -> tuple[PeerId, ...]:
        """Whom to ask to let us into `record`'s group: its leader first, then the others in peer order."""
        others = [p for p in in_peer_order(record.member_ids) if p not in (record.leader, self.me)]
        first = [record.leader] if record.leader != self.me else []
        return tuple(first + others)
