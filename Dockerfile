# Mycelium node image: CPU-only torch, non-root user, data in /data (identity + checkpoints).
# Needs the torch CPU wheel in wheels/ of the build context, so that no build ever downloads the
# multi-GB CUDA build:   pip download --no-deps -d wheels torch==2.13.0
FROM python:3.11-slim AS build

# libp2p 0.8.1 pins fastecdsa==2.3.2, which has no cp311 wheel: it is compiled here.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev libgmp-dev \
 && rm -rf /var/lib/apt/lists/*

RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_CONSTRAINT=/etc/pip-constraints.txt
# "+cpu" makes any later resolution of torch from an index fail instead of fetching CUDA wheels
RUN echo 'torch==2.13.0+cpu' > /etc/pip-constraints.txt
RUN --mount=type=bind,source=wheels,target=/wheels \
    pip install /wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl
COPY pyproject.toml README.md /src/
COPY mycelium /src/mycelium
RUN pip install /src

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
EXPOSE 4001
ENTRYPOINT ["mycelium-node"]
