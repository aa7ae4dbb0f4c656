#!/usr/bin/env bash
# Installs evalkube with the evaluator (real lmms-eval) and test extras into .venv. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
quiet() { "$@" 2>&1 | grep -vE "^WARNING: (Location|Ignoring version)|does not provide the extra|invalid metadata|pathvalidate|~~~|Please use pip<24.1|^Requested pytablewriter" || true; }
# setuptools warns that a folder named like the package (evalkube/) could shadow it: that folder IS
# the package (an editable install), so the warning tells a newcomer nothing.
export PYTHONWARNINGS="ignore:Editable installation"
quiet .venv/bin/pip install -q --upgrade pip
quiet .venv/bin/pip install -q -e '.[evaluator,test]'
# lmms-engine's EvalServerBackend is the tests' judge of the training-loop contract; its own
# dependencies (transformers<5.9, deepspeed, ...) would break lmms-eval's, and the backend needs
# none of them (loguru and lmms-eval), so it is installed alone.
quiet .venv/bin/pip install -q --no-deps lmms-engine==0.1.4
.venv/bin/python -c "import evalkube.api, evalkube.operator, evalkube.runner, lmms_eval, kopf" 
