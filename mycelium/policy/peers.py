"""Peer ids as the protocol rules see them: plain bytes with one order that every member agrees on.

The network layer converts libp2p's `ID` to and from `PeerId` at its edge, so the rules in this
package never touch a libp2p type. The order is that of the raw multihash bytes (the same as
libp2p's `ID.to_bytes()`), which is how members agree on who leads without a vote.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import base58

MAX_PEER_ID_BYTES = 64


@dataclass(frozen=True, order=True)
class PeerId:
    raw: bytes

    def __str__(self) -> str:
        return base58.b58encode(self.raw).decode()

    def __repr__(self) -> str:
        return f"PeerId({self.short})"

    @property
    def short(self) -> str:
        """The last 8 characters: how logs and tables name a peer."""
        return str(self)[-8:]

    @classmethod
    def from_text(cls, text: str) -> PeerId:
        """Parse a base58 peer id; ValueError when it is not one."""
        try:
            raw = base58.b58decode(text.encode())
        except ValueError:
            raise ValueError(f"{text!r} is not a base58 peer id") from None
        if not 2 <= len(raw) <= MAX_PEER_ID_BYTES:
            raise ValueError(f"{text!r} is not a peer id")
        return cls(raw)


def in_peer_order(peers: Iterable[PeerId]) -> list[PeerId]:
    """The order every member agrees on; its first member is the one that takes over a group."""
    return sorted(peers)
