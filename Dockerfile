# The workerfleet image: `workerfleet-worker` as the entrypoint; the operator's pods (the
# Helm chart) run `workerfleet-operator` from the same image.
#
#   make image                 # buildah (no Docker engine needed), else docker build
#
# Your own tasks go in an image built FROM this one, for example:
#
#   FROM workerfleet-worker
#   USER root
#   RUN /opt/venv/bin/pip install --no-cache-dir acme-jobs
#   USER 10001
#   ENV WORKERFLEET_HANDLERS=acme.jobs
#
# Configuration is by environment variables (WORKERFLEET_DSN, WORKERFLEET_QUEUES,
# WORKERFLEET_HANDLERS, ...), which the operator's Deployment sets.

FROM docker.io/library/python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY workerfleet ./workerfleet
COPY operator ./operator
COPY worker ./worker
RUN /opt/venv/bin/pip install .

FROM docker.io/library/python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# A fixed numeric uid so `runAsNonRoot` can be verified by the kubelet.
RUN groupadd --system --gid 10001 workerfleet \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/workerfleet \
       --create-home --shell /usr/sbin/nologin workerfleet
COPY --from=build /opt/venv /opt/venv
WORKDIR /home/workerfleet
USER 10001:10001
EXPOSE 8080
# For plain Docker; on Kubernetes the probes use /healthz and /readyz directly.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('WORKERFLEET_HEALTH_PORT', '8080') + '/healthz', timeout=4)"]
ENTRYPOINT ["workerfleet-worker"]
