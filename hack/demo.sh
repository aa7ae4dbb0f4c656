#!/usr/bin/env bash
# Install evalkube into .venv, then run one real evaluation through the whole system locally.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/install.sh
exec .venv/bin/python hack/demo.py "$@"
