#!/usr/bin/env bash
# Install Flame into the project's virtual environment (.venv), never into the system Python
# (PEP 668), on Debian/Ubuntu with Python 3.11+; installs RabbitMQ and python3-venv (and, for the
# dev extra, chromium and docker-compose) through apt when missing. Idempotent: a re-run with an
# unchanged pyproject.toml installs nothing.
#   PYTHON=python3.12 bash scripts/install.sh     # the interpreter the venv is made from
#   FLAME_VENV=/opt/flame-venv                    # where the venv lives (default: .venv)
#   FLAME_EXTRAS=server,dev                       # extras to install (default all,dev; "" for the
#                                                 # base: SDK + flamectl; see pyproject.toml)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${FLAME_VENV:-.venv}
EXTRAS=${FLAME_EXTRAS-all,dev}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "error: '$*' needs root and sudo is not installed; run it as root once" >&2; return 1
  fi
}

if ! command -v "$PY" >/dev/null 2>&1; then
  echo "error: no '$PY' on PATH; install Python 3.11+ (apt-get install python3) or set PYTHON" >&2
  exit 1
fi
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "error: Flame needs Python 3.11 or newer; $PY is $("$PY" -V 2>&1). Set PYTHON=python3.11" >&2
  exit 1
fi

if ! command -v rabbitmq-server >/dev/null 2>&1 && ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
  echo "==> installing RabbitMQ"
  as_root apt-get update -qq && as_root apt-get install -y -qq rabbitmq-server >/dev/null
fi

# The dashboard's browser test (tests/agents/test_dashboard.py) drives Debian's chromium through
# Playwright (dev extra); `playwright install` is never run: it would download a browser.
# tests/test_compose.py renders compose/docker-compose.yml with Debian's docker-compose (offline).
case ",$EXTRAS," in
  *,dev,*|*,all,*)
    if [ ! -x /usr/bin/chromium ]; then
      echo "==> installing chromium (the dashboard's browser test)"
      as_root apt-get update -qq && as_root apt-get install -y -qq chromium >/dev/null
    fi
    if ! command -v docker-compose >/dev/null 2>&1; then
      echo "==> installing docker-compose (the compose file's render test)"
      # only the tool (`config` needs no engine): not its recommended docker.io
      as_root apt-get update -qq \
        && as_root apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
    fi ;;
esac

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating the virtual environment $VENV ($("$PY" -V 2>&1))"
  # Debian and Ubuntu ship venv's ensurepip in a separate package (python3.X-venv).
  if ! "$PY" -m venv "$VENV" >/dev/null 2>&1; then
    rm -rf "$VENV"
    ver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    echo "==> installing python$ver-venv (needed to create $VENV)"
    as_root apt-get update -qq
    as_root apt-get install -y -qq "python$ver-venv" >/dev/null 2>&1 \
      || as_root apt-get install -y -qq python3-venv >/dev/null
    "$PY" -m venv "$VENV"
  fi
fi
VPY="$VENV/bin/python"

# The stamp says what this venv holds: the project path (editable install), pyproject.toml, extras.
stamp="$VENV/.flame-install"
want="$(pwd) $(sha256sum pyproject.toml | cut -c1-16) [$EXTRAS]"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "==> $VENV is up to date"
else
  rm -f "$stamp"
  case ",$EXTRAS," in
    *,ml,*|*,all,*)
      # torch first and pinned: a bare requirement would pull a multi-GB CUDA build.
      if ! "$VPY" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
        echo "==> installing torch 2.13.0 (CPU) into $VENV"
        "$VPY" -m pip install -q torch==2.13.0
      fi ;;
  esac
  spec="."
  [ -n "$EXTRAS" ] && spec=".[$EXTRAS]"
  echo "==> installing flame (editable) into $VENV${EXTRAS:+ with extras $EXTRAS}"
  "$VPY" -m pip install -q -e "$spec"
  echo "$want" > "$stamp"
fi
echo "==> Flame is installed in $VENV. To put flame and flamectl on your PATH: source $VENV/bin/activate"
