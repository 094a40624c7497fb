"""Bytes this node moved: gossip messages and model transfers (payload bytes, not wire bytes)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Traffic:
    bytes_in: int = 0
    bytes_out: int = 0
