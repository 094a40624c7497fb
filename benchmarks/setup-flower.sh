#!/usr/bin/env bash
# Flower, for benchmarks/mnist_fedavg.py only, in its own venv (never in the project's).
# torch==2.13.0 first (the CPU wheel) and pinned, so that nothing pulls another torch build.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv-flower
.venv-flower/bin/pip install torch==2.13.0
echo "torch==2.13.0" > .venv-flower/torch-pin.txt
.venv-flower/bin/pip install -c .venv-flower/torch-pin.txt "flwr[simulation]==1.41.0"
