"""Learning on one node: data, models, training, aggregation, codecs. No networking here."""

from collections import OrderedDict

import numpy as np

Weights = OrderedDict[str, np.ndarray]
MODEL_NAMES = ("mlp", "cnn")  # the registry in models.py; listed here so the CLI needs no torch
