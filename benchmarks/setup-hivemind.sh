#!/usr/bin/env bash
# hivemind, for benchmarks/dht_latency.py's anchor only, in its own venv (never in the project's).
# torch==2.13.0 first (the CPU wheel) and pinned, so that nothing pulls another torch build.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv-hivemind
.venv-hivemind/bin/pip install torch==2.13.0
echo "torch==2.13.0" > .venv-hivemind/torch-pin.txt
.venv-hivemind/bin/pip install -c .venv-hivemind/torch-pin.txt "hivemind==${HIVEMIND_VERSION:-1.1.12}"
