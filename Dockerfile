# syntax=docker/dockerfile:1
# The gateway image. One image, every command: `gateway serve` (the default), `gateway node`
# (the GPU node agent), `gateway control ...` (the control-plane jobs) and `gateway sim`.
#
#   docker build -t gateway:0.1.0 .
#   docker build -t gateway:0.1.0-vllm --build-arg EXTRAS=vllm .   # node agents that run vLLM
#
# infra/kubernetes/ deploys these two tags. No secret is built in: the config is mounted
# (GATEWAY_CONFIG) and the keys come from the environment. tests/contract/test_dockerfile.py
# lints this file and runs ENTRYPOINT + CMD in a virtual environment built as the builder
# stage below builds it.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
# Extras of the project to install too (`vllm` for node agents that start vLLM engines).
ARG EXTRAS=""
ENV VIRTUAL_ENV=/opt/venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the wheel is built from (pyproject's [tool.hatch.build.targets.wheel]).
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY plugins ./plugins
COPY load ./load
# A regular (not editable) install: the venv holds the code, the source tree stays behind. pip's
# cache is a build cache mount: rebuilds reuse downloads, and no cache ends up in a layer.
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv "$VIRTUAL_ENV" \
    && "$VIRTUAL_ENV/bin/pip" install ".${EXTRAS:+[$EXTRAS]}"

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="gateway" \
      org.opencontainers.image.description="OpenAI-compatible, plugin-based model-serving gateway" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed uid/gid, so the manifests can say runAsUser/fsGroup 10001 and volumes match.
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --home-dir /var/lib/gateway \
       --no-create-home --shell /usr/sbin/nologin gateway \
    && install -d -o gateway -g gateway -m 0750 /var/lib/gateway
COPY --from=builder /opt/venv /opt/venv
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# governance.data_dir (`data`, relative) lands here: the one place the process writes.
WORKDIR /var/lib/gateway
USER 10001:10001
EXPOSE 8080
# No HEALTHCHECK: the same image runs the node agent (port 9400) and one-shot control jobs, so
# no single probe fits; Kubernetes probes /healthz and /readyz itself (infra/kubernetes).
ENTRYPOINT ["gateway"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
