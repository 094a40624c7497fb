# Mycelium node image: CPU-only torch, non-root user, data in /data (identity + checkpoints).
#
# torch 2.13.0 comes from one of two places, and only ever as the CPU build ("+cpu"):
#   - a wheel in wheels/ of the build context:  wheels/torch-2.13.0+cpu-cp311-*.whl
#   - or PyTorch's CPU wheel index (the URL of the "Get started" selector on the PyTorch website,
#     Linux / Pip / CPU):  docker build --build-arg TORCH_INDEX=<that URL> .
# With neither the build stops with a message. The constraint torch==2.13.0+cpu makes any pip run
# that would otherwise resolve torch to the CUDA build (PyPI's Linux wheel) fail instead.
FROM python:3.11-slim AS torch

# A venv hides the differences between base images (python in /usr/local/bin or /usr/bin, PEP 668).
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_CONSTRAINT=/etc/pip-constraints.txt
RUN echo 'torch==2.13.0+cpu' > /etc/pip-constraints.txt
ARG TORCH_INDEX=
# The build context is mounted, not copied: wheels/ may be absent, and the wheel stays out of the
# layers. Other torch wheels in wheels/ (a CUDA build, another version) are named and ignored.
RUN --mount=type=bind,target=/context \
    cpu=$(ls /context/wheels/torch-2.13.0+cpu-*.whl 2>/dev/null || true); \
    other=$(ls /context/wheels/torch-*.whl 2>/dev/null | grep -v '/torch-2\.13\.0+cpu-' || true); \
    if [ -z "$cpu$TORCH_INDEX" ]; then \
      echo "ERROR: no CPU build of torch 2.13.0 to install. Put torch-2.13.0+cpu-cp311-*.whl in wheels/" \
           "or pass --build-arg TORCH_INDEX=<PyTorch's CPU wheel index> (README: With Docker)." \
           ${other:+"Not used (not the CPU build of 2.13.0):" $other} >&2; \
      exit 1; \
    fi; \
    pip install --find-links /context/wheels ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} torch==2.13.0+cpu \
    || { echo "ERROR: pip found no torch==2.13.0+cpu for this platform in wheels/${TORCH_INDEX:+ or $TORCH_INDEX}" >&2; exit 1; }; \
    python -W ignore::UserWarning -c "import sys, torch; print('torch', torch.__version__, 'cuda', torch.version.cuda); \
sys.exit(torch.__version__ != '2.13.0+cpu' or torch.version.cuda is not None)"

FROM torch AS build
# libp2p 0.8.1 pins fastecdsa==2.3.2, which has no cp311 wheel: it is compiled here.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev libgmp-dev \
 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md /src/
COPY mycelium /src/mycelium
RUN pip install /src

# Runtime stage: same base, no compiler; fastecdsa's libgmp.so.10 is in the base image.
FROM python:3.11-slim
COPY --from=build /opt/venv /opt/venv
COPY --from=build /etc/pip-constraints.txt /etc/pip-constraints.txt
ENV PATH=/opt/venv/bin:$PATH \
    PIP_CONSTRAINT=/etc/pip-constraints.txt \
    PYTHONUNBUFFERED=1 \
    MYCELIUM_DATA_DIR=/data
RUN useradd --create-home --uid 1000 mycelium && mkdir /data && chown mycelium /data
USER mycelium
WORKDIR /home/mycelium
VOLUME ["/data"]
EXPOSE 4001 9100
ENTRYPOINT ["mycelium-node"]
