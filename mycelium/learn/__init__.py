"""Learning on one node: data, models, training, aggregation, codecs. No networking here."""

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

Weights = OrderedDict[str, np.ndarray]
MODEL_NAMES = ("mlp", "cnn")  # the registry in models.py; listed here so the CLI needs no torch


@dataclass(frozen=True)
class TrainSettings:
    local_epochs: int = 5
    batch_size: int = 32
    lr: float = 0.1
