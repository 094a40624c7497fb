"""Kademlia's iterative lookup (policy/lookup.py), as a table of who is asked and when it ends."""

from __future__ import annotations

from mycelium.policy.lookup import Lookup, distance, key_position
from mycelium.policy.peers import PeerId

KEY = b"/mycelium/group/abc"
ME = PeerId(b"me")


def peers(count: int, prefix: str = "p") -> list[PeerId]:
    return [PeerId(f"{prefix}{i}".encode()) for i in range(count)]


def by_closeness(candidates: list[PeerId]) -> list[PeerId]:
    return sorted(candidates, key=lambda peer: distance(key_position(KEY), peer))


def test_a_lookup_without_seeds_is_done_at_once() -> None:
    lookup = Lookup(KEY, [], ME)
    assert lookup.done and lookup.next_queries() == [] and lookup.closest() == []


def test_at_most_alpha_are_asked_at_once_closest_first_and_never_ourselves() -> None:
    seeds = peers(8)
    lookup = Lookup(KEY, [*seeds, ME], ME, k=5, alpha=3)
    asked = lookup.next_queries()
    assert asked == by_closeness(seeds)[:3]
    assert lookup.next_queries() == []  # all three slots are busy


def test_it_is_done_only_when_the_k_closest_have_answered() -> None:
    ordered = by_closeness(peers(8))
    lookup = Lookup(KEY, ordered, ME, k=5, alpha=2)
    answered: list[PeerId] = []
    while len(answered) < 5:
        assert not lookup.done
        for peer in lookup.next_queries():
            lookup.answered(peer, [])
            answered.append(peer)
    assert answered == ordered[:5]
    assert lookup.done
    assert lookup.closest() == ordered[:5]


def test_closer_peers_named_in_answers_are_asked_before_it_ends() -> None:
    far, near = peers(4, "far"), peers(4, "near")
    everyone = by_closeness(far + near)
    seeds = [peer for peer in everyone if peer in far]
    lookup = Lookup(KEY, seeds, ME, k=4, alpha=4)
    for peer in lookup.next_queries():
        lookup.answered(peer, near)
    asked_next = lookup.next_queries()
    assert set(asked_next) == set(everyone[:4]) - set(seeds)
    for peer in asked_next:
        lookup.answered(peer, [])
    assert lookup.done
    assert lookup.closest() == everyone[:4]


def test_a_failed_peer_is_replaced_by_the_next_closest() -> None:
    ordered = by_closeness(peers(4))
    lookup = Lookup(KEY, ordered, ME, k=2, alpha=2)
    first, second = lookup.next_queries()
    lookup.failed(first)
    lookup.answered(second, [])
    assert not lookup.done
    assert lookup.next_queries() == [ordered[2]]
    lookup.answered(ordered[2], [])
    assert lookup.done and lookup.closest() == [second, ordered[2]]


def test_peers_that_keep_naming_made_up_closer_peers_cannot_keep_it_going() -> None:
    lookup = Lookup(KEY, peers(3), ME, k=3, alpha=3, max_queries=9)
    fresh = 0
    while not lookup.done:
        for peer in lookup.next_queries():
            lookup.answered(peer, peers(5, f"fake{fresh}-"))
            fresh += 1
    assert len(lookup._asked) <= 9


def test_only_the_closest_candidates_are_kept() -> None:
    lookup = Lookup(KEY, peers(50), ME, k=3, alpha=3, max_candidates=10)
    assert len(lookup._distance) == 10
    assert set(lookup._distance) == set(by_closeness(peers(50))[:10])


def test_a_store_lookup_ends_once_the_beta_closest_have_answered_and_names_the_k_closest_known() -> None:
    ordered = by_closeness(peers(10))
    lookup = Lookup(KEY, ordered, ME, k=6, alpha=4, beta=2)
    first_wave = lookup.next_queries()
    assert first_wave == ordered[:4]
    lookup.answered(ordered[1], [])
    assert not lookup.done
    lookup.answered(ordered[0], [])
    assert lookup.done  # two still in flight, and ordered[4:6] never asked
    assert lookup.closest_known() == ordered[:6]
