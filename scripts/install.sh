#!/usr/bin/env bash
# Install Flame and everything it needs on Debian/Ubuntu with Python 3.11 (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v rabbitmq-server >/dev/null 2>&1 && ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
  echo "==> installing RabbitMQ"
  as_root apt-get update -qq && as_root apt-get install -y -qq rabbitmq-server >/dev/null
fi
# torch first and pinned: a bare requirement would pull a multi-GB CUDA build.
if ! "$PY" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
  echo "==> installing torch 2.13.0 (CPU)"
  "$PY" -m pip install -q torch==2.13.0
fi
echo "==> installing flame (editable) with ml and dev extras"
"$PY" -m pip install -q -e ".[ml,dev]"
