"""One-shot operations against the network, for commands that are not long-running peers."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Sequence
from pathlib import Path

import multiaddr
from libp2p.crypto.ed25519 import create_new_key_pair

from mycelium.errors import ConfigError
from mycelium.net.host import NetConfig, open_stack
from mycelium.net.identity import load_identity
from mycelium.net.invites import make_invite
from mycelium.net.registry import Registry
from mycelium.policy.peers import PeerId
from mycelium.policy.records import GroupRecord

CLIENT_LISTEN = (multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0"),)


async def list_groups(
    bootstrap: Sequence[multiaddr.Multiaddr], task: str, timeout: float
) -> list[GroupRecord]:
    """The task's groups as the DHT holds them, read through a throw-away client identity."""
    key_pair = create_new_key_pair()
    config = NetConfig(listen=CLIENT_LISTEN, bootstrap=tuple(bootstrap), bootstrap_timeout=timeout)
    async with open_stack(key_pair, config, client=True) as stack:
        await stack.bootstrap(lambda message: None)
        return await Registry(stack.dht, key_pair).list_groups(task, timeout=timeout)


def create_invite(identity: Path, group_id: str, invitee: str | None, ttl: float) -> str:
    """A signed invite token; a group accepts it while its signer is one of the group's members."""
    key_pair = load_identity(identity)
    try:
        target = PeerId.from_text(invitee) if invitee else None
    except ValueError:
        raise ConfigError(f"--for {invitee!r} is not a peer id") from None
    token = make_invite(key_pair, group_id, target, time.time() + ttl, os.urandom(8))
    return base64.urlsafe_b64encode(token).decode().rstrip("=")


def decode_invite_token(token: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except ValueError:
        raise ConfigError("--invite is not a token printed by `mycelium invite`") from None
