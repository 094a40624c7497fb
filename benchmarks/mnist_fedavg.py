"""MNIST FedAvg, 10 nodes, dirichlet:0.5: the networked mesh (fp32 and int8) next to Flower.

    python benchmarks/mnist_fedavg.py --rounds 30
    python benchmarks/mnist_fedavg.py --rounds 30 --mesh-arg=--round-interval=0   # rounds unpaced

Setting (the standard non-IID FedAvg one): seed 0, MLP 784-128-10, 1 local epoch, batch 32, SGD
lr 0.05 (the `--dataset mnist` defaults). Every system trains on the same shards (node i's train
split) from the same initial weights and is scored by the mean over nodes of the accuracy on the
10k MNIST test set. Flower runs in its own venv (benchmarks/setup-flower.sh), in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from meshrun import MeshRun, run_mesh
from rich.console import Console
from rich.table import Table

from mycelium.learn.data import node_data, parse_partition
from mycelium.learn.models import build_model, get_weights

HERE = Path(__file__).parent
FLOWER_PYTHON = HERE / ".venv-flower" / "bin" / "python"
NODES = 10
PARTITION = "dirichlet:0.5"
TARGET = 0.95


def write_partitions(path: Path) -> None:
    """Node i's train split and test set, and the initial weights, for the Flower script."""
    arrays: dict[str, np.ndarray] = {}
    for shard in range(NODES):
        data = node_data("mnist", parse_partition(PARTITION), shard, NODES, seed=0)
        arrays[f"train_x_{shard}"], arrays[f"train_y_{shard}"] = data.train.x, data.train.y
        arrays[f"test_x_{shard}"], arrays[f"test_y_{shard}"] = data.common_test.x, data.common_test.y
        side = data.input_side
    for name, value in get_weights(build_model("mlp", side, seed=0)).items():
        arrays[f"init_{name}"] = value
    np.savez(path, **arrays)


def run_flower(work: Path, rounds: int) -> tuple[list[tuple[float, float]], float]:
    """(mean accuracy, seconds) per round, and the whole run's seconds."""
    if not FLOWER_PYTHON.exists():
        raise SystemExit(f"Flower is not installed: run `bash {HERE / 'setup-flower.sh'}` first")
    partitions, out = work / "partitions.npz", work / "flower.json"
    write_partitions(partitions)
    command = [str(FLOWER_PYTHON), str(HERE / "flower_fedavg.py"), "--partitions", str(partitions)]
    command += ["--rounds", str(rounds), "--out", str(out)]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    result = json.loads(out.read_text())
    print(f"  flwr {result['flwr_version']} ({result['mode']}), {result['total_seconds']:.0f} s in all")
    return [(r["mean_accuracy"], r["seconds"]) for r in result["rounds"]], result["total_seconds"]


def mesh_curve(run: MeshRun, rounds: int) -> list[tuple[float, float]]:
    """(mean accuracy, seconds) after each round; nodes number their rounds from 0."""
    curve = []
    for number in range(rounds):
        accuracy = run.mean_accuracy(number)
        seconds = run.finished_at(number) - run.finished_at(number - 1) if number else float("nan")
        curve.append((float("nan") if accuracy is None else accuracy, seconds))
    return curve


def bytes_per_round(run: MeshRun) -> tuple[float, float]:
    """Mean update size and mean bytes sent per node per round."""
    events = [e for i in run.events for e in run.rounds(i).values()]
    return (
        sum(e["update_bytes"] for e in events) / len(events),
        sum(e["bytes_out"] for e in events) / len(events),
    )


def first_round_at(curve: list[tuple[float, float]], target: float) -> str:
    return next((str(i) for i, (a, _) in enumerate(curve, 1) if a >= target), f"not in {len(curve)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--keep", metavar="DIR", help="keep the mesh runs' output here")
    parser.add_argument(
        "--mesh-arg",
        action="append",
        default=[],
        help="extra `mycelium mesh` argument for both meshes, e.g. --mesh-arg=--round-interval=0",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mycelium-mnist-") as tmp:
        work = Path(args.keep or tmp)
        common = ["--nodes", str(NODES), "--rounds", str(args.rounds), "--dataset", "mnist"]
        common += ["--partition", PARTITION, "--seed", "0", *args.mesh_arg]
        fp32 = run_mesh(work / "fp32", *common)
        int8 = run_mesh(work / "int8", *common, "--node-arg=--codec=int8")
        flower, flower_seconds = run_flower(work, args.rounds)
    curves = {
        "mycelium fp32": mesh_curve(fp32, args.rounds),
        "mycelium int8": mesh_curve(int8, args.rounds),
        "Flower FedAvg": flower,
    }
    sizes = {"mycelium fp32": bytes_per_round(fp32), "mycelium int8": bytes_per_round(int8)}
    table = Table(title=f"MNIST, {NODES} nodes, {PARTITION}, MLP, {args.rounds} rounds")
    for column in (
        "system",
        f"acc @{args.rounds}",
        f"rounds to {TARGET}",
        "s/round (median)",
        "update KiB",
        "KiB sent/node/round",
        "whole run s",
    ):
        table.add_column(column, justify="right")
    totals = {"mycelium fp32": fp32.seconds, "mycelium int8": int8.seconds, "Flower FedAvg": flower_seconds}
    for name, curve in curves.items():
        update, sent = sizes.get(name, (float("nan"), float("nan")))
        seconds = [s for _, s in curve if s == s]
        table.add_row(
            name,
            f"{curve[-1][0]:.4f}",
            first_round_at(curve, TARGET),
            f"{float(np.median(seconds)):.2f}",
            f"{update / 1024:.0f}",
            f"{sent / 1024:.0f}",
            f"{totals[name]:.0f}",
        )
    console = Console(width=160)
    console.print(table)
    ratio = sizes["mycelium fp32"][1] / sizes["mycelium int8"][1]
    loss = 100 * (curves["mycelium fp32"][-1][0] - curves["mycelium int8"][-1][0])
    console.print(
        f"int8: {ratio:.2f}x fewer bytes sent per round, {loss:+.2f} pt accuracy lost at round {args.rounds}"
    )
    per_round = Table(title="mean node test accuracy per round")
    per_round.add_column("round", justify="right")
    for name in curves:
        per_round.add_column(name, justify="right")
    for number in range(args.rounds):
        per_round.add_row(str(number + 1), *(f"{curves[name][number][0]:.4f}" for name in curves))
    console.print(per_round)


if __name__ == "__main__":
    main()
