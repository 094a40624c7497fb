"""The spec of one process that runs several mesh peers (`mycelium mesh --peers-per-process K`).

SPEC.json is `{"peers": [[node argument, ...], ...], "wait_for_start": false}`: each list is
exactly what the launcher would have given `mycelium node`. `python -m mycelium.ui.peers SPEC.json`
runs them (ui/peers.py); with `wait_for_start` it imports and loads everything first, then starts
the peers when their start line arrives on its stdin (the launcher's next wave, loaded while the
last one forms): `{"bootstrap": [[multiaddr, ...], ...]}`, one list per peer, added to its
arguments (the peers to bootstrap from are known only once the earlier wave listens).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from mycelium.errors import ConfigError


@dataclass(frozen=True)
class PeerSpec:
    argvs: list[list[str]]
    wait_for_start: bool = False


def peer_spec(argvs: Sequence[Sequence[str]], wait_for_start: bool = False) -> str:
    """SPEC.json's text for these peers' node arguments."""
    return json.dumps({"peers": [list(argv) for argv in argvs], "wait_for_start": wait_for_start})


def read_spec(text: str) -> PeerSpec:
    try:
        spec = json.loads(text)
        peers, wait = spec["peers"], spec.get("wait_for_start", False)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError('a peers spec must be JSON like {"peers": [["--data-dir", "..."], ...]}') from None
    if not isinstance(peers, list) or not peers or not all(isinstance(p, list) for p in peers):
        raise ConfigError("a peers spec needs at least one peer, each a list of node arguments")
    if not isinstance(wait, bool):
        raise ConfigError("a peers spec's wait_for_start must be true or false")
    return PeerSpec([[str(arg) for arg in argv] for argv in peers], wait)


def start_line(bootstraps: Sequence[Sequence[str]]) -> bytes:
    """The line that starts a waiting process: each peer's bootstrap addresses."""
    return json.dumps({"bootstrap": [list(addrs) for addrs in bootstraps]}).encode() + b"\n"


def with_start_line(spec: PeerSpec, line: str) -> list[list[str]]:
    """The peers' arguments, each with its `--bootstrap` addresses from the start `line`."""
    try:
        bootstraps = json.loads(line)["bootstrap"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError('a start line must be JSON like {"bootstrap": [["/ip4/..."], ...]}') from None
    if not isinstance(bootstraps, list) or len(bootstraps) != len(spec.argvs):
        raise ConfigError(f"a start line needs one bootstrap list for each of the {len(spec.argvs)} peers")
    return [
        [*argv, *(arg for addr in addrs for arg in ("--bootstrap", str(addr)))]
        for argv, addrs in zip(spec.argvs, bootstraps, strict=True)
    ]
