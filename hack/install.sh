#!/usr/bin/env bash
# Installs evalkube with the evaluator (real lmms-eval) and test extras into .venv. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
quiet() { "$@" 2>&1 | grep -vE "^WARNING: (Location|Ignoring version)|invalid metadata|pathvalidate|~~~|Please use pip<24.1|^Requested pytablewriter" || true; }
quiet .venv/bin/pip install -q --upgrade pip
quiet .venv/bin/pip install -q -e '.[evaluator,test]'
.venv/bin/python -c "import evalkube.api, evalkube.operator, evalkube.runner, lmms_eval, kopf" 
