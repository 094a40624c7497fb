"""The membership state machine, one transition per row, with the production rules.

Every case builds a member's view of a group at a given moment, feeds it one message (or the
passing of time) and checks the decision or verdict that comes out. Records are really signed, so
digests and predecessors are the real ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest
from libp2p.crypto.ed25519 import create_new_key_pair

from mycelium.net.messages import seal_record
from mycelium.net.signing import peer_id_of
from mycelium.policy.admission import Verdict
from mycelium.policy.catchup import MAX_CANDIDATES
from mycelium.policy.membership import Action, Heard, Membership, MembershipRules, RecordVerdict
from mycelium.policy.merging import merge_winner
from mycelium.policy.messages import Goodbye, Heartbeat, MergeOffer, Stamp
from mycelium.policy.records import GroupRecord, JoinPolicy, Member, Metrics, group_id_for

T0 = 1_800_000_000.0
RULES = MembershipRules()  # production defaults: expiry 30 s, long silence 90 s, republish 15 s
KEYS = [create_new_key_pair(bytes([i + 1]) * 32) for i in range(8)]
# P[0] ranks first in peer order, P[1] second, ...; K[i] signs for P[i]
_ranked = sorted(range(len(KEYS)), key=lambda i: peer_id_of(KEYS[i]))
P = [peer_id_of(KEYS[i]) for i in _ranked]
K = [KEYS[i] for i in _ranked]
NONCE = b"n" * 16
GROUP = group_id_for(P[0], NONCE)


def record(
    leader: int,
    listed: list[int],
    version: int = 2,
    at: float = T0,
    previous: bytes = b"p" * 32,
    model_hash: bytes = b"",
    round_number: int = 0,
    capacity: int = 10,
) -> GroupRecord:
    unsigned = GroupRecord(
        group_id=GROUP,
        task="digits-mlp",
        name="g",
        model_fingerprint="mlp:x",
        policy=JoinPolicy.OPEN,
        capacity=capacity,
        round=round_number,
        members=tuple(Member(P[i], at, at) for i in sorted(listed)),
        metrics=Metrics(),
        version=version,
        updated_at=at,
        expires_at=at + 90,
        creator=P[0],
        nonce=NONCE,
        leader=P[leader],
        model_hash=model_hash,
        previous=previous if version > 1 else b"",
    )
    return seal_record(K[leader], unsigned)


def successor(held: GroupRecord, leader: int, listed: list[int], at: float, **changes) -> GroupRecord:  # type: ignore[no-untyped-def]
    unsigned = held.successor(
        at, 90, leader=P[leader], members=tuple(Member(P[i], at, at) for i in sorted(listed)), **changes
    )
    return seal_record(K[leader], unsigned)


_seq = iter(range(1, 10**9))


def beat(
    author: int,
    at: float,
    round_number: int = 0,
    model_hash: bytes = b"",
    seq: int | None = None,
    sent_at: float | None = None,
    record_digest: bytes = b"",
) -> Heartbeat:
    return Heartbeat(
        stamp=Stamp(P[author], next(_seq) if seq is None else seq, at if sent_at is None else sent_at),
        group_id=GROUP,
        round=round_number,
        model_hash=model_hash,
        accuracy=0.5,
        addrs=(),
        record_version=2,
        record_digest=record_digest,
    )


@dataclass
class Scene:
    """One member (`me`) in a group, and the clock."""

    m: Membership
    now: float

    def hear(self, *authors: int, at: float | None = None, **fields) -> None:  # type: ignore[no-untyped-def]
        for author in authors:
            self.m.on_heartbeat(beat(author, self.now if at is None else at, **fields), self.now)

    def later(self, seconds: float) -> Scene:
        self.now += seconds
        return self


def scene(me: int, leader: int, listed: list[int], **kwargs) -> Scene:  # type: ignore[no-untyped-def]
    held = record(leader, listed, **kwargs)
    return Scene(Membership(P[me], held, T0, RULES), T0)


def all_beating(s: Scene, seconds: float, every: float = 5.0, silent: tuple[int, ...] = ()) -> Scene:
    """Time passes with every listed member but `silent` ones heartbeating."""
    listed = [P.index(p) for p in s.m.listed if p != s.m.me]
    end = s.now + seconds
    while s.now < end:
        s.later(min(every, end - s.now))
        s.hear(*[i for i in listed if i not in silent])
    return s


# --- decisions of `tick` ------------------------------------------------------------------------

TICKS: dict[str, tuple[Callable[[], Scene], Action, set[int] | None]] = {
    # leader, everyone heard
    "a leader hearing everyone writes nothing before the republish period": (
        lambda: all_beating(scene(0, 0, [0, 1, 2, 3]), 10),
        Action.NONE,
        None,
    ),
    "a leader rewrites its version every republish period": (
        lambda: all_beating(scene(0, 0, [0, 1, 2, 3]), 16),
        Action.WRITE_RECORD,
        {0, 1, 2, 3},
    ),
    # leave
    "a goodbye drops the member at once": (
        lambda: _goodbye(all_beating(scene(0, 0, [0, 1, 2, 3]), 5), 2),
        Action.WRITE_RECORD,
        {0, 1, 3},
    ),
    # silent
    "a member silent for the expiry is dropped while the leader hears a majority": (
        lambda: all_beating(scene(0, 0, [0, 1, 2, 3]), 35, silent=(3,)),
        Action.WRITE_RECORD,
        {0, 1, 2},
    ),
    "silent members stay listed while the leader hears only a minority": (
        lambda: all_beating(scene(0, 0, [0, 1, 2, 3, 4]), 35, silent=(2, 3, 4)),
        Action.WRITE_RECORD,
        {0, 1, 2, 3, 4},
    ),
    "members silent for the long silence go even without a majority": (
        lambda: all_beating(scene(0, 0, [0, 1, 2, 3, 4]), 95, silent=(2, 3, 4)),
        Action.WRITE_RECORD,
        {0, 1},
    ),
    "a leader hearing nobody does not empty its group": (
        lambda: scene(0, 0, [0, 1, 2]).later(60),
        Action.WRITE_RECORD,
        {0, 1, 2},
    ),
    # leader change
    "a silent leader: the first in line re-checks the DHT before taking over": (
        lambda: all_beating(scene(1, 0, [0, 1, 2, 3]), 35, silent=(0,)),
        Action.RECHECK,
        None,
    ),
    "a silent leader with no newer version in the DHT: the first in line takes over": (
        lambda: _rechecked(all_beating(scene(1, 0, [0, 1, 2, 3]), 35, silent=(0,)), found=None),
        Action.TAKE_OVER,
        {1, 2, 3},
    ),
    "a silent leader that renewed its version in the DHT keeps its group": (
        lambda: _rechecked(all_beating(scene(1, 0, [0, 1, 2, 3]), 35, silent=(0,)), found="renewed"),
        Action.NONE,
        None,
    ),
    "the second in line waits while the first is heard": (
        lambda: _rechecked(all_beating(scene(2, 0, [0, 1, 2, 3]), 35, silent=(0,)), found=None),
        Action.NONE,
        None,
    ),
    "the second in line takes over when the first is silent too": (
        lambda: _rechecked(all_beating(scene(2, 0, [0, 1, 2, 3, 4]), 35, silent=(0, 1)), found=None),
        Action.TAKE_OVER,
        {2, 3, 4},
    ),
    "no takeover without a majority heard (we may be the ones cut off)": (
        lambda: _rechecked(all_beating(scene(1, 0, [0, 1, 2, 3, 4, 5]), 35, silent=(0, 3, 4, 5)), found=None),
        Action.NONE,
        None,
    ),
    "a takeover without a majority after the long silence": (
        lambda: _rechecked(all_beating(scene(1, 0, [0, 1, 2, 3, 4, 5]), 95, silent=(0, 3, 4, 5)), found=None),
        Action.TAKE_OVER,
        {1, 2},
    ),
    # healing
    "hearing fewer members than listed: re-check the DHT and dial them": (
        lambda: all_beating(scene(2, 0, [0, 1, 2, 3]), 35, silent=(3,)),
        Action.RECHECK,
        None,
    ),
    "hearing nobody while the leader renews its lease: our gossip is lost, rejoin": (
        lambda: _rechecked(scene(2, 0, [0, 1, 2, 3]).later(35), found="renewed"),
        Action.REJOIN,
        None,
    ),
    "hearing nobody and no lease for the long silence: the group dissolved": (
        lambda: _rechecked(scene(2, 0, [0, 1, 2, 3]).later(95), found=None),
        Action.DISSOLVED,
        None,
    ),
    "a leader hearing nobody for the long silence: dissolved": (
        lambda: _rechecked(scene(0, 0, [0, 1, 2]).later(95), found=None),
        Action.DISSOLVED,
        None,
    ),
    "a group of one is not lonely": (
        lambda: scene(0, 0, [0]).later(200),
        Action.WRITE_RECORD,
        {0},
    ),
    # evicted
    "a version that drops us: rejoin": (
        lambda: _offer_record(
            all_beating(scene(2, 0, [0, 1, 2, 3]), 5), lambda h, now: successor(h, 0, [0, 1, 3], now)
        ),
        Action.REJOIN,
        None,
    ),
}


def _goodbye(s: Scene, author: int) -> Scene:
    s.m.on_goodbye(Goodbye(Stamp(P[author], next(_seq), s.now), GROUP, "shutdown"), s.now)
    return s


def _rechecked(s: Scene, found: str | None) -> Scene:
    s.m.tick(s.now)  # the RECHECK decision, carried out below
    dht = None
    if found == "renewed":
        held = s.m.record
        dht = successor(held, P.index(held.leader), [P.index(p) for p in held.member_ids], s.now - 5)
    s.m.rechecked(dht, s.now)
    return s


def _offer_record(s: Scene, build: Callable[[GroupRecord, float], GroupRecord]) -> Scene:
    s.m.on_record(build(s.m.record, s.now), s.now)
    return s


@pytest.mark.parametrize("case", sorted(TICKS))
def test_what_a_member_does_next(case: str) -> None:
    build, action, members = TICKS[case]
    s = build()
    decision = s.m.tick(s.now)
    assert decision.action is action, decision
    if members is not None:
        assert decision.members == {P[i] for i in members}


def test_a_rejoin_after_eviction_asks_the_leader_of_the_version_that_dropped_us_first() -> None:
    s = all_beating(scene(2, 0, [0, 1, 2, 3]), 35, silent=(0,))
    s.m.on_record(successor(s.m.record, 1, [1, 3], s.now), s.now)  # P1 took over (P0 gone) and dropped us
    decision = s.m.tick(s.now)
    assert decision.action is Action.REJOIN and decision.reason == "evicted"
    assert decision.peers[0] == P[1]


# --- verdicts on records --------------------------------------------------------------------------

RECORDS: dict[str, tuple[Callable[[Scene], GroupRecord], RecordVerdict]] = {
    "the leader's next version": (
        lambda s: successor(s.m.record, 0, [0, 1, 2, 3], s.now),
        RecordVerdict.ADOPTED,
    ),
    "the version we hold": (lambda s: s.m.record, RecordVerdict.SAME),
    "an older version of our chain": (
        lambda s: record(0, [0, 1, 2, 3], version=1, at=T0 - 30),
        RecordVerdict.STALE,
    ),
    "an outsider's version listing only itself": (
        lambda s: _outsider(s, [7]),
        RecordVerdict.FORGED,
    ),
    "an outsider's version listing itself and every member": (
        lambda s: _outsider(s, [0, 1, 2, 3, 7]),
        RecordVerdict.FORGED,
    ),
    "a member that is not the leader writes a version": (
        lambda s: successor(s.m.record, 3, [0, 1, 2, 3], s.now),
        RecordVerdict.FORK,
    ),
    "a takeover dropping a leader we still hear": (
        lambda s: successor(s.m.record, 1, [1, 2, 3], s.now),
        RecordVerdict.REFUSED_TAKEOVER,
    ),
    "a takeover dropping a leader we no longer hear": (
        lambda s: successor(all_beating(s, 35, silent=(0,)).m.record, 1, [1, 2, 3], s.now),
        RecordVerdict.ADOPTED,
    ),
    "a later-dated branch with a lower version (a diverged part)": (
        lambda s: record(1, [1, 3], version=1, at=s.now) if False else _branch(s),
        RecordVerdict.FORK,
    ),
}


def _outsider(s: Scene, listed: list[int]) -> GroupRecord:
    unsigned = s.m.record.successor(
        s.now, 90, leader=P[7], members=tuple(Member(P[i], s.now, s.now) for i in listed)
    )
    return seal_record(K[7], replace(unsigned, version=unsigned.version + 1000))


def _branch(s: Scene) -> GroupRecord:
    """What another part of the group wrote after splitting off at an older version."""
    ancestor = record(0, [0, 1, 2, 3], version=1, at=T0 - 60)
    return successor(ancestor, 1, [1, 3], s.now)  # version 2, like ours, but another branch


@pytest.mark.parametrize("case", sorted(RECORDS))
def test_what_a_member_makes_of_a_version_it_hears(case: str) -> None:
    build, verdict = RECORDS[case]
    s = all_beating(scene(2, 0, [0, 1, 2, 3]), 5)
    offered = build(s)
    held_before = s.m.record
    assert s.m.on_record(offered, s.now) is verdict
    if verdict is not RecordVerdict.ADOPTED:
        assert s.m.record is held_before


def test_a_forged_version_leaves_every_member_in_place() -> None:
    s = all_beating(scene(2, 0, [0, 1, 2, 3]), 5)
    for listed in ([7], [7, 2], [0, 1, 3, 7]):
        s.m.on_record(_outsider(s, listed), s.now)
    assert s.m.listed == {P[0], P[1], P[2], P[3]} and s.m.leader == P[0]
    assert s.m.tick(s.now).action is Action.NONE
    assert s.m.counts["forged"] == 3


# --- freshness ----------------------------------------------------------------------------------


def test_a_dead_members_heartbeat_replayed_after_two_minutes_does_not_make_it_live() -> None:
    s = scene(0, 0, [0, 1, 2])
    recorded = beat(2, s.now)
    s.m.on_heartbeat(recorded, s.now)
    all_beating(s, 120, silent=(2,))
    assert P[2] not in s.m.live(s.now)
    assert s.m.on_heartbeat(recorded, s.now) is Heard.STALE
    assert P[2] not in s.m.live(s.now)


def test_a_heartbeat_replayed_within_the_window_is_dropped_as_a_replay() -> None:
    s = scene(0, 0, [0, 1, 2])
    recorded = beat(2, s.now)
    assert s.m.on_heartbeat(recorded, s.now) is Heard.TAKEN
    s.later(40)
    assert s.m.on_heartbeat(recorded, s.now) is Heard.REPLAYED
    assert P[2] not in s.m.live(s.now)
    assert s.m.freshness.dropped["replayed"] == 1


def test_messages_from_peers_not_listed_are_not_taken() -> None:
    s = scene(0, 0, [0, 1, 2])
    assert s.m.on_heartbeat(beat(7, s.now), s.now) is Heard.NOT_MEMBER
    assert P[7] not in s.m.live(s.now)


# --- joins --------------------------------------------------------------------------------------

JOINS = {
    "the leader admits a newcomer while there is room": (0, [0, 1, 2], 10, 7, Verdict.ADMIT),
    "the leader refuses when the members it would list fill the group": (0, [0, 1, 2], 3, 7, Verdict.FULL),
    "a member that is not the leader redirects": (1, [0, 1, 2], 10, 7, Verdict.REDIRECT),
    "a listed member asking again is told it is in": (1, [0, 1, 2], 10, 2, Verdict.ALREADY_MEMBER),
}


@pytest.mark.parametrize("case", sorted(JOINS))
def test_who_is_let_in(case: str) -> None:
    me, listed, capacity, candidate, verdict = JOINS[case]
    s = all_beating(scene(me, 0, listed, capacity=capacity), 5)
    assert s.m.judge_join(P[candidate], True, False, None, s.now) is verdict


def test_a_distrusted_member_is_left_out_of_the_next_version_and_not_let_in_again_soon() -> None:
    s = all_beating(scene(0, 0, [0, 1, 2, 3]), 5)
    s.m.distrust(P[3], s.now)
    decision = s.m.tick(s.now)
    assert decision.action is Action.WRITE_RECORD and decision.members == {P[0], P[1], P[2]}
    s.m.adopt_own(successor(s.m.record, 0, [0, 1, 2], s.now), s.now)
    assert s.m.judge_join(P[3], True, False, None, s.now) is Verdict.DISTRUSTED
    s.later(RULES.distrust_for + 1)
    assert s.m.judge_join(P[3], True, False, None, s.now) is not Verdict.DISTRUSTED


def test_a_leader_never_distrusts_itself() -> None:
    s = all_beating(scene(0, 0, [0, 1, 2]), 5)
    s.m.distrust(P[0], s.now)
    assert P[0] in s.m.members_to_list(s.now)


# --- catching up ---------------------------------------------------------------------------------


def test_one_member_claiming_to_be_far_ahead_is_not_followed() -> None:
    s = scene(2, 0, [0, 1, 2, 3, 4])
    s.hear(0, 1, 3, round_number=5, model_hash=b"h5")
    s.hear(4, round_number=10**6, model_hash=b"garbage")
    target = s.m.catch_up_target(5, s.now)
    assert target is None
    assert not s.m.group_moved_on(5, s.now)


def test_a_round_reported_by_a_majority_of_the_live_members_is_followed() -> None:
    s = scene(2, 0, [0, 1, 2, 3, 4])
    s.hear(0, 1, 3, round_number=7, model_hash=b"h7")
    s.hear(4, round_number=10**6, model_hash=b"garbage")
    target = s.m.catch_up_target(5, s.now)
    assert target is not None and (target.round, target.model_hash, target.vouched_by) == (
        7,
        b"h7",
        "majority",
    )
    assert set(target.holders) == {P[0], P[1], P[3]}


def test_the_model_the_leaders_record_names_is_followed_in_a_group_of_two() -> None:
    s = scene(1, 0, [0, 1], model_hash=b"h9", round_number=9)
    s.hear(0, round_number=9, model_hash=b"h9")
    target = s.m.catch_up_target(3, s.now)
    assert target is not None and (target.round, target.vouched_by, target.holders[0]) == (9, "record", P[0])


def test_in_a_group_of_two_the_other_members_claim_alone_is_not_enough() -> None:
    s = scene(1, 0, [0, 1])
    s.hear(0, round_number=9, model_hash=b"h9")
    assert s.m.catch_up_target(3, s.now) is None


def test_a_member_behind_a_group_that_holds_no_one_model_is_offered_the_models_of_the_majority() -> None:
    s = scene(0, 0, [0, 1, 2, 3])  # we lead, our record is at our own round: it vouches for nothing
    s.hear(1, round_number=13, model_hash=b"hA")
    s.hear(2, 3, round_number=13, model_hash=b"hB")
    assert s.m.catch_up_target(7, s.now) is None
    offered = s.m.diverged_targets(7, s.now)
    assert [(t.round, t.model_hash, set(t.holders)) for t in offered] == [
        (13, b"hB", {P[2], P[3]}),
        (13, b"hA", {P[1]}),
    ]
    assert s.m.diverged_targets(13, s.now) == ()  # in step: nothing to take


def test_an_announcement_says_its_authors_round_and_model_as_a_heartbeat_would() -> None:
    s = scene(0, 0, [0, 1, 2, 3])
    s.hear(1, 2, 3, round_number=3, model_hash=b"h3")
    for author in (1, 2, 3):  # the round after: only their announcements have come yet
        s.m.on_announce(Stamp(P[author], next(_seq), s.now), GROUP, 4, b"h4", s.now)
    target = s.m.catch_up_target(2, s.now)
    assert target is not None and (target.round, target.model_hash) == (4, b"h4")
    s.m.on_announce(Stamp(P[1], next(_seq), s.now), GROUP, 2, b"h2", s.now)  # an old round moves nothing
    assert s.m.view_of(P[1]).round == 4 and s.m.view_of(P[1]).model_hash == b"h4"


DIVERGED: dict[str, tuple[list[tuple[int, int, bytes]], int | None, list[bytes]]] = {
    # (member, round, hash) heard; the majority's round; the hashes offered, in order
    "one liar far ahead moves nobody": ([(1, 4, b"a"), (2, 4, b"b"), (3, 10**6, b"x")], None, []),
    "the liar's round is not the majority's": (
        [(1, 9, b"a"), (2, 9, b"b"), (3, 10**6, b"x")],
        9,
        [b"a", b"b", b"x"],
    ),
    "a majority at different rounds: the latest all of it reached": (
        [(1, 8, b"a"), (2, 9, b"b"), (3, 12, b"c")],
        8,
        [b"a", b"b", b"c"],
    ),
    "the most reported model first": ([(1, 9, b"z"), (2, 9, b"y"), (3, 9, b"y")], 9, [b"y", b"z"]),
    "half is not a majority": ([(1, 9, b"a"), (2, 9, b"b")], None, []),
}


@pytest.mark.parametrize("case", DIVERGED)
def test_the_round_of_a_diverged_majority_and_the_models_it_offers(case: str) -> None:
    heard, expected_round, expected_hashes = DIVERGED[case]
    s = scene(0, 0, [0, 1, 2, 3] if case != "half is not a majority" else [0, 1, 2, 3, 4])
    for member, round_number, model_hash in heard:
        s.hear(member, round_number=round_number, model_hash=model_hash)
    offered = s.m.diverged_targets(4, s.now)
    assert [t.model_hash for t in offered] == expected_hashes
    assert {t.round for t in offered} == ({expected_round} if expected_round is not None else set())


def test_no_more_than_a_few_models_are_offered() -> None:
    s = scene(0, 0, list(range(8)))
    for member in range(1, 8):
        s.hear(member, round_number=9, model_hash=bytes([member]))
    assert len(s.m.diverged_targets(4, s.now)) == MAX_CANDIDATES


# --- diverged parts -------------------------------------------------------------------------------


def offer(author: int, part: GroupRecord, own: float, other: float, live: int, at: float) -> MergeOffer:
    return MergeOffer(Stamp(P[author], next(_seq), at), GROUP, part, b"", own, other, live)


MERGES = {
    # (scores of part A's leader: own, other), (part B's: own, other), live members (A, B), winner
    "the better model wins": ((0.80, 0.90), (0.90, 0.82), (4, 4), "B"),
    "a lone stalled node's own opinion does not outvote the group": ((0.95, 0.70), (0.93, 0.60), (1, 9), "B"),
    "a tie goes to the part with more live members": ((0.9, 0.9), (0.9, 0.9), (3, 5), "B"),
    "a full tie goes to the lower leader id": ((0.9, 0.9), (0.9, 0.9), (4, 4), "A"),
}


@pytest.mark.parametrize("case", sorted(MERGES))
def test_which_part_of_a_diverged_group_wins(case: str) -> None:
    (a_own, a_other), (b_own, b_other), (a_live, b_live), winner = MERGES[case]
    part_a, part_b = record(0, [0, 1, 2, 3]), record(4, [4, 5, 6, 7])
    first = offer(0, part_a, a_own, a_other, a_live, T0)
    second = offer(4, part_b, b_own, b_other, b_live, T0)
    expected = P[0] if winner == "A" else P[4]
    assert merge_winner(first, second) == expected
    assert merge_winner(second, first) == expected  # every member computes the same, in any order


def test_the_members_of_the_losing_part_rejoin_the_winning_part() -> None:
    # we (P2) are in part A led by P0; part B led by P1 (a member of ours) diverged after a partition
    s = all_beating(scene(2, 0, [0, 2, 3]), 5)
    part_b = _branch_led_by(s, 1, [1, 4])
    assert s.m.on_record(part_b, s.now) is RecordVerdict.FORK
    s.m.on_merge_offer(offer(0, s.m.record, 0.70, 0.90, 3, s.now), s.now)
    assert s.m.tick(s.now).action is Action.NONE  # one offer is not a decision
    s.m.on_merge_offer(offer(1, part_b, 0.92, 0.71, 2, s.now), s.now)
    decision = s.m.tick(s.now)
    assert decision.action is Action.REJOIN and decision.reason == "merge"
    assert decision.record == part_b and decision.peers[0] == P[1]


def test_the_leader_of_a_part_offers_a_merge_when_it_hears_a_diverged_part() -> None:
    s = all_beating(scene(0, 0, [0, 2, 3]), 5)
    part_b = _branch_led_by(s, 1, [1, 4])
    s.m.on_record(part_b, s.now)
    decision = s.m.tick(s.now)
    assert decision.action is Action.OFFER_MERGE and decision.record == part_b


def test_the_winning_part_stays_and_forgets_the_fork_once_the_other_leader_is_listed() -> None:
    s = all_beating(scene(2, 0, [0, 2, 3]), 5)
    part_b = _branch_led_by(s, 1, [1, 4])
    s.m.on_record(part_b, s.now)
    s.m.on_merge_offer(offer(0, s.m.record, 0.95, 0.70, 3, s.now), s.now)
    s.m.on_merge_offer(offer(1, part_b, 0.80, 0.94, 2, s.now), s.now)
    assert s.m.tick(s.now).action is Action.NONE
    s.m.on_record(successor(s.m.record, 0, [0, 1, 2, 3, 4], s.now + 1), s.now + 1)  # they joined us
    assert s.m.fork is not None  # listed, but it has not said it follows our version yet
    s.hear(1, record_digest=s.m.record.digest)
    s.m.tick(s.now)
    assert s.m.fork is None


def test_a_diverged_part_whose_leader_we_still_list_is_not_mistaken_for_a_member() -> None:
    # after a partition our version still lists the other part's leader, which leads its own version
    s = all_beating(scene(0, 0, [0, 1, 2, 3, 4]), 5)
    part_b = _branch_led_by(s, 3, [3, 4])
    s.m.on_record(part_b, s.now)
    s.hear(3, 4, record_digest=part_b.digest)
    assert s.m.tick(s.now).action is Action.OFFER_MERGE


def test_a_forged_part_never_takes_part_in_a_merge() -> None:
    s = all_beating(scene(2, 0, [0, 2, 3]), 5)
    forged = _outsider(s, [7, 6])
    assert s.m.on_record(forged, s.now) is RecordVerdict.FORGED
    assert s.m.on_merge_offer(offer(7, forged, 0.99, 0.0, 9, s.now), s.now) is Heard.NOT_MEMBER
    assert s.m.fork is None and s.m.tick(s.now).action is Action.NONE


def _branch_led_by(s: Scene, leader: int, listed: list[int]) -> GroupRecord:
    ancestor = record(0, sorted({0, 2, 3, *listed}), version=1, at=T0 - 60)
    s.m.roster.remember(P[leader], ())  # it was a member of ours before the parts diverged
    return successor(ancestor, leader, listed, s.now)
