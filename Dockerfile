# Lead Intake: one image for every role; the command chooses.
#   docker run IMAGE serve         the receiver (HTTP on 8080, which the HEALTHCHECK checks)
#   docker run IMAGE worker        the worker pool (health and metrics on 9100)
#   docker run IMAGE emulator --host 0.0.0.0 --port 8765    the Close emulator (dev only)
#   docker run IMAGE check-config  validate the sources file and exit
#   docker run IMAGE --version     the version
# Build it with `make image` (which passes the version and source labels), or:
#   docker build --build-arg VERSION=0.1.0 -t lead-intake:0.1.0 .
# Checked by hadolint in `make test` (tests/deploy/test_manifests.py); built and run, as
# containers with a read-only root, by `make image-check` (tests/image/).

# The base of both stages: a Python 3.11 image whose `python` is on PATH. `make image-check`
# passes a stand-in bootstrapped from Debian packages where this one cannot be pulled.
ARG BASE_IMAGE=docker.io/library/python:3.11.13-slim-bookworm

# --- build: the project's wheel, then a virtualenv with it and its dependencies ----------------
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY service ./service
COPY close_emulator ./close_emulator
# The dependencies install from wheels, so no compiler is needed; should a new one ever need
# one, install it in this stage only: the final image copies just /opt/venv. The virtualenv's
# own pip builds the wheel, so the base needs no pip of its own. EXTRAS: the optional parts
# installed with it (otel: traces, off unless OTEL_* variables configure them).
ARG EXTRAS=otel
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && wheel="$(echo /wheels/*.whl)" \
 && /opt/venv/bin/pip install --no-cache-dir "${wheel}${EXTRAS:+[$EXTRAS]}" \
 && /opt/venv/bin/pip uninstall --yes pip setuptools

# --- runtime: the slim base, the virtualenv, the example sources, a non-root user ---------------
# Same base as the build stage: the virtualenv's python is the base's python.
FROM ${BASE_IMAGE}
# The version labelled is the package's (service/__init__.py): `make image` passes it.
ARG VERSION=unknown
ARG SOURCE=""
ARG REVISION=""
LABEL org.opencontainers.image.title="lead-intake" \
      org.opencontainers.image.description="Website forms and partner webhooks into Close CRM leads" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}"
RUN groupadd --system --gid 10001 intake \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin intake
COPY --from=build /opt/venv /opt/venv
COPY config /app/config
COPY LICENSE /usr/share/doc/lead-intake/LICENSE
WORKDIR /app
# Bytecode was compiled at install time; nothing writes to the image at run time, so a
# read-only root filesystem works.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    INTAKE_SOURCES_FILE=/app/config/sources.yaml
USER 10001:10001
EXPOSE 8080 9100
# The receiver's liveness. The worker overrides it (docker-compose.yml: port 9100); Kubernetes
# ignores HEALTHCHECK and uses the probes in deploy/.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["lead-intake"]
CMD ["serve"]
