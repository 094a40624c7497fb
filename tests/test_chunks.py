"""Swarming's pure rules (policy/chunks.py): manifests, bitfields, which chunk to ask whom for."""

from __future__ import annotations

import os
import random

import pytest

from mycelium.policy.chunks import (
    ENDGAME_COPIES,
    ChunkBook,
    Manifest,
    ManifestError,
    checked_manifest,
    chunk_count,
    decode_bitfield,
    encode_bitfield,
    manifest_hash,
)

CHUNK = 1024
BLOB = os.urandom(5 * CHUNK + 100)


@pytest.mark.parametrize(
    ("total", "count", "last"),
    [(0, 1, 0), (1, 1, 1), (CHUNK, 1, CHUNK), (CHUNK + 1, 2, 1), (5 * CHUNK + 100, 6, 100)],
)
def test_a_blob_is_cut_into_whole_chunks_and_one_shorter_last(total: int, count: int, last: int) -> None:
    manifest = Manifest.of(os.urandom(total), CHUNK)
    assert chunk_count(total, CHUNK) == manifest.count == count
    assert manifest.span(count - 1) == ((count - 1) * CHUNK, last)


def test_each_chunk_verifies_against_its_own_hash_only() -> None:
    manifest = Manifest.of(BLOB, CHUNK)
    first, second = BLOB[:CHUNK], BLOB[CHUNK : 2 * CHUNK]
    assert manifest.verifies(0, first) and manifest.verifies(1, second)
    flipped = bytes([first[0] ^ 1]) + first[1:]
    assert not manifest.verifies(0, flipped)
    assert not manifest.verifies(1, first), "a good chunk at the wrong index"
    assert not manifest.verifies(5, BLOB[5 * CHUNK :] + b"x"), "the right bytes plus one"
    assert not manifest.verifies(6, b""), "past the end"


def _check(manifest: Manifest, **changes: object) -> Manifest:
    arguments: dict[str, object] = {
        "chunk_size": manifest.chunk_size,
        "total_size": manifest.total_size,
        "chunk_hashes": list(manifest.chunk_hashes),
        "expected_hash": manifest.digest(),
        "expected_size": manifest.total_size,
        "max_size": 1 << 20,
        "allowed_chunk_sizes": (CHUNK,),
    }
    arguments.update(changes)
    return checked_manifest(**arguments)  # type: ignore[arg-type]


REAL = Manifest.of(BLOB, CHUNK)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({}, None),
        ({"expected_hash": None}, None),  # no signed hash: shape checks only
        ({"chunk_hashes": [bytes(32)] + list(REAL.chunk_hashes[1:])}, "signed"),
        ({"chunk_hashes": list(REAL.chunk_hashes[:-1])}, "lists 5 chunks"),
        ({"chunk_hashes": [b"short"] + list(REAL.chunk_hashes[1:]), "expected_hash": None}, "32 bytes"),
        ({"total_size": REAL.total_size + 1}, "offers"),
        ({"chunk_size": 2 * CHUNK}, "chunk size"),
        ({"expected_size": None, "max_size": 100}, "offers"),
    ],
)
def test_a_manifest_from_a_holder_is_checked_for_shape_and_against_the_signed_hash(
    changes: dict[str, object], error: str | None
) -> None:
    if error is None:
        assert _check(REAL, **changes) == REAL
    else:
        with pytest.raises(ManifestError, match=error):
            _check(REAL, **changes)


def test_the_manifest_hash_binds_chunk_size_and_total_size() -> None:
    hashes = REAL.chunk_hashes
    assert manifest_hash(CHUNK, REAL.total_size, hashes) == REAL.digest()
    assert manifest_hash(CHUNK, REAL.total_size - 1, hashes) != REAL.digest()
    assert manifest_hash(2 * CHUNK, REAL.total_size, hashes) != REAL.digest()


@pytest.mark.parametrize(
    ("held", "count", "bits"),
    [
        (set(), 1, b"\x00"),
        ({0}, 1, b"\x80"),
        ({0, 7}, 8, b"\x81"),
        ({8}, 9, b"\x00\x80"),
        (set(range(10)), 10, b"\xff\xc0"),
    ],
)
def test_bitfields_mark_chunks_most_significant_bit_first(held: set[int], count: int, bits: bytes) -> None:
    assert encode_bitfield(held, count) == bits
    assert decode_bitfield(bits, count) == held


@pytest.mark.parametrize(
    ("bits", "count", "error"),
    [(b"", 1, "0 bytes"), (b"\x00\x00", 8, "2 bytes"), (b"\x01", 7, "past the end")],
)
def test_malformed_bitfields_are_refused(bits: bytes, count: int, error: str) -> None:
    with pytest.raises(ManifestError, match=error):
        decode_bitfield(bits, count)


def book(count: int = 6) -> ChunkBook:
    return ChunkBook(count, rng=random.Random(0))


def test_the_rarest_chunk_is_asked_for_first() -> None:
    chunks = book()
    chunks.have("seed", frozenset(range(6)))
    chunks.have("a", frozenset({0, 1, 2, 3, 4}))
    chunks.have("b", frozenset({0, 1, 2, 3}))
    assert chunks.pick("seed", 2) == [5, 4], "5 is held by one holder, 4 by two"


def test_pullers_asking_one_seed_get_different_chunks() -> None:
    chunks = book(8)
    for holder in "abcd":
        chunks.have(holder, frozenset(range(8)))
    picked = [chunks.pick(holder, 2) for holder in "abcd"]
    assert sorted(i for pair in picked for i in pair) == list(range(8)), "no chunk asked for twice"


def test_nothing_is_asked_of_a_holder_with_nothing_we_miss() -> None:
    chunks = book(2)
    chunks.have("a", frozenset({0}))
    chunks.received("x", 0)
    assert chunks.pick("a", 4) == [] and chunks.pick("unknown", 4) == []


def test_chunks_a_failed_holder_had_in_flight_go_to_another() -> None:
    chunks = book(2)
    chunks.have("a", frozenset({0, 1}))
    chunks.have("b", frozenset({0, 1}))
    assert sorted(chunks.pick("a", 2)) == [0, 1]
    chunks.released("a", [0, 1])
    assert sorted(chunks.pick("b", 2)) == [0, 1]


def test_a_holder_that_served_a_bad_chunk_is_never_asked_again_nor_counted() -> None:
    chunks = book(3)
    chunks.have("liar", frozenset({0, 1, 2}))
    chunks.have("honest", frozenset({0, 1, 2}))
    chunks.pick("liar", 3)
    chunks.corrupt("liar")
    chunks.have("liar", frozenset({0, 1, 2}))  # what it claims afterwards is ignored
    assert chunks.pick("liar", 3) == [] and chunks.in_flight == {}
    assert sorted(chunks.pick("honest", 3)) == [0, 1, 2]


def test_the_endgame_asks_one_more_holder_for_one_chunk_at_a_time() -> None:
    chunks = book(3)
    for holder in ("slow", "fast", "third"):
        chunks.have(holder, frozenset({0, 1, 2}))
    chunks.received("slow", 0)
    assert sorted(chunks.pick("slow", 4)) == [1, 2]
    assert len(chunks.pick("fast", 4)) == 1, "endgame: one chunk per request"
    picked = chunks.pick("third", 4)
    assert len(picked) == 1 and all(len(chunks.in_flight[i]) <= ENDGAME_COPIES for i in (1, 2))
    assert chunks.pick("slow", 4) == [], "never twice from one holder"


def test_no_endgame_while_chunks_nobody_was_asked_for_remain() -> None:
    chunks = book(3)
    chunks.have("a", frozenset({0, 1}))
    chunks.have("b", frozenset({0, 1}))
    chunks.pick("a", 2)
    assert chunks.pick("b", 2) == [], "chunk 2 is missing and in flight nowhere: not the endgame"


def test_a_duplicate_from_the_endgame_is_not_new_and_completion_is_counted_once() -> None:
    chunks = book(1)
    chunks.have("a", frozenset({0}))
    chunks.have("b", frozenset({0}))
    chunks.pick("a", 1)
    chunks.pick("b", 1)
    assert chunks.received("b", 0) is True and chunks.received("a", 0) is False
    assert chunks.complete and chunks.in_flight == {}
