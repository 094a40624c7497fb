"""Local training and evaluation of one node's model on its private data.

Blocking (torch): the node calls these through `trio.to_thread.run_sync`. torch's intra-op threads
and the BLAS threads numpy uses are capped (`limit_compute_threads`) so that N nodes on one machine
do not oversubscribe its cores.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from mycelium.learn import TrainSettings, Weights
from mycelium.learn.data import NodeData, Split
from mycelium.learn.models import build_model, fingerprint, get_weights, set_weights, shapes_of

EVAL_BATCH = 2048


def limit_compute_threads(threads: int) -> None:
    """torch's intra-op pool and every BLAS/OpenMP pool loaded (numpy's OpenBLAS among them) to
    `threads`. numpy's OpenBLAS otherwise starts one thread a core and spins them on every small
    product: the trust scores' weighted sums took 10.8 ms each instead of 0.8 ms (benchmarks/RESULTS.md)."""
    threads = max(1, threads)
    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    loss: float
    samples: int
    losses: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per sample, for paired comparisons

    @property
    def expected_accuracy(self) -> float:
        """Mean probability given to the right class: accuracy without the 0/1 rounding."""
        return float(np.exp(-self.losses).mean()) if len(self.losses) else float("nan")


class Learner:
    """One model and the private data it trains on. Not thread-safe: one call at a time."""

    def __init__(self, model_name: str, data: NodeData, seed: int) -> None:
        self.model_name = model_name
        self.data = data
        # every node of a task starts from the same initial weights (seed 0 of the architecture):
        # groups then begin from a common point, which FedAvg needs
        self.model: nn.Module = build_model(model_name, data.input_side, seed=0)
        self._seed = seed
        initial = get_weights(self.model)
        self.fingerprint = fingerprint(model_name, initial)
        self.shapes = shapes_of(initial)
        self._scratch = threading.local()

    def _scratch_model(self, weights: Weights) -> nn.Module:
        """A model of ours holding `weights`, one kept per thread (trio's worker threads are reused)."""
        model = getattr(self._scratch, "model", None)
        if model is None:
            model = self._scratch.model = build_model(self.model_name, self.data.input_side, seed=0)
        set_weights(model, weights)
        return model

    def label_counts(self) -> np.ndarray:
        """Training samples per class (announced with updates; see policy/split.py)."""
        return np.bincount(self.data.train.y, minlength=self.data.classes).astype(np.int64)

    def weights(self) -> Weights:
        return get_weights(self.model)

    def load(self, weights: Weights) -> None:
        set_weights(self.model, weights)

    def initial_weights(self) -> Weights:
        return get_weights(build_model(self.model_name, self.data.input_side, seed=0))

    def train(self, settings: TrainSettings, round_number: int) -> Evaluation:
        """`local_epochs` of SGD on the train split from the current weights; mean batch loss."""
        split = self.data.train
        generator = torch.Generator().manual_seed(hash((self._seed, round_number)) & 0x7FFFFFFF)
        x = torch.from_numpy(split.x)
        y = torch.from_numpy(split.y)
        parameters = list(self.model.parameters())
        loss_fn = nn.CrossEntropyLoss()
        self.model.train()
        total, batches = 0.0, 0
        for _ in range(settings.local_epochs):
            order = torch.randperm(len(split), generator=generator)
            for start in range(0, len(split), settings.batch_size):
                batch = order[start : start + settings.batch_size]
                for parameter in parameters:
                    parameter.grad = None
                loss = loss_fn(self.model(x[batch]), y[batch])
                loss.backward()
                # plain SGD by hand: torch.optim's first use imports torch._dynamo (seconds of CPU
                # per process, paid by every node of a mesh at once)
                with torch.no_grad():
                    for parameter in parameters:
                        parameter.add_(parameter.grad, alpha=-settings.lr)
                total += loss.item()
                batches += 1
        return Evaluation(accuracy=float("nan"), loss=total / max(batches, 1), samples=len(split))

    def evaluate(self, split: Split, weights: Weights | None = None) -> Evaluation:
        """Accuracy and mean loss of the current weights, or of `weights` without keeping them."""
        model = self.model if weights is None else self._scratch_model(weights)
        model.eval()
        losses, correct = [], 0
        with torch.no_grad():
            for start in range(0, len(split), EVAL_BATCH):
                x = torch.from_numpy(split.x[start : start + EVAL_BATCH])
                y = torch.from_numpy(split.y[start : start + EVAL_BATCH])
                logits = model(x)
                losses.append(nn.functional.cross_entropy(logits, y, reduction="none").numpy())
                correct += int((logits.argmax(dim=1) == y).sum())
        per_sample = np.concatenate(losses) if losses else np.zeros(0, dtype=np.float32)
        count = max(len(split), 1)
        return Evaluation(
            accuracy=correct / count,
            loss=float(per_sample.sum()) / count,
            samples=len(split),
            losses=per_sample,
        )


def update_vector(weights: Weights, base: Weights) -> np.ndarray:
    """The flattened change from `base` to `weights` (used to compare members' updates)."""
    return np.concatenate([(weights[k] - base[k]).ravel() for k in weights]).astype(np.float64)
