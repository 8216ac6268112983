# syntax=docker/dockerfile:1
# clvstream worker image: `docker build -t clvstream-worker .` (or `docker compose build`).
# Runs `clvstream worker`. Configure it with CLVSTREAM_* environment variables
# (CLVSTREAM_KAFKA_URL, CLVSTREAM_REDIS_URL, CLVSTREAM_TOPIC_PREFIX, CLVSTREAM_PARTITIONS).

ARG PYTHON_VERSION=3.11

# Build stage: install the project and its dependencies into a virtualenv. No
# compiler is needed: on x86_64 every dependency is a manylinux wheel; on aarch64
# faust-streaming publishes only its source, which then installs as pure Python
# (its Cython speedups left out: the scoring path does not run through Faust's agents).
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/clvstream
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/clvstream/bin/pip install --upgrade pip \
    && /opt/clvstream/bin/pip install .

# Runtime stage: the virtualenv only, no source tree. Runs as an unprivileged user.
FROM python:${PYTHON_VERSION}-slim
ENV PATH=/opt/clvstream/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN useradd --system --uid 10001 --user-group --create-home \
        --home-dir /var/lib/clvstream clvstream
COPY --from=build /opt/clvstream /opt/clvstream
USER clvstream
# Nothing is written here: scoring state lives in memory and in the Kafka changelog
# topic (restored from it on start); Faust's own data directory is a temporary one
# (under $TMPDIR), removed at exit. The working directory is just the user's home.
WORKDIR /var/lib/clvstream
ENTRYPOINT ["clvstream"]
CMD ["worker"]
