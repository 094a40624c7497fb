"""The node's persistent Ed25519 identity: a 32-byte seed in a 0600 file, created once."""

from __future__ import annotations

import os
from pathlib import Path

from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID

from mycelium.errors import IdentityError

SEED_BYTES = 32
IDENTITY_FILE = "identity.key"


def load_or_create_identity(path: Path) -> KeyPair:
    """Read the key seed at `path`, creating it (mode 0600) if it does not exist."""
    if path.exists():
        return _load(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(os.urandom(SEED_BYTES))
    except FileExistsError:
        pass  # another process created it first; read theirs
    except OSError as error:
        raise IdentityError(f"cannot create identity key {path}: {error.strerror}") from None
    return _load(path)


def load_identity(path: Path) -> KeyPair:
    """Read an existing identity; IdentityError when there is none."""
    if not path.exists():
        raise IdentityError(f"no identity key at {path}: start the node once with this data dir first")
    return _load(path)


def _load(path: Path) -> KeyPair:
    try:
        seed = path.read_bytes()
    except OSError as error:
        raise IdentityError(f"cannot read identity key {path}: {error.strerror}") from None
    if len(seed) != SEED_BYTES:
        raise IdentityError(f"identity key {path} holds {len(seed)} bytes, expected a {SEED_BYTES}-byte seed")
    return create_new_key_pair(seed)


def peer_id_of(key_pair: KeyPair) -> ID:
    return ID.from_pubkey(key_pair.public_key)
