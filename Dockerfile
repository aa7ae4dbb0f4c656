# syntax=docker/dockerfile:1
# The evalkube API + operator image: `evalkube-api` and `evalkube-operator` (charts/evalkube runs
# both from it). The base install only: no evaluator extra, so no torch or lmms-eval here; the
# evaluator pods use evaluator-image/Dockerfile. Runs as the non-root UID 65532 that the chart's
# securityContext sets; nothing in it needs a shell at run time (exec-form commands only).
#   docker build -t evalkube:dev .
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/evalkube
# Dependencies first (from pyproject.toml alone), so a source change reuses this layer.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && /opt/evalkube/bin/pip install -r /tmp/requirements.txt
COPY evalkube evalkube
COPY api api
COPY operator operator
COPY evaluator-image/runner evaluator-image/runner
RUN /opt/evalkube/bin/pip install --no-deps . \
 && /opt/evalkube/bin/python -c "import evalkube.api.server, evalkube.operator.main"

FROM ${PYTHON_IMAGE}
RUN groupadd --gid 65532 evalkube \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin evalkube
COPY --from=build /opt/evalkube /opt/evalkube
ENV PATH=/opt/evalkube/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 65532:65532
EXPOSE 8000 8080
CMD ["evalkube-api"]
