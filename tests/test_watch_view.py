"""What the explorer's observer believes (mycelium/watch/view.py), as a table of what it hears."""

from __future__ import annotations

import math

from libp2p.crypto.ed25519 import create_new_key_pair

from mycelium.net.messages import seal_record
from mycelium.net.signing import peer_id_of
from mycelium.policy.messages import Announce, Goodbye, Heartbeat, Stamp
from mycelium.policy.records import GroupRecord, JoinPolicy, Member, Metrics, group_id_for
from mycelium.watch import view as view_module
from mycelium.watch.view import SILENT_AFTER, NetworkView

T0 = 1_800_000_000.0
K = [create_new_key_pair(bytes([i + 1]) * 32) for i in range(6)]
P = [peer_id_of(k) for k in K]
A = group_id_for(P[0], b"a" * 16)
B = group_id_for(P[3], b"b" * 16)
_seq = iter(range(1, 10**9))


def record(
    group: str,
    creator: int,
    leader: int,
    listed: list[int],
    at: float = T0,
    version: int = 1,
    round_number: int = 0,
    accuracy: float = 0.8,
    task: str = "digits-mlp",
    previous: bytes = b"",
    ttl: float = 90,
) -> GroupRecord:
    unsigned = GroupRecord(
        group_id=group,
        task=task,
        name="",
        model_fingerprint="mlp:x",
        policy=JoinPolicy.OPEN,
        capacity=10,
        round=round_number,
        members=tuple(Member(P[i], at, at) for i in listed),
        metrics=Metrics(accuracy=accuracy),
        version=version,
        updated_at=at,
        expires_at=at + ttl,
        creator=P[creator],
        nonce=(b"a" if group == A else b"b") * 16,
        leader=P[leader],
        previous=previous,
    )
    return seal_record(K[leader], unsigned)


def next_version(held: GroupRecord, listed: list[int], at: float, **changes) -> GroupRecord:  # type: ignore[no-untyped-def]
    unsigned = held.successor(
        at, 90, leader=held.leader, members=tuple(Member(P[i], at, at) for i in listed), **changes
    )
    return seal_record(K[P.index(held.leader)], unsigned)


def beat(
    author: int, group: str, at: float, accuracy: float = 0.9, round_number: int = 1, seq: int | None = None
) -> Heartbeat:
    return Heartbeat(
        Stamp(P[author], next(_seq) if seq is None else seq, at),
        group,
        round_number,
        b"",
        accuracy,
        (),
        1,
        b"",
        bytes_in=1000,
        bytes_out=2000,
    )


def announce(author: int, group: str, at: float, round_number: int, inline: bool) -> Announce:
    return Announce(
        Stamp(P[author], next(_seq), at),
        group,
        round_number,
        100,
        0.9,
        0.1,
        b"h" * 32,
        500_000,
        0,
        b"x" if inline else b"",
        "mlp:x",
        b"",
        (),
    )


def two_groups() -> NetworkView:
    view = NetworkView("digits-mlp")
    view.on_record(record(A, 0, 0, [0, 1, 2]), T0)
    view.on_record(record(B, 3, 3, [3, 4]), T0)
    return view


def kinds(view: NetworkView) -> list[str]:
    return [h.kind for h in view.happenings]


def test_a_record_makes_a_group_and_places_its_members() -> None:
    view = two_groups()
    shot = view.snapshot(T0)
    assert {g["id"]: sorted(g["members"]) for g in shot["groups"]} == {
        A: sorted(str(P[i]) for i in (0, 1, 2)),
        B: sorted(str(P[i]) for i in (3, 4)),
    }
    assert {p["id"]: p["group"] for p in shot["peers"]} == {
        **{str(P[i]): A for i in (0, 1, 2)},
        **{str(P[i]): B for i in (3, 4)},
    }
    assert kinds(view).count("formed") == 2 and kinds(view).count("joined") == 5


def test_a_record_of_another_task_is_not_shown() -> None:
    view = NetworkView("digits-mlp")
    view.on_record(record(A, 0, 0, [0], task="mnist-mlp"), T0)
    assert view.snapshot(T0)["groups"] == [] and view.ignored["other task"] == 1


def test_a_version_not_signed_by_the_leader_is_not_believed() -> None:
    view = two_groups()
    held = view.groups[A].record
    forged = seal_record(K[5], held.successor(T0 + 1, 90, leader=P[5], members=(Member(P[5], T0, T0),)))
    view.on_record(forged, T0 + 1)
    assert view.groups[A].record.member_ids == {P[0], P[1], P[2]}
    assert str(P[5]) not in view.peers


def test_an_outsider_talking_on_a_group_topic_is_not_drawn_into_the_group() -> None:
    view = two_groups()
    view.on_heartbeat(beat(5, A, T0), T0)
    assert str(P[5]) not in view.peers and view.ignored["not a member"] == 1


def test_a_replayed_heartbeat_is_not_taken_again() -> None:
    view = two_groups()
    view.on_heartbeat(beat(1, A, T0, accuracy=0.9, seq=7), T0)
    view.on_heartbeat(beat(1, A, T0, accuracy=0.1, seq=7), T0 + 1)
    assert view.peers[str(P[1])].accuracy == 0.9 and view.ignored["replayed"] == 1


def test_a_stale_heartbeat_is_not_taken() -> None:
    view = two_groups()
    view.on_heartbeat(beat(1, A, T0 - 120), T0)
    assert math.isnan(view.peers[str(P[1])].accuracy) and view.ignored["stale"] == 1


def test_measured_is_the_mean_of_the_members_reports_and_advertised_is_the_records_claim() -> None:
    view = two_groups()
    view.on_heartbeat(beat(0, A, T0, accuracy=0.9), T0)
    view.on_heartbeat(beat(1, A, T0, accuracy=0.7), T0)
    view.on_heartbeat(beat(2, A, T0, accuracy=0.0), T0)  # 0: not evaluated yet, not a report
    group = next(g for g in view.snapshot(T0)["groups"] if g["id"] == A)
    assert group["measured"] == 0.8 and group["advertised"] == 0.8
    assert group["accuracy"] == [[1, 0.8]]


def test_a_peer_listed_by_a_newer_group_has_moved_and_an_older_record_does_not_move_it_back() -> None:
    view = two_groups()
    old_a = view.groups[A].record
    view.on_record(next_version(view.groups[B].record, [1, 3, 4], T0 + 10), T0 + 10)
    assert view.peers[str(P[1])].group == B and view.peers[str(P[1])].migrations == 1
    assert "moved" in kinds(view)
    view.on_record(old_a, T0 + 11)  # an old copy from the DHT still lists it in A
    assert view.peers[str(P[1])].group == B


def test_a_member_dropped_from_its_record_has_left() -> None:
    view = two_groups()
    view.on_record(next_version(view.groups[A].record, [0, 1], T0 + 5), T0 + 5)
    assert "left" in kinds(view)
    peers = {p["id"]: p for p in view.snapshot(T0 + 5)["peers"]}
    assert not peers[str(P[2])]["listed"] and peers[str(P[1])]["listed"]


def test_a_peer_heard_from_no_more_goes_silent_and_is_back_when_heard_again() -> None:
    view = two_groups()
    view.on_heartbeat(beat(1, A, T0 + 5), T0 + 5)
    view.tick(T0 + 5 + SILENT_AFTER - 1)
    assert not view.peers[str(P[1])].silent
    view.tick(T0 + 5 + SILENT_AFTER + 1)
    assert view.peers[str(P[1])].silent and "silent" in kinds(view)
    later = T0 + 5 + SILENT_AFTER + 2
    view.on_heartbeat(beat(1, A, later), later)
    assert not view.peers[str(P[1])].silent and kinds(view)[-1] == "back"


def test_a_group_whose_record_expired_is_gone() -> None:
    view = two_groups()
    view.tick(T0 + 91)
    assert view.snapshot(T0 + 91)["groups"] == [] and kinds(view).count("gone") == 2


def test_a_pulled_update_is_in_flight_until_the_group_is_past_its_round() -> None:
    view = two_groups()
    view.on_announce(announce(1, A, T0, round_number=1, inline=False), T0)
    assert [t["author"] for t in view.snapshot(T0 + 1)["transfers"]] == [str(P[1])]
    assert view.snapshot(T0)["bytes"]["announced_to_members"] == 500_000 * 2
    view.on_heartbeat(beat(0, A, T0 + 2, round_number=2), T0 + 2)
    view.tick(T0 + 2)
    assert view.snapshot(T0 + 2)["transfers"] == []


def test_an_update_inside_its_announcement_is_shown_for_a_moment_only() -> None:
    view = two_groups()
    view.on_announce(announce(1, A, T0, round_number=1, inline=True), T0)
    assert len(view.snapshot(T0 + 1)["transfers"]) == 1
    view.tick(T0 + view_module.INLINE_SHOWN + 0.1)
    assert view.snapshot(T0 + view_module.INLINE_SHOWN + 0.1)["transfers"] == []


def test_a_goodbye_from_a_member_is_a_happening() -> None:
    view = two_groups()
    view.on_goodbye(Goodbye(Stamp(P[2], next(_seq), T0), A, "finished"), T0)
    assert kinds(view)[-1] == "left" and "finished" in view.happenings[-1].text


def test_every_memory_of_the_view_is_bounded(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(view_module, "MAX_GROUPS", 3)
    monkeypatch.setattr(view_module, "MAX_PEERS", 4)
    view = NetworkView("digits-mlp")
    for i in range(6):
        view.on_record(record(group_id_for(P[i], bytes([i]) * 16), i, i, [i]), T0 + i)
    assert len(view.groups) == 3 and len(view.peers) == 4
    assert len(view.happenings) <= view_module.MAX_HAPPENINGS
