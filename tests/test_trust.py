"""Trust: each round's score of a peer's update, and the reputation book built from the scores."""

from __future__ import annotations

import math

import pytest

from mycelium.policy.peers import PeerId
from mycelium.policy.trust import Evidence, Reputation, TrustRules, deviations, explain, round_score

RULES = TrustRules()
HONEST = Evidence(agreement=0.4, agreement_z=0.5, size_z=0.2, harm=0.0, claimed=100, bound=200.0)
A, B = PeerId(b"\x00\x01"), PeerId(b"\x00\x02")

SCORES = [
    ("an honest update", {}, 1.0),
    ("a little more disagreement than most, within z_ok", {"agreement_z": 2.9}, 1.0),
    (
        "pointing away, half way through the span",
        {"agreement": -0.1, "agreement_z": RULES.z_ok + RULES.z_span / 2},
        0.5,
    ),
    ("pointing away, past the span", {"agreement": -0.5, "agreement_z": 12.0}, 0.0),
    ("pointing away but no more than most do", {"agreement": -0.05, "agreement_z": 1.0}, 1.0),
    ("agreeing little but positively (other data: the split rule's case)", {"agreement_z": 12.0}, 1.0),
    ("agreeing more than most counts nothing against it", {"agreement_z": -8.0}, 1.0),
    ("ten times larger than most", {"size_z": 23.0}, 0.0),
    ("smaller than most counts nothing against it", {"size_z": -9.0}, 1.0),
    ("raising our loss by half the harm scale", {"harm": RULES.harm_scale / 2}, 0.5),
    ("lowering our loss", {"harm": -0.3}, 1.0),
    ("claiming ten times the bound", {"claimed": 2000}, 0.1),
    ("claiming a billion samples", {"claimed": 10**9}, 2e-7),
    ("claiming nothing", {"claimed": 0}, 1.0),
    ("a NaN measurement scores nothing", {"harm": math.nan}, 0.0),
]


@pytest.mark.parametrize(("case", "changes", "score"), SCORES)
def test_round_score(case: str, changes: dict, score: float) -> None:
    from dataclasses import replace

    assert round_score(replace(HONEST, **changes), RULES) == pytest.approx(score), case


@pytest.mark.parametrize(
    ("values", "spread", "expected"),
    [
        ([1.0, 2.0, 3.0, 4.0, 100.0], 0.1, [-2.0, -1.0, 0.0, 1.0, 97.0]),
        ([5.0, 5.0, 5.0], 0.5, [0.0, 0.0, 0.0]),  # no spread: the floor keeps the scale finite
        ([0.0, 0.0, 0.0, 1.0], 0.5, [-0.0, -0.0, -0.0, 2.0]),
    ],
)
def test_deviations_are_robust_z_scores_with_a_floor_on_the_spread(
    values: list[float], spread: float, expected: list[float]
) -> None:
    assert deviations(values, spread) == pytest.approx(expected)


def test_a_peer_scoring_zero_falls_below_the_floor_in_two_rounds_and_is_due_for_removal_after_three() -> None:
    book = Reputation(RULES)
    assert book.trusted(A) and book.of(A) == RULES.initial
    book.record(A, 0.0)
    assert book.trusted(A)  # 0.30: one bad round is not yet enough
    book.record(A, 0.0)
    assert not book.trusted(A) and not book.should_evict(A)
    book.record(A, 0.0)
    book.record(A, 0.0)
    assert book.should_evict(A)


def test_an_honest_peer_climbs_towards_one_and_a_bad_round_does_not_exclude_it() -> None:
    book = Reputation(RULES)
    for _ in range(5):
        book.record(A, 1.0)
    book.record(A, 0.0)
    assert book.trusted(A) and 0.3 < book.of(A) < 1.0


def test_rounds_below_the_floor_count_only_in_a_row() -> None:
    book = Reputation(RULES)
    for score in (0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0):
        book.record(A, score)
    assert book.book[A].rounds_below == 0 and not book.should_evict(A)


def test_scores_outside_zero_to_one_are_clamped() -> None:
    book = Reputation(RULES)
    book.record(A, 50.0)
    book.record(B, -50.0)
    assert 0.0 <= book.of(B) < book.of(A) <= 1.0


def test_the_book_keeps_at_most_capacity_peers_and_forgets_the_least_recently_scored() -> None:
    book = Reputation(TrustRules(capacity=3))
    peers = [PeerId(bytes([0, i + 1])) for i in range(5)]
    for peer in peers:
        book.record(peer, 0.0)
    book.record(peers[2], 0.0)
    assert list(book.book) == [peers[3], peers[4], peers[2]]


def test_the_book_survives_a_round_trip_through_json() -> None:
    book = Reputation(RULES)
    book.record(A, 0.0)
    book.record(B, 1.0)
    again = Reputation.from_json(book.to_json(), RULES)
    assert again.of(A) == book.of(A) and again.of(B) == book.of(B)
    assert again.book[A].rounds_below == book.book[A].rounds_below


@pytest.mark.parametrize(
    "data",
    [None, [], "x", {"not a peer id!": [0.1, 0]}, {str(A): "x"}, {str(A): [math.nan, 0]}, {str(A): []}],
)
def test_a_damaged_book_loads_empty_entries_never_more_trust(data: object) -> None:
    assert Reputation.from_json(data, RULES).book == {}


def test_a_loaded_level_is_clamped_to_zero_to_one() -> None:
    assert Reputation.from_json({str(A): [7.0, -3]}, RULES).book[A].reputation == 1.0


def test_explain_names_what_scored_low() -> None:
    from dataclasses import replace

    assert "too large" in explain(replace(HONEST, size_z=20.0), RULES)
    assert "claims 1000000000 samples" in explain(replace(HONEST, claimed=10**9), RULES)


def test_an_update_from_a_round_old_base_is_measured_against_that_base() -> None:
    """A member one round behind trained from our previous model: against our model its update
    looks large and reversed; against its own base it is an update like the others."""
    from collections import OrderedDict

    import numpy as np

    from mycelium.node.trust import Scored, measure

    rng = np.random.default_rng(3)
    ours = OrderedDict(x=np.zeros(50, dtype=np.float32))
    previous = OrderedDict(x=np.full(50, -0.3, dtype=np.float32))
    peers = [PeerId(bytes([0, i + 1])) for i in range(7)]

    def trained(base: OrderedDict) -> OrderedDict:
        return OrderedDict(x=(base["x"] + 0.1 + 0.02 * rng.standard_normal(50)).astype(np.float32))

    honest = [Scored(p, trained(ours), 100) for p in peers[:6]]
    late = trained(previous)

    def score(scored: Scored) -> float:
        evidence = measure(lambda _: 1.0, ours, [*honest, scored], peers[0], RULES)
        return round_score(evidence[peers[6]], RULES)

    assert score(Scored(peers[6], late, 100, base=previous)) == 1.0
    assert score(Scored(peers[6], late, 100)) < 0.5  # why the base matters
