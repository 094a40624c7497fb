"""Flower FedAvg baseline on pre-partitioned data, for comparison with Mycelium.

Runs in its own venv (`bash benchmarks/setup-flower.sh`) and never imports mycelium;
benchmarks/mnist_fedavg.py writes the partitions and runs it:

    benchmarks/.venv-flower/bin/python benchmarks/flower_fedavg.py --partitions parts.npz --out flower.json

Flower's Simulation Runtime (ray backend) runs N virtual clients. Every round all N train (FedAvg
weighted by sample count), then all N evaluate the new global model on their own test set; the
reported accuracy is the unweighted mean over clients. Ray start-up and a warm-up query (data
loading, torch's first-use costs) happen before round 1 and are reported apart.

The .npz holds, for client i in 0..N-1, train_x_{i} (float32, (n,1,S,S), in [0,1]),
train_y_{i} (int64), test_x_{i}, test_y_{i}; optionally init_1.weight, init_1.bias,
init_3.weight, init_3.bias (else the model starts from torch.manual_seed(0)).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from torch import nn

# Read when flwr / ray start: no telemetry or usage-stats traffic, ray on the loopback address
# (a single-node run needs no routable IP), and no FutureWarning about GPU env vars.
os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO"] = "0"

from flwr.app import (  # noqa: E402
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp  # noqa: E402
from flwr.serverapp import Grid, ServerApp  # noqa: E402
from flwr.serverapp.strategy import FedAvg  # noqa: E402
from flwr.simulation import run_simulation  # noqa: E402

NUM_CLASSES = 10
HIDDEN = 128
INIT_KEYS = ("1.weight", "1.bias", "3.weight", "3.bias")


class PartitionsError(Exception):
    """The partitions file is missing or malformed."""


def build_model(side: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(side * side, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, NUM_CLASSES)
    )


def _open_npz(path: Path) -> np.lib.npyio.NpzFile:
    if not path.is_file():
        raise PartitionsError(f"partitions file not found: {path}")
    if not zipfile.is_zipfile(path):
        raise PartitionsError(f"{path} is not an .npz file")
    return np.load(path, allow_pickle=False)


def _array(npz: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
    try:
        return npz[key]
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise PartitionsError(f"cannot read {key}: {exc}") from exc


def validate_partitions(path: Path) -> tuple[int, int]:
    """Check every client's arrays; return (number of clients, image side)."""
    with _open_npz(path) as npz:
        keys = set(npz.files)
        num_clients = 0
        while f"train_x_{num_clients}" in keys:
            num_clients += 1
        if num_clients == 0:
            raise PartitionsError(f"{path} has no train_x_0 array")
        side = int(_array(npz, "train_x_0").shape[-1])
        for i in range(num_clients):
            for split in ("train", "test"):
                x_key, y_key = f"{split}_x_{i}", f"{split}_y_{i}"
                if x_key not in keys or y_key not in keys:
                    raise PartitionsError(f"{path} lacks {x_key} or {y_key}")
                x, y = _array(npz, x_key), _array(npz, y_key)
                if x.dtype != np.float32 or x.ndim != 4 or x.shape[1:] != (1, side, side):
                    raise PartitionsError(
                        f"{x_key} must be float32 of shape (n,1,{side},{side}), got {x.dtype} {x.shape}"
                    )
                if y.dtype != np.int64 or y.shape != (len(x),) or len(x) == 0:
                    raise PartitionsError(f"{y_key} must be non-empty int64 of shape ({len(x)},)")
                if y.min() < 0 or y.max() >= NUM_CLASSES:
                    raise PartitionsError(f"{y_key} has labels outside 0..{NUM_CLASSES - 1}")
    return num_clients, side


def initial_state(path: Path, side: int) -> tuple[dict[str, torch.Tensor], str]:
    """The npz's init_* weights when all are present, else torch.manual_seed(0) weights."""
    torch.manual_seed(0)
    state = build_model(side).state_dict()
    with _open_npz(path) as npz:
        missing = [key for key in INIT_KEYS if f"init_{key}" not in npz.files]
        if missing:
            return state, f"torch.manual_seed(0) (no init_{missing[0]} in the npz)"
        for key in INIT_KEYS:
            array = _array(npz, f"init_{key}")
            if array.shape != tuple(state[key].shape):
                raise PartitionsError(
                    f"init_{key} has shape {array.shape}, the model needs {tuple(state[key].shape)}"
                )
            state[key] = torch.from_numpy(array.astype(np.float32))
    return state, "npz init_* arrays"


# --- client side (runs in ray workers, which import this file as a module) -------------------

_DATA: dict[tuple[str, int, str], tuple[torch.Tensor, torch.Tensor]] = {}


def client_data(config: ConfigRecord, context: Context, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """This client's split, loaded once per worker process."""
    path, client = str(config["partitions"]), int(context.node_config["partition-id"])
    if (path, client, split) not in _DATA:
        with np.load(path) as npz:
            _DATA[path, client, split] = (
                torch.from_numpy(npz[f"{split}_x_{client}"]),
                torch.from_numpy(npz[f"{split}_y_{client}"]),
            )
    return _DATA[path, client, split]


def local_sgd(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: ConfigRecord, generator: torch.Generator
) -> float:
    """Plain minibatch SGD, reshuffling every epoch; returns the mean training loss."""
    torch.set_num_threads(1)
    optimizer = torch.optim.SGD(model.parameters(), lr=float(config["lr"]))
    batch_size, epochs = int(config["batch-size"]), int(config["local-epochs"])
    loss_sum = 0.0
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(batch)
    return loss_sum / (len(x) * epochs)


client_app = ClientApp()


@client_app.query()
def warm_up(msg: Message, context: Context) -> Message:
    """Load this client's data and run one SGD step (torch.optim's first use takes ~1.5 s),
    so that round 1 does not pay for worker start-up."""
    config = msg.content["config"]
    client_data(config, context, "test")
    x, y = client_data(config, context, "train")
    batch = int(config["batch-size"])
    local_sgd(build_model(x.shape[-1]), x[:batch], y[:batch], config, torch.Generator())
    return Message(content=RecordDict(), reply_to=msg)


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    config = msg.content["config"]
    x, y = client_data(config, context, "train")
    model = build_model(x.shape[-1])
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    seed = int(config["seed"]) * 1_000_003 + int(context.node_config["partition-id"]) * 1_009
    loss = local_sgd(model, x, y, config, torch.Generator().manual_seed(seed + int(config["server-round"])))
    metrics = MetricRecord({"train-loss": loss, "num-examples": len(x)})
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics})
    return Message(content=content, reply_to=msg)


@client_app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    torch.set_num_threads(1)
    x, y = client_data(msg.content["config"], context, "test")
    model = build_model(x.shape[-1])
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    with torch.no_grad():
        correct = int((model(x).argmax(dim=1) == y).sum())
    metrics = MetricRecord({"accuracy": correct / len(x), "num-examples": len(x)})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)


# --- server side (a thread in this process) -----------------------------------------------------


def unweighted_accuracy(replies: list[RecordDict], weighting_key: str) -> MetricRecord:
    accuracies = [float(reply["metrics"]["accuracy"]) for reply in replies]
    return MetricRecord({"accuracy": sum(accuracies) / len(accuracies)})


@dataclass
class RunLog:
    """Start-up time and per-round results, filled from the ServerApp thread."""

    started: float = field(default_factory=time.perf_counter)
    ready_at: float | None = None
    rounds: list[dict[str, float | int]] = field(default_factory=list)


def all_replies(replies: Iterable[Message], num_clients: int, stage: str) -> list[Message]:
    """The replies, or RuntimeError unless every client answered without error."""
    replies = list(replies)
    failed = [msg.error.reason.strip().splitlines()[-1] for msg in replies if msg.has_error()]
    if failed or len(replies) != num_clients:
        raise RuntimeError(f"{stage}: {len(replies) - len(failed)}/{num_clients} clients ok {failed}")
    return replies


class TimedFedAvg(FedAvg):
    """FedAvg over all clients that times each round and fails on any client error."""

    def __init__(self, num_clients: int, log: RunLog) -> None:
        super().__init__(
            fraction_train=1.0,
            fraction_evaluate=1.0,
            min_train_nodes=num_clients,
            min_evaluate_nodes=num_clients,
            min_available_nodes=num_clients,
            evaluate_metrics_aggr_fn=unweighted_accuracy,
        )
        self.num_clients = num_clients
        self.log = log
        self.round_start = 0.0
        self.train_seconds = 0.0

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self.round_start = time.perf_counter()
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        result = super().aggregate_train(server_round, all_replies(replies, self.num_clients, "train"))
        self.train_seconds = time.perf_counter() - self.round_start
        return result

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        replies = all_replies(replies, self.num_clients, "evaluate")
        metrics = super().aggregate_evaluate(server_round, replies)
        assert metrics is not None  # every client replied, so aggregation ran
        seconds = time.perf_counter() - self.round_start
        accuracy = float(metrics["accuracy"])
        self.log.rounds.append(
            {
                "round": server_round,
                "mean_accuracy": accuracy,
                "seconds": seconds,
                "train_seconds": self.train_seconds,
            }
        )
        print(
            f"{server_round:>5}  {accuracy:>13.4f}  {seconds:>9.2f}  {self.train_seconds:>9.2f}", flush=True
        )
        return metrics


def make_server_app(
    args: argparse.Namespace, num_clients: int, state: dict[str, torch.Tensor], log: RunLog
) -> ServerApp:
    server_app = ServerApp()
    partitions = str(args.partitions.resolve())
    train_config = {
        "partitions": partitions,
        "lr": args.lr,
        "batch-size": args.batch_size,
        "local-epochs": args.local_epochs,
        "seed": args.seed,
    }

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        while len(node_ids := list(grid.get_node_ids())) < num_clients:
            time.sleep(0.05)
        queries = [
            Message(
                RecordDict({"config": ConfigRecord(train_config)}),
                dst_node_id=node_id,
                message_type=MessageType.QUERY,
            )
            for node_id in node_ids
        ]
        all_replies(grid.send_and_receive(queries), num_clients, "warm-up")
        log.ready_at = time.perf_counter()
        print(f"ready after {log.ready_at - log.started:.2f} s (ray, actors, warm-up)", flush=True)
        print("round  mean_accuracy    seconds  train_sec", flush=True)
        TimedFedAvg(num_clients, log).start(
            grid=grid,
            initial_arrays=ArrayRecord(state),
            num_rounds=args.rounds,
            train_config=ConfigRecord(train_config),
            evaluate_config=ConfigRecord({"partitions": partitions}),
        )

    return server_app


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--partitions", type=Path, required=True, help="the .npz described in this file's doc"
    )
    parser.add_argument("--rounds", type=int, default=30, help="FedAvg rounds")
    parser.add_argument("--local-epochs", type=int, default=1, help="client epochs per round")
    parser.add_argument("--batch-size", type=int, default=32, help="client minibatch size")
    parser.add_argument("--lr", type=float, default=0.05, help="client SGD learning rate")
    parser.add_argument("--seed", type=int, default=0, help="seeds each client's shuffling")
    parser.add_argument("--client-cpus", type=float, default=1.0, help="ray CPUs per client: parallelism")
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    parser.add_argument("--verbose", action="store_true", help="show Flower's INFO logs")
    args = parser.parse_args()
    if min(args.rounds, args.local_epochs, args.batch_size) < 1 or args.lr <= 0 or args.client_cpus <= 0:
        parser.error("--rounds, --local-epochs, --batch-size must be >= 1; --lr, --client-cpus > 0")
    return args


def main() -> int:
    args = parse_args()
    try:
        num_clients, side = validate_partitions(args.partitions)
        state, init_source = initial_state(args.partitions, side)
    except PartitionsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.verbose:
        logging.getLogger("flwr").setLevel(logging.WARNING)
    print(
        f"Flower {version('flwr')} FedAvg, {num_clients} clients, {side}x{side} inputs, init: {init_source}"
    )
    log = RunLog()
    try:
        run_simulation(
            server_app=make_server_app(args, num_clients, state, log),
            client_app=client_app,
            num_supernodes=num_clients,
            backend_config={"client_resources": {"num_cpus": args.client_cpus, "num_gpus": 0.0}},
        )
    except RuntimeError as exc:
        print(f"error: Flower run failed: {exc}", file=sys.stderr)
        return 1
    total = time.perf_counter() - log.started
    startup = (log.ready_at or log.started) - log.started
    print(f"total {total:.2f} s (start-up {startup:.2f} s)")
    if args.out:
        result = {
            "flwr_version": version("flwr"),
            "mode": "simulation",
            "clients": num_clients,
            "rounds": log.rounds,
            "startup_seconds": startup,
            "total_seconds": total,
        }
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    # Run main() from the module imported by name rather than from __main__: ray then pickles the
    # ClientApp's functions by reference, so each worker imports this file once and its data cache
    # (_DATA) lasts across rounds instead of being re-pickled, empty, with every message.
    from flower_fedavg import main as module_main

    sys.exit(module_main())
