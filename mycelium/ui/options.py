"""The options of `mycelium node` / `mycelium-node`, and how they become a `NodeConfig`.

Every long option can also come from the environment: `--bootstrap-timeout 5` is
`MYCELIUM_BOOTSTRAP_TIMEOUT=5` (repeatable options take several values separated by spaces).
The node's options also come from a TOML file (`--config`); `ui/config_file.py` stacks the layers.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mycelium.errors import ConfigError

DEFAULT_DATA_DIR = "./mycelium-data"
ENV_PREFIX = "MYCELIUM_"


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _add_network_options(parser: argparse.ArgumentParser, listen_default: str) -> None:
    net = parser.add_argument_group("network")
    net.add_argument(
        "--listen",
        action="append",
        metavar="MULTIADDR",
        help=f"address to listen on, repeatable (default {listen_default}; tests use port 0)",
    )
    net.add_argument(
        "--bootstrap",
        action="append",
        metavar="MULTIADDR",
        default=[],
        help="peer to join the network through, /.../p2p/<peer id>; repeatable",
    )
    net.add_argument(
        "--announce",
        action="append",
        metavar="MULTIADDR",
        default=[],
        help="address to advertise instead of the listen addresses (NAT, containers); repeatable",
    )
    net.add_argument(
        "--bootstrap-timeout",
        type=positive_float,
        default=30.0,
        metavar="SECONDS",
        help="give up when no bootstrap peer answered for this long (default 30)",
    )
    net.add_argument(
        "--ip-diversity",
        choices=("auto", "on", "off"),
        default="auto",
        help="GossipSub eclipse protection (mesh peers from >= 3 IPs); auto = off when "
        "listening on loopback only, else on (default auto)",
    )


def add_node_options(parser: argparse.ArgumentParser) -> None:
    from mycelium.learn import MODEL_NAMES
    from mycelium.learn.aggregate import AGGREGATORS, DEFAULT_AGGREGATOR
    from mycelium.learn.codec import CODECS
    from mycelium.learn.data import DATASETS
    from mycelium.net.host import DEFAULT_LISTEN

    config = parser.add_argument_group("configuration")
    config.add_argument(
        "--config",
        metavar="FILE",
        help="take options from this TOML file, keyed by the long option names (bootstrap-timeout = "
        "5); MYCELIUM_* variables and flags override it (default $MYCELIUM_CONFIG, else none)",
    )
    config.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective options as such a file, each marked with where it came from, and exit",
    )
    _add_network_options(parser, DEFAULT_LISTEN)
    node = parser.add_argument_group("identity and output")
    node.add_argument(
        "--data-dir",
        default=DEFAULT_DATA_DIR,
        metavar="DIR",
        help=f"identity, checkpoints and state (default {DEFAULT_DATA_DIR})",
    )
    node.add_argument("--identity", metavar="FILE", help="identity key file (default DATA_DIR/identity.key)")
    node.add_argument(
        "--events",
        metavar="FILE",
        help="write JSON-lines events to FILE ('-' = stdout; default: stdout unless --dashboard)",
    )
    node.add_argument("--dashboard", action="store_true", help="show a live Rich dashboard")
    node.add_argument("--verbose", action="store_true", help="log libp2p internals too")
    node.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics, e.g. 127.0.0.1:9100 (port 0 picks "
        "one: the `metrics` event says which; default off)",
    )
    node.add_argument("--attack", default="", help=argparse.SUPPRESS)  # tests only: node/attacks.py

    group = parser.add_argument_group("groups")
    group.add_argument(
        "--task", metavar="NAME", help="what is learned; groups are per task (default DATASET-MODEL)"
    )
    group.add_argument(
        "--group",
        default="auto",
        metavar="new|auto|none|ID",
        help="new: create a group; auto: join the best group or create one; none: DHT-only "
        "peer (bootstrap node); ID: join that group (default auto)",
    )
    group.add_argument("--name", default="", help="name of a group this node creates")
    group.add_argument(
        "--capacity", type=positive_int, default=10, help="members of a created group (default 10)"
    )
    group.add_argument(
        "--policy",
        choices=("open", "invite"),
        default="open",
        help="join policy of a created group (default open)",
    )
    group.add_argument(
        "--invite", metavar="TOKEN", help="invite printed by `mycelium invite`, for invite-only groups"
    )
    group.add_argument(
        "--evaluate-every",
        type=non_negative_int,
        default=5,
        metavar="ROUNDS",
        help="compare the group with other groups every ROUNDS rounds (0 = never; default 5)",
    )
    group.add_argument(
        "--migrate-threshold",
        type=float,
        default=0.02,
        metavar="GAIN",
        help="accuracy gain on our validation data that justifies moving (default 0.02)",
    )
    group.add_argument(
        "--migrate-patience",
        type=positive_int,
        default=2,
        metavar="CHECKS",
        help="consecutive checks the gain must hold (default 2)",
    )
    group.add_argument(
        "--migrate-cooldown",
        type=non_negative_int,
        default=5,
        metavar="ROUNDS",
        help="rounds after a move before the next (default 5)",
    )
    group.add_argument(
        "--no-split", action="store_true", help="never split a group whose members' updates diverge"
    )

    learn = parser.add_argument_group("learning")
    learn.add_argument("--dataset", choices=DATASETS, default="digits", help="default digits")
    learn.add_argument(
        "--partition",
        default="dirichlet:0.5",
        help="iid | dirichlet:ALPHA | rotated:K (default dirichlet:0.5)",
    )
    learn.add_argument(
        "--shard", default="0/1", metavar="I/N", help="this node holds shard I of N (default 0/1)"
    )
    learn.add_argument("--seed", type=int, default=0, help="partition and training seed (default 0)")
    learn.add_argument("--model", choices=MODEL_NAMES, default="mlp", help="default mlp")
    learn.add_argument("--local-epochs", type=positive_int, help="per round (default: digits 5, mnist 1)")
    learn.add_argument("--batch-size", type=positive_int, help="default 32")
    learn.add_argument(
        "--lr", type=positive_float, help="SGD learning rate (default: digits 0.1, mnist 0.05)"
    )
    learn.add_argument(
        "--aggregator",
        choices=sorted(AGGREGATORS),
        default=DEFAULT_AGGREGATOR,
        help=f"default {DEFAULT_AGGREGATOR} (README: robust aggregation); fedavg trusts every claim",
    )
    learn.add_argument(
        "--no-trust",
        action="store_true",
        help="do not score peers' updates, leave out or remove anyone (comparisons only)",
    )
    learn.add_argument(
        "--codec", choices=sorted(CODECS), default="fp32", help="update encoding (default fp32)"
    )
    learn.add_argument(
        "--rounds", type=non_negative_int, default=0, help="stop after this many rounds (0 = never)"
    )
    learn.add_argument(
        "--min-members",
        type=positive_int,
        default=1,
        metavar="N",
        help="before the first round in a group, wait until it has N members (default 1)",
    )
    learn.add_argument(
        "--min-members-timeout",
        type=positive_float,
        default=60.0,
        metavar="SECONDS",
        help="... but start anyway after this long (default 60)",
    )
    learn.add_argument(
        "--hold",
        action="store_true",
        help="once in a group, wait for SIGUSR1 before the first round (how `mycelium mesh` "
        "starts all its nodes together); bounded by --hold-timeout",
    )
    learn.add_argument(
        "--hold-timeout",
        type=positive_float,
        default=600.0,
        metavar="SECONDS",
        help="start anyway after holding this long (default 600)",
    )
    learn.add_argument(
        "--inline-limit",
        type=int,
        default=64 * 1024,
        metavar="BYTES",
        help="updates up to this size ride inside the gossip announcement; larger ones are pulled "
        "over /mycelium/model/1.1.0 (default 65536)",
    )
    learn.add_argument(
        "--torch-threads",
        type=positive_int,
        default=1,
        help="threads of torch's and numpy's (BLAS) compute pools (default 1)",
    )

    timing = parser.add_argument_group("timing")
    timing.add_argument("--heartbeat", type=positive_float, default=5.0, metavar="SECONDS", help="default 5")
    timing.add_argument(
        "--member-expiry",
        type=positive_float,
        default=30.0,
        metavar="SECONDS",
        help="drop a member silent this long (default 30)",
    )
    timing.add_argument(
        "--round-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="start rounds at most this often (default 1; 0 = as fast as the group can: a group of "
        "one on digits would run dozens of rounds a second)",
    )
    timing.add_argument(
        "--round-floor",
        type=positive_float,
        default=3.0,
        metavar="SECONDS",
        help="shortest wait for the others after our update (default 3)",
    )
    timing.add_argument(
        "--round-ceiling",
        type=positive_float,
        default=120.0,
        metavar="SECONDS",
        help="longest wait for the others after our update (default 120)",
    )


def apply_environment(parser: argparse.ArgumentParser) -> None:
    """Take defaults from MYCELIUM_<OPTION> variables (converted like the option itself). For the
    commands other than `node`: the node parser is a LayeredParser (ui/config_file.py)."""
    for action in parser._actions:  # noqa: SLF001 - argparse has no public iterator
        long = next((o for o in action.option_strings if o.startswith("--")), None)
        if long is None or action.dest == "help":
            continue
        value = os.environ.get(ENV_PREFIX + long[2:].upper().replace("-", "_"))
        if value is None:
            continue
        if isinstance(action, argparse._AppendAction):  # noqa: SLF001
            action.default = value.split()
        elif isinstance(action, argparse._StoreTrueAction):  # noqa: SLF001
            action.default = value.lower() in ("1", "true", "yes", "on")
        else:
            action.default = value


def build_node_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """Turn parsed node options into a NodeConfig (ConfigError on bad values)."""
    from mycelium.config import DEFAULT_TRAINING, LearnConfig, NodeConfig, Timing
    from mycelium.errors import InvalidMessage
    from mycelium.learn import TrainSettings
    from mycelium.learn.data import parse_partition, parse_shard
    from mycelium.net.host import DEFAULT_LISTEN, NetConfig, parse_multiaddr
    from mycelium.node.attacks import check_attack
    from mycelium.node.metrics import parse_metrics_address
    from mycelium.policy.groups import GroupRules
    from mycelium.policy.records import JoinPolicy, check_task_name, is_group_id
    from mycelium.policy.rounds import RoundTiming
    from mycelium.policy.trust import TrustRules
    from mycelium.ui.client import decode_invite_token

    listen = tuple(parse_multiaddr(a, what="--listen") for a in (args.listen or [DEFAULT_LISTEN]))
    bootstrap = tuple(parse_multiaddr(a, what="--bootstrap", need_peer_id=True) for a in args.bootstrap)
    announce = tuple(parse_multiaddr(a, what="--announce") for a in args.announce)
    if args.group not in ("new", "auto", "none") and not is_group_id(args.group):
        raise ConfigError(f"--group {args.group!r} must be new, auto, none or a 32-character group id")
    task = args.task or f"{args.dataset}-{args.model}"
    try:
        check_task_name(task)
    except InvalidMessage as error:
        raise ConfigError(str(error)) from None
    shard, shards = parse_shard(args.shard)
    defaults = DEFAULT_TRAINING[args.dataset]
    training = TrainSettings(
        local_epochs=args.local_epochs or defaults.local_epochs,
        batch_size=args.batch_size or defaults.batch_size,
        lr=args.lr or defaults.lr,
    )
    if args.round_floor > args.round_ceiling:
        raise ConfigError("--round-floor must not exceed --round-ceiling")
    return NodeConfig(
        data_dir=Path(args.data_dir),
        identity=Path(args.identity) if args.identity else None,
        net=NetConfig(
            listen=listen,
            bootstrap=bootstrap,
            announce=announce,
            bootstrap_timeout=args.bootstrap_timeout,
            ip_diversity=args.ip_diversity,
        ),
        task=task,
        group=args.group,
        name=args.name,
        capacity=args.capacity,
        policy=JoinPolicy(args.policy),
        invite=decode_invite_token(args.invite) if args.invite else b"",
        rounds=args.rounds,
        min_members=args.min_members,
        min_members_timeout=args.min_members_timeout,
        hold=args.hold,
        hold_timeout=args.hold_timeout,
        evaluate_every=args.evaluate_every,
        split=not args.no_split,
        rules=GroupRules(
            threshold=args.migrate_threshold,
            patience=args.migrate_patience,
            cooldown_rounds=args.migrate_cooldown,
        ),
        learn=LearnConfig(
            dataset=args.dataset,
            partition=parse_partition(args.partition),
            shard=shard,
            shards=shards,
            seed=args.seed,
            model=args.model,
            training=training,
            aggregator=args.aggregator,
            codec=args.codec,
            torch_threads=args.torch_threads,
            inline_limit=max(0, args.inline_limit),
        ),
        timing=Timing(
            heartbeat=args.heartbeat,
            member_expiry=args.member_expiry,
            round_interval=max(0.0, args.round_interval),
            rounds=RoundTiming(floor=args.round_floor, ceiling=args.round_ceiling),
        ),
        trust=None if args.no_trust else TrustRules(),
        verbose=args.verbose,
        metrics=parse_metrics_address(args.metrics) if args.metrics else None,
        attack=check_attack(args.attack) if args.attack else "",
    )
