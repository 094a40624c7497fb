"""Persistent identity, and generated protobuf code that matches proto/mycelium.proto."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mycelium.errors import IdentityError
from mycelium.net.identity import load_identity, load_or_create_identity, peer_id_of

ROOT = Path(__file__).resolve().parent.parent


def test_identity_is_created_once_with_mode_0600_and_keeps_its_peer_id(tmp_path: Path) -> None:
    path = tmp_path / "data" / "identity.key"
    first = peer_id_of(load_or_create_identity(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert peer_id_of(load_or_create_identity(path)) == first
    assert peer_id_of(load_identity(path)) == first
    assert str(first).startswith("12D3KooW")  # an Ed25519 peer id


def test_a_corrupt_identity_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    path.write_bytes(b"short")
    with pytest.raises(IdentityError, match="holds 5 bytes"):
        load_or_create_identity(path)


def test_a_missing_identity_is_a_clear_error_where_one_is_required(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="no identity key"):
        load_identity(tmp_path / "none.key")


def test_generated_protobuf_code_matches_the_proto_file() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "proto" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
