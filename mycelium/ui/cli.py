"""Command line: `mycelium node|groups|mesh|watch|invite` and `mycelium-node` (= `mycelium node`).

Every long option can also come from the environment: `--bootstrap-timeout 5` is
`MYCELIUM_BOOTSTRAP_TIMEOUT=5` (repeatable options take several values separated by spaces).
Errors are one line on stderr: exit code 2 for bad input, 1 for failures at run time.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from mycelium import __version__
from mycelium.errors import ConfigError, MyceliumError
from mycelium.ui.commands import cmd_groups, cmd_invite, cmd_mesh, cmd_node, cmd_watch
from mycelium.ui.config_file import LayeredParser
from mycelium.ui.options import DEFAULT_DATA_DIR, add_node_options, apply_environment, positive_float

T = TypeVar("T")


def node_parser(prog: str = "mycelium-node") -> argparse.ArgumentParser:
    """Defaults < --config file < MYCELIUM_* environment < flags, stacked when parsing."""
    parser = LayeredParser(
        prog=prog, description="Run one Mycelium peer: join the DHT, find or create a group, learn together."
    )
    add_node_options(parser)
    return parser


def main_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mycelium", description="Peer-to-peer federated learning groups.")
    parser.add_argument("--version", action="version", version=f"mycelium {__version__}")
    # LayeredParser stacks a parser's options over file and environment only when it has --config (node)
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=LayeredParser
    )

    node = commands.add_parser(
        "node", help="run one peer (same as mycelium-node)", description=node_parser().description
    )
    add_node_options(node)
    node.set_defaults(run=cmd_node)

    groups = commands.add_parser(
        "groups",
        help="list a task's groups from the DHT",
        description="List a task's groups, their members and advertised metrics.",
    )
    groups.add_argument(
        "--bootstrap",
        action="append",
        metavar="MULTIADDR",
        default=[],
        help="peer to reach the DHT through, /.../p2p/<peer id>; repeatable (required)",
    )
    groups.add_argument("--task", required=True, help="task name, e.g. digits-mlp")
    groups.add_argument("--json", action="store_true", help="print JSON instead of a table")
    groups.add_argument(
        "--timeout",
        type=positive_float,
        default=10.0,
        metavar="SECONDS",
        help="bound on bootstrap and on each DHT read (default 10)",
    )
    groups.set_defaults(run=cmd_groups)

    mesh = commands.add_parser(
        "mesh",
        help="run a local mesh of N node processes with a live view",
        description="Start N node processes on loopback, show them live, summarise.",
    )
    from mycelium.mesh.launcher import add_mesh_options

    add_mesh_options(mesh)
    mesh.set_defaults(run=cmd_mesh)

    watch = commands.add_parser(
        "watch",
        help="watch a task's network live: in the browser (--web) or in the terminal",
        description="Run an observer peer (it trains nothing and joins no group) and show the task's "
        "groups, members, rounds, accuracy, transfers and happenings as they change.",
    )
    from mycelium.ui.watch_options import add_watch_options

    add_watch_options(watch)
    watch.set_defaults(run=cmd_watch)

    invite = commands.add_parser(
        "invite",
        help="print an invite to an invite-only group",
        description="Sign an invite with this node's identity (a member of the group).",
    )
    invite.add_argument("--group", required=True, metavar="ID", help="the group to invite to")
    invite.add_argument(
        "--data-dir", default=DEFAULT_DATA_DIR, metavar="DIR", help="where the identity lives"
    )
    invite.add_argument(
        "--identity", metavar="FILE", help="identity key file (default DATA_DIR/identity.key)"
    )
    invite.add_argument(
        "--for", dest="for_peer", metavar="PEER_ID", help="only this peer may use it (default anyone)"
    )
    invite.add_argument(
        "--ttl",
        type=positive_float,
        default=86400.0,
        metavar="SECONDS",
        help="valid for this long (default one day)",
    )
    invite.set_defaults(run=cmd_invite)

    for sub in (groups, mesh, watch, invite):  # node: its LayeredParser reads the environment
        apply_environment(sub)
    return parser


def run_command(parse: Callable[[], T], command: Callable[[T], int]) -> int:
    """`command(parse())`, with our errors as one line on stderr and the exit codes of the CLI."""
    try:
        args = parse()  # a node's config file and environment are read here
        return command(args)
    except ConfigError as error:
        print(f"mycelium: error: {error}", file=sys.stderr)
        return 2
    except MyceliumError as error:
        print(f"mycelium: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = main_parser()
    return run_command(lambda: parser.parse_args(argv), lambda args: args.run(args))


def node_main(argv: Sequence[str] | None = None) -> int:
    parser = node_parser()
    return run_command(lambda: parser.parse_args(argv), cmd_node)


if __name__ == "__main__":
    sys.exit(main())
