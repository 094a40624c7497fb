"""What each command does: `node`, `groups`, `invite`, `mesh`. Errors are `MyceliumError`s."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from mycelium.errors import ConfigError, MyceliumError, leaf_exceptions
from mycelium.ui.groups_view import print_groups_table, record_json
from mycelium.ui.options import build_node_config


def cmd_node(args: argparse.Namespace) -> int:
    import trio

    from mycelium.events import EventLog
    from mycelium.node.runner import load_learning, run_until_signalled

    config = build_node_config(args)  # checked first: --print-config also vets a config file
    if args.print_config:
        print(args.effective.to_toml(), end="")
        return 0
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    events = EventLog(args.events if args.events else (None if args.dashboard else "-"))
    on_start = None
    if args.dashboard:
        from mycelium.ui.dashboard import start_dashboard

        on_start = start_dashboard
    load_learning([config])
    try:
        trio.run(run_until_signalled, config, events, on_start)
    except BaseExceptionGroup as group:
        error = _single_error(group)
        if error is None:
            raise
        raise error from None
    finally:
        events.close()
    return 0


def _single_error(group: BaseExceptionGroup) -> BaseException | None:
    """The MyceliumError inside a trio exception group, if that is what it holds."""
    matched, _ = group.split(MyceliumError)
    if matched is None:
        return None
    leaves = leaf_exceptions(matched)
    return leaves[0] if leaves else None


def cmd_groups(args: argparse.Namespace) -> int:
    import trio

    from mycelium.errors import InvalidMessage
    from mycelium.net.host import parse_multiaddr
    from mycelium.policy.records import check_task_name
    from mycelium.ui.client import list_groups

    if not args.bootstrap:
        raise ConfigError("--bootstrap is required: the DHT is reached through a peer")
    bootstrap = [parse_multiaddr(a, what="--bootstrap", need_peer_id=True) for a in args.bootstrap]
    try:
        check_task_name(args.task)
    except InvalidMessage as error:
        raise ConfigError(str(error)) from None
    try:
        records = trio.run(list_groups, bootstrap, args.task, args.timeout)
    except BaseExceptionGroup as group:
        error = _single_error(group)
        if error is None:
            raise
        raise error from None
    now = time.time()
    if args.json:
        print(json.dumps([record_json(r, now) for r in records], indent=2))
        return 0
    print_groups_table(args.task, records, now)
    return 0


def cmd_invite(args: argparse.Namespace) -> int:
    from mycelium.policy.records import is_group_id
    from mycelium.ui.client import create_invite

    if not is_group_id(args.group):
        raise ConfigError(f"--group {args.group!r} is not a group id")
    identity = Path(args.identity) if args.identity else Path(args.data_dir) / "identity.key"
    print(create_invite(identity, args.group, args.for_peer, args.ttl))
    return 0


def cmd_mesh(args: argparse.Namespace) -> int:
    from mycelium.mesh.launcher import run_mesh_command

    return run_mesh_command(args)


def cmd_watch(args: argparse.Namespace) -> int:
    import trio

    from mycelium.ui.watch_options import build_watch_settings
    from mycelium.watch.observer import watch
    from mycelium.watch.terminal import print_lines, show_in_terminal
    from mycelium.watch.web import serve_web

    settings = build_watch_settings(args)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.web:

        def announce(url: str) -> None:
            print(f"mycelium watch: task {settings.task}, explorer at {url}/", flush=True)

        async def web(observer):  # type: ignore[no-untyped-def]
            await serve_web(observer, args.web, announce)

        serve = [web, print_lines]
    else:
        serve = [show_in_terminal]
    try:
        trio.run(watch, settings, serve)
    except BaseExceptionGroup as group:
        error = _single_error(group)
        if error is None:
            raise
        raise error from None
    return 0
