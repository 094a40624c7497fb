"""Kademlia's iterative lookup as pure state: whom to ask next, and when the answer is final.

Theory of operation. Peers and keys live in one 256-bit space: a key's place is sha256(key), a
peer's is sha256(its raw peer id), and closeness is their XOR (libp2p's Kademlia, go and py alike).
A lookup starts from the closest peers a node already knows. It keeps up to `alpha` questions in
flight, always to the closest candidate not yet asked; every answer names peers closer to the key,
which become candidates. A read is done when nothing is in flight and each of the `k` closest
candidates that did not fail has answered: no closer peer can still be learnt of, and every
replica has been heard. Finding where to store needs less (go-libp2p's resiliency rule): it is done
once the `beta` closest candidates have answered, and the value goes to the `k` closest known.

Bounds: at most `max_candidates` candidates are kept (the closest), and at most `max_queries`
questions are asked, so peers that answer with endless made-up "closer" peers cannot keep a lookup
going. No I/O and no clock: the network layer asks `next_queries`, reports `answered` or `failed`,
and stops at `done`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from mycelium.policy.peers import PeerId

ALPHA = 10  # questions in flight (go-libp2p's and py-libp2p's default)
K = 20  # replicas, and the closest peers a read must hear from
BETA = 3  # the closest peers that must answer before a store knows where to go
MAX_CANDIDATES = 4 * K
MAX_QUERIES = 3 * K


def key_position(key: bytes) -> int:
    return int.from_bytes(hashlib.sha256(key).digest(), "big")


def distance(position: int, peer: PeerId) -> int:
    return position ^ key_position(peer.raw)


class Lookup:
    def __init__(
        self,
        key: bytes,
        seeds: Iterable[PeerId],
        me: PeerId,
        k: int = K,
        alpha: int = ALPHA,
        max_queries: int = MAX_QUERIES,
        max_candidates: int = MAX_CANDIDATES,
        beta: int | None = None,
    ) -> None:
        """`beta`: done once the `beta` closest have answered (a store); None: the `k` closest (a read)."""
        self._position = key_position(key)
        self._me = me
        self._k = k
        self._alpha = alpha
        self._max_queries = max_queries
        self._max_candidates = max_candidates
        self._beta = beta
        self._distance: dict[PeerId, int] = {}
        self._asked: set[PeerId] = set()
        self._in_flight: set[PeerId] = set()
        self._answered: set[PeerId] = set()
        self._failed: set[PeerId] = set()
        self._add(seeds)

    def _add(self, peers: Iterable[PeerId]) -> None:
        for peer in peers:
            if peer != self._me and peer not in self._distance:
                self._distance[peer] = distance(self._position, peer)
        if len(self._distance) > self._max_candidates:
            keep = sorted(self._distance, key=self._distance.__getitem__)[: self._max_candidates]
            kept = set(keep) | self._asked
            self._distance = {peer: d for peer, d in self._distance.items() if peer in kept}

    def _closest_alive(self) -> list[PeerId]:
        alive = (peer for peer in self._distance if peer not in self._failed)
        return sorted(alive, key=self._distance.__getitem__)[: self._k]

    def next_queries(self) -> list[PeerId]:
        """Peers to ask now (each is then in flight until `answered` or `failed`)."""
        room = min(self._alpha - len(self._in_flight), self._max_queries - len(self._asked))
        chosen = [peer for peer in self._closest_alive() if peer not in self._asked][: max(room, 0)]
        self._asked.update(chosen)
        self._in_flight.update(chosen)
        return chosen

    def answered(self, peer: PeerId, closer: Iterable[PeerId]) -> None:
        self._in_flight.discard(peer)
        self._answered.add(peer)
        self._add(closer)

    def failed(self, peer: PeerId) -> None:
        self._in_flight.discard(peer)
        self._failed.add(peer)

    @property
    def done(self) -> bool:
        """Whether the lookup has its answer (questions still in flight are then not needed)."""
        closest = self._closest_alive()
        if self._beta is not None and closest and all(p in self._answered for p in closest[: self._beta]):
            return True
        if self._in_flight:
            return False
        if len(self._asked) >= self._max_queries:
            return True
        return all(peer in self._answered for peer in closest)

    def closest_known(self) -> list[PeerId]:
        """The `k` closest candidates that did not fail, asked or not, closest first."""
        return self._closest_alive()

    def closest(self) -> list[PeerId]:
        """The `k` closest peers that answered, closest first."""
        answered = sorted(self._answered, key=self._distance.__getitem__)
        return answered[: self._k]
