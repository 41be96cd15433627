# Lead Intake: one image for every role; the command chooses.
#   docker run IMAGE serve         the receiver (HTTP on 8080, which the HEALTHCHECK checks)
#   docker run IMAGE worker        the worker pool (health and metrics on 9100)
#   docker run IMAGE emulator --host 0.0.0.0 --port 8765    the Close emulator (dev only)
#   docker run IMAGE check-config  validate the sources file and exit
# Checked by hadolint in `make test` (tests/deploy/test_manifests.py).

# --- build: the project's wheel, then a virtualenv with it and its dependencies ----------------
FROM python:3.11.13-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY close_emulator ./close_emulator
# The dependencies install from wheels, so no compiler is needed; should a new one ever need
# one, install it in this stage only: the final image copies just /opt/venv.
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir /wheels/*.whl \
 && /opt/venv/bin/pip uninstall --yes pip setuptools

# --- runtime: the slim base, the virtualenv, the example sources, a non-root user ---------------
# Same base as the build stage (keep the two in step): the virtualenv's python is its python.
FROM python:3.11.13-slim-bookworm
LABEL org.opencontainers.image.title="lead-intake" \
      org.opencontainers.image.description="Website forms and partner webhooks into Close CRM leads" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 intake \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin intake
COPY --from=build /opt/venv /opt/venv
COPY config /app/config
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
