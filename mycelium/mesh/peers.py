"""The spec of one process that runs several mesh peers (`mycelium mesh --peers-per-process K`).

SPEC.json is `{"peers": [[node argument, ...], ...]}`: each list is exactly what the launcher would
have given `mycelium node`. `python -m mycelium.ui.peers SPEC.json` runs them (ui/peers.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from mycelium.errors import ConfigError


def peer_spec(argvs: Sequence[Sequence[str]]) -> str:
    """SPEC.json's text for these peers' node arguments."""
    return json.dumps({"peers": [list(argv) for argv in argvs]})


def read_spec(text: str) -> list[list[str]]:
    try:
        peers = json.loads(text)["peers"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError('a peers spec must be JSON like {"peers": [["--data-dir", "..."], ...]}') from None
    if not isinstance(peers, list) or not peers or not all(isinstance(p, list) for p in peers):
        raise ConfigError("a peers spec needs at least one peer, each a list of node arguments")
    return [[str(arg) for arg in argv] for argv in peers]
