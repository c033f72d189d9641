#!/usr/bin/env bash
# The test command (README, CI): install into .venv, make sure RabbitMQ/Mosquitto listen, lint, type-check,
# then the whole suite incl. integration and end-to-end tests. Extra arguments go to pytest.
# The tests start their own nx-27017 (embedded MongoDB) and MLflow on temporary directories.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# Everything below runs in the project's venv (console scripts like flamelet and flamectl too).
export VIRTUAL_ENV="$PWD/${FLAME_VENV:-.venv}"
export PATH="$VIRTUAL_ENV/bin:$PATH"
bash scripts/services.sh
python3 -m ruff check .
python3 -m ruff format --check .
python3 -m mypy schemas flame_common flame_controller flame_apiserver flame_notifier flamelet flame_sdk flame
# Two workers, a test file each at a time (module fixtures such as a stack stay in one worker):
# ~12 min on 2 cores instead of ~22. FLAME_TEST_WORKERS=0 runs everything in one process.
python3 -m pytest -q -p no:cacheprovider -n "${FLAME_TEST_WORKERS:-2}" --dist loadfile --durations=25 "$@"
