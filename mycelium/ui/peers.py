"""One process, several mesh peers: `python -m mycelium.ui.peers SPEC.json`.

`mycelium mesh --peers-per-process K` starts this instead of K `mycelium node` processes. SPEC.json
is `{"peers": [[node argument, ...], ...]}` (mesh/peers.py): each list is exactly what the launcher
would have given `mycelium node`, so each peer keeps its own identity, data dir, event log, host,
DHT and gossip, and talks to every other peer (in this process or not) over loopback TCP. What the
peers share is what a process owns: torch and its threads, the data set loaded once, the logging
set-up, the signals (SIGUSR1 releases every peer held at --hold, SIGTERM stops them all) and the
exit deadline, which starts once every peer has finished. With the spec's `wait_for_start` the
peers start when their start line arrives on stdin, after the imports and the data set (end of
input: exit, not started).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mycelium.errors import ConfigError
from mycelium.mesh.peers import PeerSpec, read_spec, with_start_line
from mycelium.ui.cli import run_command

if TYPE_CHECKING:
    from mycelium.config import NodeConfig


def run_peers(spec: PeerSpec) -> int:
    import trio

    from mycelium.events import EventLog
    from mycelium.node.runner import load_learning, run_peers_until_signalled

    configs = _configs(spec.argvs)
    verbose = any(config.verbose for config, _ in configs)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    load_learning([config for config, _ in configs])
    if spec.wait_for_start:
        line = sys.stdin.readline()
        if not line:
            return 0
        configs = _configs(with_start_line(spec, line))
    peers = [(config, EventLog(events)) for config, events in configs]
    try:
        failed = trio.run(run_peers_until_signalled, peers)
    finally:
        for _, events in peers:
            events.close()
    return 1 if failed else 0


def _configs(argvs: Sequence[Sequence[str]]) -> list[tuple[NodeConfig, str]]:
    from mycelium.ui.cli import node_parser
    from mycelium.ui.options import build_node_config

    parser = node_parser()
    configs = []
    for argv in argvs:
        args = parser.parse_args(list(argv))
        if not args.events:
            raise ConfigError("every peer of a shared process needs its own --events file")
        configs.append((build_node_config(args), args.events))
    return configs


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if len(arguments) != 1:
        print("usage: python -m mycelium.ui.peers SPEC.json", file=sys.stderr)
        return 2
    return run_command(lambda: _read(arguments[0]), run_peers)


def _read(path: str) -> PeerSpec:
    try:
        return read_spec(Path(path).read_text())
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None


if __name__ == "__main__":
    sys.exit(main())
