#!/usr/bin/env bash
# From a fresh clone on Debian/Ubuntu with Python 3.11+: install everything into .venv (RabbitMQ too), bring the
# local stack up and run an example (default: two-tier FedAvg, 4 trainers on scikit-learn digits) to completion
# with `flamectl run`, then print the global model's accuracy per round. The stack stays up: `flame down` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
EXAMPLE=${1:-examples/two_tier_fedavg}
shift $(($# > 0 ? 1 : 0))   # further arguments go to flamectl run (e.g. --set rounds=3)

bash scripts/install.sh
# shellcheck disable=SC1091
source "${FLAME_VENV:-.venv}/bin/activate"   # flame and flamectl from the project's venv
bash scripts/services.sh
flame up

echo "==> flamectl run $EXAMPLE: registers the design, schema, code and datasets (reused when unchanged), starts the job"
job_id=$(flamectl run "$EXAMPLE" --no-watch --quiet "$@")
status=0
flamectl job watch "$job_id" || status=$?
flamectl get tasks "$job_id"
echo "==> the evaluation of the global model, round by round (flamectl get metrics $job_id):"
# The roles that evaluate (the top aggregator; every trainer in ring all-reduce) record test_*.
flamectl get metrics "$job_id" -m test_accuracy -m test_loss -o csv |
    awk -F, 'NR > 1 && $4 != "" { printf "  %-18s round %3d  loss %.4f  accuracy %.4f\n", $1, $3, $5, $4 }'
echo "==> logs: ~/.flame/logs/   stop the stack: flame down"
echo "==> to use flame and flamectl in your shell: source ${FLAME_VENV:-.venv}/bin/activate"
exit "$status"
