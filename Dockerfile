# bench in a container: `bench` is the entrypoint, so `docker run IMAGE worker SPEC --storage URL` runs a worker.
#
# CPU image (default: python:3.11-slim + the CPU build of torch, a few hundred MB instead of several GB):
#   docker build -t bench:local .
# CUDA image: start from a PyTorch base that already has a CUDA torch, and keep it (empty TORCH_SPEC):
#   docker build -t bench:cuda \
#     --build-arg BASE_IMAGE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime \
#     --build-arg TORCH_SPEC= .
# or install a CUDA wheel on any Python >= 3.11 base:
#   --build-arg TORCH_SPEC=torch==2.5.1 --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu124
# TORCH_INDEX_URL= (empty) installs TORCH_SPEC from the default package index.

ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX_URL="https://download.pytorch.org/whl/cpu"
ARG BENCH_UID=1000

# Unbuffered output so `docker compose logs` shows each trial as it finishes; a writable matplotlib cache
# for any user id (the report service may run as the host user's id).
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/matplotlib

WORKDIR /app

# 1. torch first, from its own index: an unpinned `pip install .` would pull a multi-GB CUDA build from PyPI.
RUN set -eux; \
    if [ -n "$TORCH_SPEC" ]; then \
        if [ -n "$TORCH_INDEX_URL" ]; then pip install --index-url "$TORCH_INDEX_URL" $TORCH_SPEC; \
        else pip install $TORCH_SPEC; fi; \
    fi

# 2. The other dependencies, read from pyproject.toml: this layer is rebuilt only when pyproject.toml changes,
#    not on every source edit. torch is already there, so its range is satisfied without a download.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# 3. The package itself (no dependency resolution left to do) and the shipped study specs.
COPY README.md ./
COPY bench/ bench/
COPY studies/ studies/
RUN pip install --no-deps . \
    && rm -rf build bench.egg-info \
    && bench --version

# 4. An unprivileged user; reports/ and runs/ (SQLite default) are the only places bench writes under /app.
RUN useradd --create-home --uid "$BENCH_UID" --user-group --shell /usr/sbin/nologin bench \
    && mkdir -p /app/reports /app/runs \
    && chown bench:bench /app/reports /app/runs
USER bench

ENTRYPOINT ["bench"]
CMD ["--help"]
