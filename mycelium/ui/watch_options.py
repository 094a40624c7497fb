"""The options of `mycelium watch`, and how they become `WatchSettings`."""

from __future__ import annotations

import argparse

from mycelium.errors import ConfigError, InvalidMessage
from mycelium.ui.options import positive_float


def add_watch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap",
        action="append",
        metavar="MULTIADDR",
        default=[],
        help="peer to reach the network through, /.../p2p/<peer id>; repeatable (required)",
    )
    parser.add_argument("--task", required=True, help="task to watch, e.g. digits-mlp")
    parser.add_argument(
        "--web",
        metavar="HOST:PORT",
        help="serve the live explorer page here, e.g. 127.0.0.1:8080 (port 0 picks one); "
        "without it, show the network in the terminal",
    )
    parser.add_argument(
        "--listen",
        action="append",
        metavar="MULTIADDR",
        help="address of the observer peer, repeatable (default /ip4/0.0.0.0/tcp/0)",
    )
    parser.add_argument(
        "--bootstrap-timeout",
        type=positive_float,
        default=30.0,
        metavar="SECONDS",
        help="give up when no bootstrap peer answered for this long (default 30)",
    )
    parser.add_argument(
        "--listing-every",
        type=positive_float,
        default=10.0,
        metavar="SECONDS",
        help="list the task's groups from the DHT this often (default 10)",
    )
    parser.add_argument(
        "--records-only",
        action="store_true",
        help="do not read open groups' topics: show what the DHT and discovery topic say",
    )


def build_watch_settings(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from mycelium.net.host import parse_multiaddr
    from mycelium.policy.records import check_task_name
    from mycelium.watch.observer import WatchSettings
    from mycelium.watch.web import parse_web_address

    if not args.bootstrap:
        raise ConfigError("--bootstrap is required: the network is reached through a peer")
    try:
        check_task_name(args.task)
    except InvalidMessage as error:
        raise ConfigError(str(error)) from None
    if args.web:
        parse_web_address(args.web)
    listen = tuple(parse_multiaddr(a, what="--listen") for a in (args.listen or ["/ip4/0.0.0.0/tcp/0"]))
    return WatchSettings(
        task=args.task,
        bootstrap=tuple(parse_multiaddr(a, what="--bootstrap", need_peer_id=True) for a in args.bootstrap),
        listen=listen,
        bootstrap_timeout=args.bootstrap_timeout,
        listing_every=args.listing_every,
        follow_groups=not args.records_only,
    )
