"""Models by name, and the fingerprint that must match before any weights are mixed."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from mycelium.errors import ConfigError
from mycelium.learn import MODEL_NAMES, Weights

HIDDEN = 128
CLASSES = 10
_GLOBAL_GENERATOR = threading.Lock()  # peers of one process build models from several threads


def _mlp(side: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(side * side, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, CLASSES))


def _cnn(side: int) -> nn.Module:
    pooled = side // 4
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * pooled * pooled, 64),
        nn.ReLU(),
        nn.Linear(64, CLASSES),
    )


MODELS: dict[str, Callable[[int], nn.Module]] = {"mlp": _mlp, "cnn": _cnn}
assert tuple(MODELS) == MODEL_NAMES


def build_model(name: str, input_side: int, seed: int) -> nn.Module:
    """A freshly initialised model; the same (name, side, seed) gives the same weights."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    with _GLOBAL_GENERATOR:  # torch's initialisers draw from its one global generator
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            return MODELS[name](input_side)
        finally:
            torch.random.set_rng_state(generator_state)


def get_weights(model: nn.Module) -> Weights:
    return OrderedDict(
        (name, tensor.detach().cpu().numpy().astype(np.float32, copy=True))
        for name, tensor in model.state_dict().items()
    )


def set_weights(model: nn.Module, weights: Weights) -> None:
    model.load_state_dict(OrderedDict((k, torch.from_numpy(np.asarray(v))) for k, v in weights.items()))


def fingerprint(name: str, weights: Weights) -> str:
    """Architecture + tensor names and shapes, e.g. 'mlp:3f2a9c1e07d4b6a5'."""
    layout = ";".join(f"{key}={'x'.join(map(str, value.shape))}" for key, value in weights.items())
    return f"{name}:{hashlib.sha256(f'{name}|{layout}'.encode()).hexdigest()[:16]}"


def shapes_of(weights: Weights) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in weights.items()}
