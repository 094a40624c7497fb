"""A group record for tests that need a valid one of their own."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from libp2p.crypto.keys import KeyPair

from mycelium.net.signing import peer_id_of
from mycelium.policy.records import GroupRecord, JoinPolicy, Member, Metrics, group_id_for


def group_record(key_pair: KeyPair, **changes: Any) -> GroupRecord:
    """A valid version 1 of a group that `key_pair` founded and leads, unsigned (`seal_record` it)."""
    peer = peer_id_of(key_pair)
    now = time.time()
    record = GroupRecord(
        group_id=group_id_for(peer, b"a" * 16),
        task="digits-mlp",
        name="attacker",
        model_fingerprint="mlp:x",
        policy=JoinPolicy.OPEN,
        capacity=10,
        round=0,
        members=(Member(peer, now, now),),
        metrics=Metrics(accuracy=0.99),
        version=1,
        updated_at=now,
        expires_at=now + 60,
        creator=peer,
        nonce=b"a" * 16,
        leader=peer,
    )
    return replace(record, **changes)
