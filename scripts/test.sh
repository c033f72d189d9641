#!/usr/bin/env bash
# The test command (README, CI): lint, types, then the whole suite incl. integration and e2e tests.
# The tests start their own nx-27017 (embedded MongoDB) and MLflow on temporary directories.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m ruff check .
python3 -m mypy schemas flame_common flame_controller flame_apiserver flame_notifier flamelet flame_sdk
python3 -m pytest -q -p no:cacheprovider "$@"
